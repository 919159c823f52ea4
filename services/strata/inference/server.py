"""The Inference gRPC servicer: Predict (shared forward passes), ModelInfo, RollbackModel,
ListModels, ImportPredictions."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf.message import DecodeError

from strata.common.authz import Guard, action_entry, current_caller
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.grpcserver import abort
from strata.inference import store
from strata.inference.calibration import gold_accuracy
from strata.inference.config import InferenceConfig
from strata.inference.imports import PredictionImport
from strata.inference.metrics import InferenceMetrics
from strata.inference.pool import gate_for
from strata.inference.registry import Registry
from strata.inference.scoring import Scores, Served, predictions, score
from strata.models.families import InputError
from strata.v1 import common_pb2, inference_pb2, inference_pb2_grpc

log = logging.getLogger(__name__)

MAX_MC_SAMPLES = 100
MAX_MODEL_NAME = 200


@dataclass
class _Job:
    served: Served
    contents: Sequence[common_pb2.ItemContent]
    embeddings: bool
    mc_samples: int
    done: threading.Event = field(default_factory=threading.Event)
    result: Scores | None = None
    error: Exception | None = None

    def key(self) -> tuple[str, int, bool, int]:
        return (self.served.project, self.served.generation, self.embeddings, self.mc_samples)


class Predictor:
    """Runs concurrent Predict calls for the same model in one forward pass.

    One worker takes the first waiting call, gathers others for the same served
    version for up to `wait_s` (or `max_items`), scores them together and hands
    each call its slice. A call whose content the model cannot take fails alone.
    """

    def __init__(self, metrics: InferenceMetrics, wait_s: float, max_items: int) -> None:
        self.metrics = metrics
        self.wait_s = wait_s
        self.max_items = max_items
        self._queue: queue.Queue[_Job] = queue.Queue()
        self._held: list[_Job] = []

    def predict(
        self,
        served: Served,
        contents: Sequence[common_pb2.ItemContent],
        *,
        embeddings: bool,
        mc_samples: int,
        timeout_s: float = 30.0,
    ) -> Scores:
        job = _Job(served, contents, embeddings, mc_samples)
        self._queue.put(job)
        if not job.done.wait(timeout_s):
            raise TimeoutError("prediction queue did not answer in time")
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _next(self, timeout: float) -> _Job | None:
        if self._held:
            return self._held.pop(0)
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            first = self._next(0.2)
            if first is None:
                continue
            batch = [first]
            size = len(first.contents)
            deadline = time.monotonic() + self.wait_s
            while size < self.max_items:
                remaining = deadline - time.monotonic()
                try:
                    job = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if job.key() == first.key() and size + len(job.contents) <= self.max_items:
                    batch.append(job)
                    size += len(job.contents)
                else:
                    self._held.append(job)
            self._run_batch(batch, size)

    def _run_batch(self, batch: list[_Job], size: int) -> None:
        first = batch[0]
        try:
            scores = score(
                first.served,
                [c for job in batch for c in job.contents],
                embeddings=first.embeddings,
                mc_samples=first.mc_samples,
            )
        except InputError:
            for job in batch:  # someone's content is wrong: each call on its own
                self._run_one(job)
            return
        except Exception as exc:
            for job in batch:
                job.error = exc
                job.done.set()
            return
        self.metrics.predict_batch_items.observe(size)
        start = 0
        for job in batch:
            job.result = scores.take(start, start + len(job.contents))
            start += len(job.contents)
            job.done.set()

    def _run_one(self, job: _Job) -> None:
        try:
            job.result = score(
                job.served, job.contents, embeddings=job.embeddings, mc_samples=job.mc_samples
            )
        except Exception as exc:
            job.error = exc
        job.done.set()


class InferenceServicer(inference_pb2_grpc.InferenceServicer):
    def __init__(
        self,
        db: Database,
        registry: Registry,
        predictor: Predictor,
        contracts: ContractCache,
        guard: Guard,
        metrics: InferenceMetrics,
        config: InferenceConfig,
    ) -> None:
        self.db = db
        self.registry = registry
        self.predictor = predictor
        self.contracts = contracts
        self.guard = guard
        self.metrics = metrics
        self.config = config

    def Predict(
        self, request: inference_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> inference_pb2.PredictResponse:
        started = time.perf_counter()
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        n = len(request.item_ids) + len(request.contents)
        if n == 0:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "give item_ids or contents")
        if n > self.config.predict_max_items:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"at most {self.config.predict_max_items} items per call, got {n}",
            )
        if not 0 <= request.mc_samples <= MAX_MC_SAMPLES:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"mc_samples must be between 0 and {MAX_MC_SAMPLES}",
            )
        gold = self._gold_contents(request)
        if gold:
            self.guard.refuse_current(
                grpc.StatusCode.PERMISSION_DENIED,
                f"content {gold[0]} is a gold item's: predictions for gold items are never served",
                request.project,
            )
        served = self.registry.get_or_refresh(request.project)
        if served is None:
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"no model serves project {request.project!r} yet: training publishes one "
                "on strata.models.published",
            )
        assert served is not None
        ids: list[str] = []
        contents: list[common_pb2.ItemContent] = []
        if request.item_ids:
            with self.db.transaction() as conn:
                found = store.contents_of(conn, request.project, request.item_ids)
            missing = [i for i in request.item_ids if i not in found]
            if missing:
                shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
                abort(
                    context,
                    grpc.StatusCode.NOT_FOUND,
                    f"{len(missing)} item(s) not in project {request.project!r}: {shown}",
                )
            for item_id in request.item_ids:
                ids.append(item_id)
                try:
                    contents.append(common_pb2.ItemContent.FromString(found[item_id]))
                except DecodeError:
                    abort(
                        context, grpc.StatusCode.DATA_LOSS, f"item {item_id} has unreadable content"
                    )
        ids.extend("" for _ in request.contents)
        contents.extend(request.contents)
        try:
            scores = self.predictor.predict(
                served,
                contents,
                embeddings=request.include_embedding,
                mc_samples=request.mc_samples,
            )
        except InputError as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except TimeoutError as exc:
            abort(context, grpc.StatusCode.UNAVAILABLE, f"{exc}; retry")
        preds = predictions(served, ids, scores)
        self.metrics.predictions.labels(path="predict").inc(len(preds))
        self.metrics.predict_seconds.observe(time.perf_counter() - started)
        return inference_pb2.PredictResponse(predictions=preds, model_version=served.version)

    def _gold_contents(self, request: inference_pb2.PredictRequest) -> list[int]:
        if not request.contents:
            return []
        with self.db.transaction() as conn:
            return store.gold_among(
                conn, request.project, [c.SerializeToString() for c in request.contents]
            )

    def ModelInfo(
        self, request: inference_pb2.ModelInfoRequest, context: grpc.ServicerContext
    ) -> inference_pb2.ModelInfoResponse:
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        with self.db.transaction() as conn:
            rows = store.serving(conn, request.project)
            current = store.model(conn, request.project, rows[0].version) if rows else None
            failure = store.last_failure(conn, request.project)
            backlog = store.backlog(conn, request.project, rows[0].generation) if rows else 0
        reply = inference_pb2.ModelInfoResponse(scoring_backlog=backlog)
        if failure is not None:
            reply.last_failure = f"{failure.version}: {failure.error}"
        if not rows or current is None:
            if failure is None:
                abort(
                    context,
                    grpc.StatusCode.NOT_FOUND,
                    f"no model has been published for project {request.project!r}",
                )
            return reply
        row = rows[0]
        reply.model_version = row.version
        reply.family = current.family
        reply.previous_version = row.previous_version or ""
        reply.run_id = current.run_id or ""
        if current.metrics:
            reply.metrics.ParseFromString(current.metrics)
        reply.loaded_at.FromDatetime(current.recorded_at)
        reply.calibration.CopyFrom(
            inference_pb2.CalibrationInfo(
                calibrated=current.calibrated,
                temperature=current.temperature,
                ece_before=current.ece_before or 0.0,
                ece_after=current.ece_after or 0.0,
                n_gold=current.n_gold,
                note=current.calibration_note,
            )
        )
        contract = self.contracts.current(request.project)
        policy = contract.auto_accept if contract and contract.HasField("auto_accept") else None
        served = self.registry.get(request.project)
        status = inference_pb2.AutoAcceptStatus(
            auto_accepted=row.auto_accepted, spot_checked=row.spot_checked
        )
        if policy is not None:
            status.confidence_threshold = policy.confidence_threshold
            status.min_precision = policy.min_precision
            status.spot_check_rate = policy.spot_check_rate
        gate = gate_for(served, policy, self.config.min_support) if served else None
        if gate is not None:
            status.active = gate.open
            status.precision_at_threshold = gate.precision
            status.reason = gate.reason
        else:
            status.reason = "auto-accept is not enabled in the contract"
        reply.auto_accept.CopyFrom(status)
        return reply

    def ListModels(
        self, request: inference_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> inference_pb2.ListModelsResponse:
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        with self.db.transaction() as conn:
            rows = store.models(conn, request.project)
            serving = store.serving(conn, request.project)
        current = serving[0].version if serving else None
        return inference_pb2.ListModelsResponse(
            models=[model_version_info(r, r.version == current) for r in rows]
        )

    def RollbackModel(
        self, request: inference_pb2.RollbackModelRequest, context: grpc.ServicerContext
    ) -> inference_pb2.RollbackModelResponse:
        with self.db.transaction() as conn:
            row = store.lock_serving(conn, request.project)
            if row is None:
                abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"no model serves project {request.project!r}",
                )
            assert row is not None
            if not row.previous_version:
                abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{row.version} is the only version project {request.project!r} has served",
                )
            previous = store.model(conn, request.project, row.previous_version or "")
            if previous is None or previous.status != "loaded":
                abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"the previous version {row.previous_version} cannot be served",
                )
            store.serve(conn, request.project, row.previous_version or "")
            entry = action_entry(
                "inference",
                "rollback_model",
                row.previous_version or "",
                request.project,
                **{"from": row.version, "to": row.previous_version},
            )
            self.guard.audit.write(conn, entry)
        log.warning(
            "%s: %s rolled back from %s to %s",
            request.project,
            entry.actor,
            row.version,
            row.previous_version,
        )
        self.registry.refresh()
        return inference_pb2.RollbackModelResponse(model_version=row.previous_version or "")

    def ImportPredictions(
        self,
        request_iterator: Iterator[inference_pb2.ImportPredictionsRequest],
        context: grpc.ServicerContext,
    ) -> inference_pb2.ImportPredictionsResponse:
        run: PredictionImport | None = None
        try:
            for request in request_iterator:
                if run is None:
                    run = self._start_import(request, context)
                elif request.project != run.project or request.model not in ("", run.model):
                    abort(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"one import is for one project and model: got {request.project!r} "
                        f"and {request.model!r} after {run.project!r} and {run.model!r}",
                    )
                run.add(request.rows)
        finally:
            if run is not None:
                self._record_import(run)
        if run is None:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        assert run is not None
        summary = run.summary
        return inference_pb2.ImportPredictionsResponse(
            received=summary.received,
            imported=summary.imported,
            already=summary.already,
            rejected=summary.rejected,
            errors=[
                inference_pb2.ImportPredictionError(line=line, message=message)
                for line, message in summary.errors
            ],
        )

    def _start_import(
        self, request: inference_pb2.ImportPredictionsRequest, context: grpc.ServicerContext
    ) -> PredictionImport:
        project, model = request.project, request.model
        if not project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        if not model.strip() or len(model) > MAX_MODEL_NAME:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"model is required: the outside model's version name "
                f"(at most {MAX_MODEL_NAME} characters)",
            )
        contract = self.contracts.current(project)
        if contract is None or not contract.classes:
            abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"inference has no contract for project {project!r} yet: load one, and "
                "import predictions once it has arrived",
            )
        assert contract is not None
        with self.db.transaction() as conn:
            published = store.model(conn, project, model)
        if published is not None:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{model} is a model version training published for project {project!r}; "
                "give the outside model a name of its own",
            )
        return PredictionImport(
            self.db, project, model, [c.name for c in contract.classes], current_caller().name
        )

    def _record_import(self, run: PredictionImport) -> None:
        summary = run.summary
        for outcome, n in (
            ("imported", summary.imported),
            ("already", summary.already),
            ("rejected", summary.rejected),
        ):
            if n:
                self.metrics.imported.labels(outcome=outcome).inc(n)
        self.metrics.predictions.labels(path="import").inc(summary.imported)
        self.guard.audit.record(
            action_entry(
                "inference",
                "import_predictions",
                run.model,
                run.project,
                received=summary.received,
                imported=summary.imported,
                already=summary.already,
                rejected=summary.rejected,
            )
        )


def model_version_info(row: store.ModelRow, serving: bool) -> inference_pb2.ModelVersionInfo:
    """A recorded version as ListModels shows it."""
    accuracy, n_gold = gold_accuracy(row.gold_correct)
    info = inference_pb2.ModelVersionInfo(
        model_version=row.version,
        run_id=row.run_id or "",
        family=row.family,
        gold_accuracy=accuracy,
        n_gold=n_gold,
        calibrated=row.calibrated,
        ece_before=row.ece_before or 0.0,
        ece_after=row.ece_after or 0.0,
        status=row.status,
        error=row.error or "",
        serving=serving,
    )
    if row.metrics:
        info.metrics.ParseFromString(row.metrics)
    if row.published_at:
        info.published_at.FromDatetime(row.published_at)
    info.recorded_at.FromDatetime(row.recorded_at)
    return info
