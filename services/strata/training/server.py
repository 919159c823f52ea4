"""The Training gRPC servicer: StartRun, GetRun, ListRuns, TraceInfluence, DepthProfile,
QueryLedger, ItemLineage."""

from __future__ import annotations

import logging
import uuid

import grpc
import numpy as np
import torch

from strata.common.authz import Guard, action_entry, current_caller
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.grpcserver import abort
from strata.models import artifact
from strata.models.artifact import ArtifactError
from strata.models.families import FAMILIES, InputError, featurize
from strata.training import analysis, ledger_store, store
from strata.training.config import TrainingConfig
from strata.training.dataset import RunRejected, prepare
from strata.training.ledger import by_group
from strata.training.messages import flag_messages, profile_messages
from strata.v1 import common_pb2, training_pb2, training_pb2_grpc

log = logging.getLogger(__name__)

STATES = {
    "queued": training_pb2.RUN_STATE_QUEUED,
    "running": training_pb2.RUN_STATE_RUNNING,
    "succeeded": training_pb2.RUN_STATE_SUCCEEDED,
    "failed": training_pb2.RUN_STATE_FAILED,
}


DEFAULT_RUNS = 200
MAX_RUNS = 1000
MAX_DEPTH_ITEMS = 5000


class TrainingServicer(training_pb2_grpc.TrainingServicer):
    def __init__(
        self,
        db: Database,
        contracts: ContractCache,
        guard: Guard,
        config: TrainingConfig,
    ) -> None:
        self.db = db
        self.contracts = contracts
        self.guard = guard
        self.config = config

    def StartRun(
        self, request: training_pb2.StartRunRequest, context: grpc.ServicerContext
    ) -> training_pb2.StartRunResponse:
        if request.family and request.family not in FAMILIES:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"family {request.family!r} is not a model family; use one of "
                f"{', '.join(FAMILIES)} (or leave it empty to pick by content)",
            )
        if not 0 <= request.num_workers <= 256 or not 0 <= request.epochs <= 10_000:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "num_workers must be 0..256 and epochs 0..10000 (0: the service's default)",
            )
        contract = self.contracts.current(request.project)
        if contract is None:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"project {request.project!r} has no labeling contract; load one first",
            )
        assert contract is not None
        with self.db.transaction() as conn:
            rows = store.training_set(conn, request.project)
        try:
            prepare(rows, contract, request.family, self.config.min_labels)
        except RunRejected as exc:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"no run started: {exc}")
        with self.db.transaction() as conn:
            run_id = store.create_run(
                conn,
                request.project,
                request.family,
                request.num_workers or self.config.num_workers,
                request.epochs or self.config.epochs,
                request.reason or "StartRun",
                self.config.fault_crash_at_epoch,
            )
            ahead = store.runs_ahead(conn, request.project, run_id)
            self.guard.audit.write(
                conn,
                action_entry(
                    "training",
                    "start_run",
                    run_id,
                    request.project,
                    family=request.family,
                    reason=request.reason,
                ),
            )
        return training_pb2.StartRunResponse(
            run_id=run_id, state=training_pb2.RUN_STATE_QUEUED, runs_ahead=ahead
        )

    def GetRun(
        self, request: training_pb2.GetRunRequest, context: grpc.ServicerContext
    ) -> training_pb2.GetRunResponse:
        try:
            uuid.UUID(request.run_id)
        except ValueError:
            self.guard.checked()
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{request.run_id!r} is not a run id")
        with self.db.transaction() as conn:
            row = store.run(conn, request.run_id)
        if row is None:
            abort(context, grpc.StatusCode.NOT_FOUND, f"no run {request.run_id}")
        assert row is not None
        self.guard.require(row.project, not_found=f"no run {request.run_id}")
        return training_pb2.GetRunResponse(run=run_message(row))

    def ListRuns(
        self, request: training_pb2.ListRunsRequest, context: grpc.ServicerContext
    ) -> training_pb2.ListRunsResponse:
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        limit = request.limit or DEFAULT_RUNS
        if not 1 <= limit <= MAX_RUNS:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"limit must be 1..{MAX_RUNS} (or 0 for {DEFAULT_RUNS})",
            )
        with self.db.transaction() as conn:
            rows = store.runs_of(conn, request.project, limit)
        return training_pb2.ListRunsResponse(
            runs=[
                training_pb2.RunSummary(run=run_message(r), n_labels=r.n_labels, reason=r.reason)
                for r in rows
            ]
        )

    def ItemLineage(
        self, request: training_pb2.ItemLineageRequest, context: grpc.ServicerContext
    ) -> training_pb2.ItemLineageResponse:
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        if not request.item_id:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "item_id is required")
        with self.db.transaction() as conn:
            traces = ledger_store.item_traces(conn, request.project, request.item_id)
        return training_pb2.ItemLineageResponse(runs=[run_trace(t) for t in traces])

    def ItemDepths(
        self, request: training_pb2.ItemDepthsRequest, context: grpc.ServicerContext
    ) -> training_pb2.ItemDepthsResponse:
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        if len(request.item_ids) > MAX_DEPTH_ITEMS:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"ask for at most {MAX_DEPTH_ITEMS} items at a time, not {len(request.item_ids)}",
            )
        with self.db.transaction() as conn:
            found = ledger_store.latest_depths(conn, request.project, request.item_ids)
        return training_pb2.ItemDepthsResponse(
            depths=[
                training_pb2.ItemDepth(
                    item_id=item, run_id=run, model_version=version, influence_depth=depth
                )
                for item, run, version, depth in found
            ]
        )

    def _model(
        self, context: grpc.ServicerContext, project: str, version: str
    ) -> ledger_store.ModelRow:
        if not project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        with self.db.transaction() as conn:
            found = ledger_store.model(conn, project, version)
        if found is None:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"project {project!r} has no model {version!r}"
                if version
                else f"project {project!r} has no trained model yet",
            )
        assert found is not None
        return found

    def DepthProfile(
        self, request: training_pb2.DepthProfileRequest, context: grpc.ServicerContext
    ) -> training_pb2.DepthProfileResponse:
        m = self._model(context, request.project, request.model_version)
        with self.db.transaction() as conn:
            profiles = ledger_store.profiles(conn, m.run_id)
            flags = ledger_store.flags(conn, m.run_id)
        return training_pb2.DepthProfileResponse(
            model_version=m.version,
            layer_groups=m.layer_groups,
            profiles=profile_messages(profiles),
            memorization_flags=flag_messages(flags),
        )

    def QueryLedger(
        self, request: training_pb2.QueryLedgerRequest, context: grpc.ServicerContext
    ) -> training_pb2.QueryLedgerResponse:
        m = self._model(context, request.project, request.model_version)
        if not 0 <= request.layer_group <= len(m.layer_groups):
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"layer_group must be 1..{len(m.layer_groups)} (or 0 for all), "
                f"got {request.layer_group}",
            )
        limit = request.limit or 100
        if not 1 <= limit <= 100_000:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "limit must be 1..100000")
        with self.db.transaction() as conn:
            rows = ledger_store.query_ledger(
                conn,
                m.run_id,
                request.annotator_id,
                request.class_label,
                request.layer_group,
                limit,
            )
        return training_pb2.QueryLedgerResponse(
            entries=[
                training_pb2.LedgerEntry(
                    label_id=r.label_id,
                    item_id=r.item_id,
                    annotator_ids=r.annotator_ids,
                    consensus_score=r.consensus_score,
                    layer_group=r.layer_group,
                    influence=r.influence,
                    influence_depth=r.influence_depth,
                    value=r.value,
                    magnitude=r.magnitude,
                )
                for r in rows
            ]
        )

    def TraceInfluence(
        self, request: training_pb2.TraceInfluenceRequest, context: grpc.ServicerContext
    ) -> training_pb2.TraceInfluenceResponse:
        m = self._model(context, request.project, request.model_version)
        top_k = request.top_k or 10
        if not 1 <= top_k <= 1000:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "top_k must be 1..1000")
        target = request.WhichOneof("target")
        with self.db.transaction() as conn:
            if target == "content" and not current_caller().at_least("manager"):
                self.guard.refuse_current(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "tracing an arbitrary content needs the manager role; trace an item_id",
                    request.project,
                )
            gold = store.is_gold(
                conn,
                request.project,
                request.item_id if target == "item_id" else "",
                request.content.SerializeToString() if target == "content" else b"",
            )
            if gold and target == "content":
                self.guard.refuse_current(
                    grpc.StatusCode.PERMISSION_DENIED,
                    "this content is a gold item's: its prediction is never served",
                    request.project,
                )
            if target == "item_id":
                found = {} if gold else store.contents_of(conn, request.project, [request.item_id])
                if request.item_id not in found:
                    abort(
                        context,
                        grpc.StatusCode.NOT_FOUND,
                        f"project {request.project!r} has no item {request.item_id!r}",
                    )
                content = common_pb2.ItemContent.FromString(found[request.item_id])
            elif target == "content":
                content = request.content
            else:
                abort(context, grpc.StatusCode.INVALID_ARGUMENT, "give an item_id or content")
            labels = ledger_store.run_labels(conn, m.run_id)
            saved = ledger_store.checkpoints(conn, m.run_id)
            contents = store.contents_of(conn, request.project, [lb.item_id for lb in labels])
        try:
            final = artifact.loads(artifact.read(m.artifact_uri))
            checkpoints = [
                analysis.Checkpoint(artifact.loads(artifact.read(uri)).model, lr)
                for _, lr, uri in saved
            ]
        except ArtifactError as exc:
            abort(context, grpc.StatusCode.FAILED_PRECONDITION, f"{m.version}: {exc}")
        spec = final.spec
        try:
            target_inputs = featurize(spec, [content])
        except InputError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"the {spec.family} model: {exc}")
        index = {c: i for i, c in enumerate(spec.classes)}
        usable = [lb for lb in labels if lb.item_id in contents and lb.value in index]
        if not usable or not checkpoints:
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{m.version} kept no training labels or checkpoints to trace",
            )
        predicted = int(analysis.logits_of(final.model, target_inputs).argmax(1)[0])
        train_inputs = featurize(
            spec, [common_pb2.ItemContent.FromString(contents[lb.item_id]) for lb in usable]
        )
        scores = analysis.tracin(
            checkpoints,
            target_inputs,
            predicted,
            train_inputs,
            torch.tensor([index[lb.value] for lb in usable], dtype=torch.int64),
            torch.tensor([lb.influence_depth for lb in usable], dtype=torch.int64),
        )
        total = scores.sum(1)
        order = np.argsort(-total, kind="stable")

        def influence(i: int) -> training_pb2.Influence:
            lb = usable[i]
            return training_pb2.Influence(
                label_id=lb.label_id,
                item_id=lb.item_id,
                annotator_ids=lb.annotator_ids,
                value=lb.value,
                consensus_score=lb.consensus_score,
                score=float(total[i]),
                by_group=scores[i].tolist(),
            )

        return training_pb2.TraceInfluenceResponse(
            model_version=m.version,
            predicted_class=spec.classes[predicted],
            supporting=[influence(int(i)) for i in order[:top_k] if total[i] > 0],
            opposing=[influence(int(i)) for i in order[::-1][:top_k] if total[i] < 0],
        )


