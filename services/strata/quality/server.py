"""The Quality gRPC servicer: check the caller, validate, call, map errors to status codes."""

from __future__ import annotations

import itertools
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC
from typing import Any

import grpc

from strata.common import outbox
from strata.common.authz import Guard, action_entry, current_caller
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.grpcserver import abort
from strata.quality import console_store, store
from strata.quality.export import provenance
from strata.quality.export_formats import (
    CsvWriter,
    ExportWriter,
    JsonlWriter,
    LabelStudioWriter,
    ParquetWriter,
)
from strata.quality.handlers import (
    METHODS,
    SOURCE_ENUM,
    STATES,
    STATUS_ENUM,
    class_names,
    decide_by_expert,
)
from strata.quality.imports import ImportSummary, VoteImporter
from strata.quality.pairwise import code_labels, pair_agreements
from strata.quality.progress import progress_grid
from strata.quality.render import plots, to_html
from strata.quality.report import agreement as measure_agreement
from strata.quality.report import agreement_slices, annotator_scores, build_report, code_votes
from strata.v1 import common_pb2, quality_pb2, quality_pb2_grpc

log = logging.getLogger(__name__)

WRITERS: dict[int, type[ExportWriter]] = {
    quality_pb2.EXPORT_FORMAT_JSONL: JsonlWriter,
    quality_pb2.EXPORT_FORMAT_LABEL_STUDIO: LabelStudioWriter,
    quality_pb2.EXPORT_FORMAT_CSV: CsvWriter,
    quality_pb2.EXPORT_FORMAT_PARQUET: ParquetWriter,
}
EXPORT_CHUNK = 500
EXPORT_MESSAGE_BYTES = 1 << 20
DEFAULT_PAIR_ANNOTATORS = 30
# More would make a heatmap nobody reads and a reply past gRPC's default 4 MB.
MAX_PAIR_ANNOTATORS = 100
DEFAULT_DISAGREEMENTS = 100
MAX_DISAGREEMENTS = 1000


def list_limit(context: grpc.ServicerContext, asked: int) -> int:
    """A list's length: 0 asks for the default, more than the most gets the most."""
    if asked < 0:
        abort(context, grpc.StatusCode.INVALID_ARGUMENT, "limit cannot be negative")
    return min(asked or DEFAULT_DISAGREEMENTS, MAX_DISAGREEMENTS)


def export_messages(chunk: bytes, records: int) -> Iterator[quality_pb2.ExportLabelsResponse]:
    """A writer's chunk as messages of at most EXPORT_MESSAGE_BYTES, its record count on the
    last; none for an empty chunk of no records. A Parquet footer grows with the row groups
    (7 MB at 1M items) and inline images with the rows: past gRPC's 4 MB a client refuses."""
    for start in range(0, len(chunk) or (1 if records else 0), EXPORT_MESSAGE_BYTES):
        last = start + EXPORT_MESSAGE_BYTES >= len(chunk)
        yield quality_pb2.ExportLabelsResponse(
            chunk=chunk[start : start + EXPORT_MESSAGE_BYTES], records=records if last else 0
        )


def no_votes(item_id: str) -> str:
    # The same words whether the item does not exist or belongs to another project.
    return f"item {item_id!r} has no votes in quality"


