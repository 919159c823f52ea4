"""The Sampler gRPC servicer: validate, call the pool, map errors to status codes."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterator

import grpc

from strata.common.authz import Guard, action_entry
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.grpcserver import abort
from strata.sampler import store
from strata.sampler.config import SamplerConfig
from strata.sampler.handout import next_batch
from strata.sampler.metrics import SamplerMetrics
from strata.sampler.pool import Importer, ImportSummary
from strata.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc

log = logging.getLogger(__name__)

MAX_ERRORS_REPORTED = 1000
REASON_NAMES = {
    v: k.removeprefix("ROUTING_REASON_").lower() for k, v in common_pb2.RoutingReason.items()
}


class SamplerServicer(sampler_pb2_grpc.SamplerServicer):
    def __init__(
        self,
        db: Database,
        importer: Importer,
        contracts: ContractCache,
        metrics: SamplerMetrics,
        config: SamplerConfig,
        guard: Guard,
        rng: random.Random | None = None,
    ) -> None:
        self.guard = guard
        self.db = db
        self.importer = importer
        self.contracts = contracts
        self.metrics = metrics
        self.config = config
        self.rng = rng or random.Random()

    def ImportItems(
        self,
        request_iterator: Iterator[sampler_pb2.ImportItemsRequest],
        context: grpc.ServicerContext,
    ) -> sampler_pb2.ImportItemsResponse:
        summary = ImportSummary()
        with self.importer.activity.running():
            project = self._import_stream(request_iterator, summary, context)
            self.importer.refresh_statistics(summary)
        for outcome, n in (
            ("pool", summary.imported),
            ("gold", summary.gold),
            ("exact_duplicate", summary.exact_duplicates),
            ("near_duplicate", summary.near_duplicates),
            ("rejected", len(summary.errors)),
        ):
            if n:
                self.metrics.imported.labels(project=project, outcome=outcome).inc(n)
        self.guard.audit.record(
            action_entry(
                "sampler",
                "import_items",
                project,
                project,
                received=summary.received,
                imported=summary.imported,
                gold=summary.gold,
                rejected=len(summary.errors),
            )
        )
        return sampler_pb2.ImportItemsResponse(
            received=summary.received,
            imported=summary.imported,
            exact_duplicates=summary.exact_duplicates,
            near_duplicates=summary.near_duplicates,
            gold=summary.gold,
            rejected=len(summary.errors),
            errors=[
                sampler_pb2.RowError(line=line, message=message)
                for line, message in summary.errors[:MAX_ERRORS_REPORTED]
            ],
        )

    def _import_stream(
        self,
        request_iterator: Iterator[sampler_pb2.ImportItemsRequest],
        summary: ImportSummary,
        context: grpc.ServicerContext,
    ) -> str:
        project = ""
        with self.importer.pipeline(summary) as pipeline:
            for request in request_iterator:
                if not request.project:
                    abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
                if project and request.project != project:
                    abort(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"one import is for one project: got {request.project!r} after {project!r}",
                    )
                project = request.project
                pipeline.submit(project, request.rows)
        return project

    def NextBatch(
        self, request: sampler_pb2.NextBatchRequest, context: grpc.ServicerContext
    ) -> sampler_pb2.NextBatchResponse:
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        if not 1 <= request.size <= self.config.max_batch:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"size must be between 1 and {self.config.max_batch}, got {request.size}",
            )
        if request.lease_seconds < 0:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "lease_seconds cannot be negative")
        lease_s = request.lease_seconds or self.config.lease_s
        requester = request.requester or context.peer()
        contract = self.contracts.current(request.project)
        started = time.perf_counter()
        batch_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            batch = next_batch(
                conn,
                request.project,
                request.size,
                requester,
                lease_s,
                contract,
                batch_id=batch_id,
                rng=self.rng,
                explore_fraction=self.config.explore_fraction,
                boost_weight=self.config.boost_weight,
            )
        self.metrics.rank_seconds.observe(time.perf_counter() - started)
        mode = "random" if batch.uniform else "cold_start" if batch.cold else "ranked"
        self.metrics.batches.labels(mode=mode).inc()
        if not batch.cold:
            self.metrics.versions_behind.observe(batch.versions_behind)
        strategy = (contract.active_learning.strategy if contract else "") or "margin"
        items = []
        for choice in batch.choices:
            item_id, project, content_bytes, metadata, digest, external_id = batch.leased[
                choice.item_id
            ]
            content = common_pb2.ItemContent()
            content.ParseFromString(bytes(content_bytes))
            self.metrics.batch_items.labels(reason=REASON_NAMES[choice.reason]).inc()
            items.append(
                sampler_pb2.BatchItem(
                    item=common_pb2.Item(
                        item_id=item_id,
                        project=project,
                        content=content,
                        metadata=metadata,
                        content_hash=digest,
                        external_id=external_id,
                    ),
                    routing=common_pb2.RoutingMetadata(
                        trace_id=uuid.uuid4().hex,
                        source_service="sampler",
                        reason=choice.reason,
                        project=project,
                        ontology_version=contract.version if contract else "",
                        score=choice.score,
                        attributes={
                            "batch_id": batch_id,
                            "strategy": strategy,
                            "model_version": batch.model_version,
                            "versions_behind": str(batch.versions_behind),
                            **({"spot_check": "true"} if choice.spot_check else {}),
                        },
                    ),
                )
            )
        return sampler_pb2.NextBatchResponse(
            items=items,
            batch_id=batch_id,
            cold_start=batch.cold,
            pool_left=batch.pool_left,
            model_version=batch.model_version,
        )

    def PoolStats(
        self, request: sampler_pb2.PoolStatsRequest, context: grpc.ServicerContext
    ) -> sampler_pb2.PoolStatsResponse:
        if not request.project:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, "project is required")
        if request.counts_only:
            with self.db.transaction() as conn:
                states = store.pool_counts(conn, request.project)
            return sampler_pb2.PoolStatsResponse(items_by_state=states)
        with self.db.transaction() as conn:
            stats = store.pool_stats(conn, request.project)
            _, since, _ = store.project_state(conn, request.project)
        contract = self.contracts.current(request.project)
        classes = [c.name for c in contract.classes] if contract else []
        bounds, counts = score_histogram(stats.score_bins)
        total = sum(stats.classes.values()) or 1
        for state in POOL_STATES:
            self.metrics.pool_items.labels(project=request.project, state=state).set(
                stats.states.get(state, 0)
            )
        return sampler_pb2.PoolStatsResponse(
            items_by_state=stats.states,
            exact_duplicates=stats.duplicates.get("exact", 0),
            near_duplicates=stats.duplicates.get("near", 0),
            score_distribution=sampler_pb2.ScoreHistogram(upper_bounds=bounds, counts=counts),
            class_estimates=[
                common_pb2.ClassScore(
                    class_label=classes[c] if 0 <= c < len(classes) else str(c), score=n / total
                )
                for c, n in sorted(stats.classes.items())
            ],
            model_version=stats.model_version,
            consensus_since_training=since,
        )


# Where an item can be: waiting in the pool, handed out (in flight), waiting for an
# expert's decision (review), labeled, a duplicate of another, or gold.
POOL_STATES = ("pool", "inflight", "review", "labeled", "duplicate", "gold")


def score_histogram(bins: dict[int, int]) -> tuple[list[float], list[int]]:
    """(upper bounds, counts) of pool items by uncertainty, in bins of 0.1 from 0 to 1, and
    on past 1 as far as a score reaches (entropy and BALD can): bin i holds the scores in
    (i/10, (i+1)/10], 0 and below in the first."""
    n = max(10, max(bins, default=0) + 1)
    return [round((i + 1) / 10, 1) for i in range(n)], [bins.get(i, 0) for i in range(n)]