def run_message(row: store.RunRow) -> training_pb2.Run:
    run = training_pb2.Run(
        run_id=row.run_id,
        project=row.project,
        state=STATES[row.state],
        progress=min(1.0, row.epoch / row.epochs) if row.epochs else 0.0,
        epoch=row.epoch,
        epochs=row.epochs,
        model_version=row.model_version or "",
        error=row.error or "",
        samples_seen=row.samples_seen,
        samples_per_second=row.samples_per_second,
        resumed_from_checkpoint=row.resumed,
        num_workers=row.num_workers,
        governance_mode=row.governance_mode,  # type: ignore[arg-type]
    )
    if row.trust_curve:
        run.trust_curve.ParseFromString(row.trust_curve)
    if row.metrics:
        run.metrics.ParseFromString(row.metrics)
    if row.started_at:
        run.started_at.FromDatetime(row.started_at)
    if row.finished_at:
        run.finished_at.FromDatetime(row.finished_at)
    return run


def run_trace(t: ledger_store.ItemTrace) -> training_pb2.RunTrace:
    """One run's ledger entry for an item's label, as ItemLineage shows it."""
    trace = training_pb2.RunTrace(
        run_id=t.run_id,
        model_version=t.model_version,
        label_id=t.label_id,
        value=t.value,
        consensus_score=t.consensus_score,
        annotator_ids=t.annotator_ids,
        influence_depth=t.influence_depth,
        influence_by_group=by_group(t.groups, t.influences, len(t.layer_groups)),
        layer_groups=t.layer_groups,
        magnitude_by_group=by_group(t.groups, t.magnitudes, len(t.layer_groups)),
    )
    if t.finished_at:
        trace.finished_at.FromDatetime(t.finished_at)
    return trace