class QualityServicer(quality_pb2_grpc.QualityServicer):
    def __init__(
        self,
        db: Database,
        guard: Guard,
        contracts: ContractCache,
        importer: VoteImporter | None = None,
        trained: Callable[[str, list[str]], dict[str, tuple[int, str]]] | None = None,
    ) -> None:
        self.trained = trained
        self.db = db
        self.guard = guard
        self.contracts = contracts
        self.importer = importer

    # -- helpers ---------------------------------------------------------------

    def _item_project(self, context: grpc.ServicerContext, item_id: str) -> None:
        """The caller may see `item_id` (a reviewer of its project; a gold item: a manager);
        NOT_FOUND otherwise, as if it did not exist."""
        if not item_id:
            self.guard.checked()
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "item_id is required")
        with self.db.transaction() as conn:
            row = store.item_row(conn, item_id)
        if row is None:
            abort(context, grpc.StatusCode.NOT_FOUND, no_votes(item_id))
        gold = bool(row["gold_answer"])
        self.guard.require(row["project"], "manager" if gold else None, no_votes(item_id))

    def _contract(self, context: grpc.ServicerContext, project: str) -> common_pb2.LabelingContract:
        if not project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        contract = self.contracts.current(project)
        if contract is None:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"no contract for project {project!r} has reached quality "
                "(load one through the gateway's LoadContract)",
            )
        return contract

    # -- RPCs --------------------------------------------------------------------

    def ItemConsensus(
        self, request: quality_pb2.ItemConsensusRequest, context: grpc.ServicerContext
    ) -> quality_pb2.ItemConsensusResponse:
        self._item_project(context, request.item_id)
        with self.db.transaction() as conn:
            row = store.item_row(conn, request.item_id)
            votes = store.votes_of(conn, [request.item_id]).get(request.item_id, [])
            consensus_bytes = conn.execute(
                "SELECT consensus FROM items WHERE item_id = %s", (request.item_id,)
            ).fetchone()
            review = store.open_review_of(conn, request.item_id)
        if row is None:
            abort(context, grpc.StatusCode.NOT_FOUND, no_votes(request.item_id))
        stored = common_pb2.ConsensusLabel()
        if consensus_bytes and consensus_bytes[0]:
            stored.ParseFromString(bytes(consensus_bytes[0]))
        if row["state"] in ("accepted", "expert") and stored.item_id:
            stored.status = STATES[row["state"]]
            return quality_pb2.ItemConsensusResponse(consensus=stored, review=review)
        # Undecided: the votes as they stand, weighed as the last estimate weighed them.
        weights = {v.label_id: v.weight for v in stored.votes}
        consensus = common_pb2.ConsensusLabel(
            item_id=row["item_id"],
            value=row["value"] or stored.value,
            consensus_score=row["consensus_score"] or stored.consensus_score,
            method=METHODS.get(row["method"] or "", common_pb2.CONSENSUS_METHOD_UNSPECIFIED),
            status=STATES[row["state"]],
            project=row["project"],
            ontology_version=row["ontology_version"],
            votes=[
                common_pb2.Vote(
                    annotator_id=v.annotator_id,
                    value=v.value,
                    label_id=v.label_id,
                    weight=weights.get(v.label_id, 0.0),
                    source=SOURCE_ENUM.get(v.source, common_pb2.LABEL_SOURCE_UNSPECIFIED),
                )
                for v in votes
            ],
            posterior=[
                common_pb2.ClassScore(class_label=c, score=p)
                for c, p in zip(row["classes"] or [], row["posterior"] or [], strict=False)
            ],
        )
        return quality_pb2.ItemConsensusResponse(consensus=consensus, review=review)

    def AnnotatorScores(
        self, request: quality_pb2.AnnotatorScoresRequest, context: grpc.ServicerContext
    ) -> quality_pb2.AnnotatorScoresResponse:
        caller = current_caller()
        wanted = set(request.annotator_ids)
        if not caller.at_least("reviewer") and wanted != {caller.name}:
            self.guard.refuse_current(
                grpc.StatusCode.PERMISSION_DENIED,
                "annotators may see only their own scores: pass annotator_ids=[your id]",
                request.project,
            )
        contract = self._contract(context, request.project)
        with self.db.transaction() as conn:
            data = store.project_data(conn, contract)
        out = []
        for s in annotator_scores(data):
            if wanted and s["annotator_id"] not in wanted:
                continue
            interval = s["gold_accuracy_interval"] or [0.0, 1.0]
            out.append(
                quality_pb2.AnnotatorScore(
                    annotator_id=s["annotator_id"],
                    gold_accuracy=s["gold_accuracy"] or 0.0,
                    gold_accuracy_lower_bound=interval[0],
                    gold_answered=s["gold_answered"],
                    agreement_with_consensus=s["agreement_with_consensus"] or 0.0,
                    classes=data.classes,
                    confusion=[
                        quality_pb2.ConfusionRow(true_class=c, row=r)
                        for c, r in zip(data.classes, s["confusion"] or [], strict=False)
                    ],
                    labels=s["labels"],
                    median_seconds=s["median_seconds"] or 0.0,
                    status=STATUS_ENUM[s["status"]],
                    wrong_prelabels_shown=s["wrong_prelabels_shown"],
                    anchoring_rate=s["anchoring_rate"] or 0.0,
                    anchoring_lower_bound=(s["anchoring_interval"] or [0.0, 1.0])[0],
                    anchoring_upper_bound=(s["anchoring_interval"] or [0.0, 1.0])[1],
                )
            )
        return quality_pb2.AnnotatorScoresResponse(annotators=out)

    def AgreementReport(
        self, request: quality_pb2.AgreementReportRequest, context: grpc.ServicerContext
    ) -> quality_pb2.AgreementReportResponse:
        contract = self._contract(context, request.project)
        if request.window_seconds < 0:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "window_seconds cannot be negative")
        with self.db.transaction() as conn:
            data = store.project_data(conn, contract)
        since = (
            request.since.ToDatetime(tzinfo=UTC).timestamp() if request.HasField("since") else None
        )
        until = (
            request.until.ToDatetime(tzinfo=UTC).timestamp() if request.HasField("until") else None
        )
        if since is not None and until is not None and until <= since:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "until must be after since")
        keep = [
            n
            for n, t in enumerate(data.vote_time)
            if (since is None or t >= since) and (until is None or t < until)
        ]

        def pick(values: list[Any]) -> list[Any]:
            return [values[n] for n in keep]

        data = replace(
            data,
            vote_item=pick(data.vote_item),
            vote_annotator=pick(data.vote_annotator),
            vote_value=pick(data.vote_value),
            vote_time=pick(data.vote_time),
            vote_duration_ms=pick(data.vote_duration_ms),
            vote_gold_answer=pick(data.vote_gold_answer),
        )
        coded = code_votes(data)
        overall = measure_agreement(coded.item, coded.annotator, coded.label, len(data.classes))
        value = overall.metric(data.agreement_metric)

        def as_slice(d: dict[str, Any]) -> quality_pb2.AgreementSlice:
            return quality_pb2.AgreementSlice(
                dimension=d.get("dimension", "overall"),
                key=d.get("key", ""),
                krippendorff_alpha=_nan(d["krippendorff_alpha"]),
                fleiss_kappa=_nan(d["fleiss_kappa"]),
                mean_cohen_kappa=_nan(d["mean_cohen_kappa"]),
                items=d["items"],
            )

        return quality_pb2.AgreementReportResponse(
            overall=as_slice(overall.as_dict()),
            slices=[as_slice(s) for s in agreement_slices(data, coded, request.window_seconds)],
            metric=data.agreement_metric,
            threshold=data.agreement_threshold,
            done=value is not None and value >= data.agreement_threshold,
        )

    def ResolveReview(
        self, request: quality_pb2.ResolveReviewRequest, context: grpc.ServicerContext
    ) -> quality_pb2.ResolveReviewResponse:
        if not request.value:
            self.guard.checked()
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "item_id and value are required")
        self._item_project(context, request.item_id)
        caller = current_caller()
        trace = uuid.uuid4().hex
        with self.db.transaction() as conn:
            row = store.item_row(conn, request.item_id, lock=True)
            if row is None:
                abort(context, grpc.StatusCode.NOT_FOUND, no_votes(request.item_id))
            if row["state"] != "review":
                abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"item {request.item_id!r} is not in review (it is {row['state']})",
                )
            contract = self.contracts.version(row["project"], row["ontology_version"])
            classes = class_names(contract) if contract else []
            if request.value not in classes:
                abort(
                    context,
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"value {request.value!r} is not a class of {row['project']} "
                    f"v{row['ontology_version']}: {', '.join(classes)}",
                )
            item = store.ItemState(
                row["item_id"],
                row["project"],
                row["ontology_version"],
                row["gold_answer"],
                row["state"],
                row["votes"],
                row["requested_overlap"],
            )
            votes = store.votes_of(conn, [item.item_id]).get(item.item_id, [])
            if any(v.source == "expert" and v.annotator_id == caller.name for v in votes):
                abort(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"you answered the review of {item.item_id!r} already and it went to a "
                    "second opinion; another reviewer decides",
                )
            consensus = decide_by_expert(
                conn,
                lambda topic, key, message, trace_id: outbox.publish(
                    conn, topic, key, message, trace_id=trace_id
                ),
                item,
                votes,
                request.value,
                caller.name,
                request.note,
                trace,
            )
            self.guard.audit.write(
                conn,
                action_entry(
                    "quality",
                    "resolve_review",
                    item.item_id,
                    item.project,
                    value=request.value,
                    note=request.note[:500],
                ),
            )
        log.info("review of %s resolved by %s: %s", item.item_id, caller.name, request.value)
        return quality_pb2.ResolveReviewResponse(consensus=consensus)

    def DatasetReport(
        self, request: quality_pb2.DatasetReportRequest, context: grpc.ServicerContext
    ) -> quality_pb2.DatasetReportResponse:
        contract = self._contract(context, request.project)
        with self.db.transaction() as conn:
            data = store.project_data(conn, contract)
        report = build_report(data)
        return quality_pb2.DatasetReportResponse(
            report_json=json.dumps(report, indent=2, sort_keys=True),
            html=to_html(report, plots(report)),
        )

    def ExportLabels(
        self, request: quality_pb2.ExportLabelsRequest, context: grpc.ServicerContext
    ) -> Iterator[quality_pb2.ExportLabelsResponse]:
        self._contract(context, request.project)
        self.guard.audit.record(
            action_entry("quality", "export_labels", request.project, format=request.format)
        )
        if request.format and request.format not in WRITERS:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"export format {request.format} is not one of jsonl (1), label studio (2), "
                "csv (3), parquet (4)",
            )
        writer = WRITERS.get(request.format, JsonlWriter)()
        yield from export_messages(writer.begin(), 0)
        after = ""
        while True:
            with self.db.transaction() as conn:
                batch = store.decided_items(conn, request.project, after, EXPORT_CHUNK)
            if not batch:
                break
            after = batch[-1].item_id
            trained = (
                self.trained(request.project, [d.item_id for d in batch]) if self.trained else {}
            )
            records = [provenance(d, request.inline_images, trained.get(d.item_id)) for d in batch]
            yield from export_messages(writer.rows(records), len(records))
        yield from export_messages(writer.end(), 0)

    def ImportVotes(
        self,
        request_iterator: Iterator[quality_pb2.ImportVotesRequest],
        context: grpc.ServicerContext,
    ) -> quality_pb2.ImportVotesResponse:
        if self.importer is None:
            abort(context, grpc.StatusCode.UNIMPLEMENTED, "this quality replica takes no imports")
        summary = ImportSummary()
        first = next(request_iterator, None)
        if first is None:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "an import needs its project")
        project = first.project
        self._contract(context, project)
        with self.importer.running(project):
            for request in itertools.chain([first], request_iterator):
                if request.project != project:
                    abort(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"one import is for one project: got {request.project!r} after {project!r}",
                    )
                self.importer.chunk(project, request.votes, summary)
        accepted = self.importer.finish(project, summary)
        self.guard.audit.record(
            action_entry(
                "quality",
                "import_votes",
                project,
                project,
                received=summary.received,
                imported=summary.imported,
                already=summary.already,
                rejected=summary.rejected,
            )
        )
        return quality_pb2.ImportVotesResponse(
            received=summary.received,
            imported=summary.imported,
            already=summary.already,
            gold=summary.gold,
            rejected=summary.rejected,
            errors=[
                quality_pb2.ImportLineError(line=line, message=message)
                for line, message in sorted(summary.errors)
            ],
            items=len(summary.items),
            accepted=accepted,
        )

    def PairwiseAgreement(
        self, request: quality_pb2.PairwiseAgreementRequest, context: grpc.ServicerContext
    ) -> quality_pb2.PairwiseAgreementResponse:
        contract = self._contract(context, request.project)
        if request.max_annotators < 0:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "max_annotators cannot be negative")
        wanted = min(request.max_annotators or DEFAULT_PAIR_ANNOTATORS, MAX_PAIR_ANNOTATORS)
        with self.db.transaction() as conn:
            annotators = console_store.top_annotators(conn, request.project, wanted)
            votes = console_store.latest_votes(conn, request.project, annotators)
        rank = {a: n for n, a in enumerate(annotators)}
        labels, n_classes = code_labels([v[2] for v in votes], class_names(contract))
        items: dict[str, int] = {}
        pairs = pair_agreements(
            [items.setdefault(v[0], len(items)) for v in votes],
            [rank[v[1]] for v in votes],
            labels,
            n_classes,
        )
        return quality_pb2.PairwiseAgreementResponse(
            annotators=annotators,
            pairs=[
                quality_pb2.AnnotatorPair(
                    a=annotators[p.a],
                    b=annotators[p.b],
                    shared_items=p.shared_items,
                    agreed=p.agreed,
                    cohen_kappa=p.cohen_kappa,
                )
                for p in pairs
            ],
        )

    def PairDisagreements(
        self, request: quality_pb2.PairDisagreementsRequest, context: grpc.ServicerContext
    ) -> quality_pb2.PairDisagreementsResponse:
        self._contract(context, request.project)
        if not request.a or not request.b or request.a == request.b:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "a and b must name two annotators")
        limit = list_limit(context, request.limit)
        with self.db.transaction() as conn:
            found, total = console_store.pair_disagreements(
                conn, request.project, request.a, request.b, limit
            )
        return quality_pb2.PairDisagreementsResponse(
            items=[
                quality_pb2.Disagreement(
                    item_id=d.item_id,
                    value_a=d.value_a,
                    value_b=d.value_b,
                    consensus_value=d.consensus_value,
                    state=d.state,
                )
                for d in found
            ],
            total=total,
        )

    def ContestedItems(
        self, request: quality_pb2.ContestedItemsRequest, context: grpc.ServicerContext
    ) -> quality_pb2.ContestedItemsResponse:
        self._contract(context, request.project)
        if not request.class_label:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "class_label is required")
        limit = list_limit(context, request.limit)
        with self.db.transaction() as conn:
            found, total = console_store.contested_items(
                conn, request.project, request.class_label, limit
            )
        return quality_pb2.ContestedItemsResponse(
            items=[
                quality_pb2.ContestedItem(
                    item_id=c.item_id,
                    values=c.values,
                    consensus_value=c.consensus_value,
                    state=c.state,
                )
                for c in found
            ],
            total=total,
        )

    def ProjectProgress(
        self, request: quality_pb2.ProjectProgressRequest, context: grpc.ServicerContext
    ) -> quality_pb2.ProjectProgressResponse:
        self._contract(context, request.project)
        if request.bucket_seconds < 0:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "bucket_seconds cannot be negative")
        buckets = []
        with self.db.transaction() as conn:
            first, last, now = console_store.activity_span(conn, request.project)
            # A clock ahead of ours must not drop events: the grid reaches the last one.
            grid = progress_grid(
                now if first is None else first, max(now, last or now), request.bucket_seconds
            )
            if first is not None:
                counts = console_store.activity_counts(conn, request.project, grid)
                for n in range(grid.buckets):
                    bucket = quality_pb2.ProgressBucket(
                        human_labels=counts["human"][n],
                        model_labels=counts["model"][n],
                        decided=counts["decided"][n],
                        reviews_opened=counts["opened"][n],
                        reviews_resolved=counts["resolved"][n],
                    )
                    bucket.start.FromSeconds(grid.start_s + n * grid.bucket_s)
                    buckets.append(bucket)
            totals = console_store.progress_totals(conn, request.project)
        return quality_pb2.ProjectProgressResponse(
            bucket_seconds=grid.bucket_s,
            buckets=buckets,
            items_by_state=totals.items_by_state,
            decided_by_model=totals.decided_by_model,
            open_reviews=totals.open_reviews,
            human_labels_last_hour=totals.human_labels_last_hour,
        )


def _nan(value: float | None) -> float:
    return float("nan") if value is None else value
