"""Training's event handlers: contracts, imported items, consensus labels, run requests."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from strata.common.consumer import BatchContext, Batched, HandlerContext, TopicHandler
from strata.common.contract_store import contract_handler
from strata.common.contracts import ContractCache
from strata.common.events import Event
from strata.common.item_store import items_imported
from strata.common.topics import (
    CONTRACTS,
    ITEMS_IMPORTED,
    LABELS_CONSENSUS,
    TRAINING_REQUESTED,
    TRUST_CURVES,
)
from strata.common.trust import from_message
from strata.training import store
from strata.training.config import TrainingConfig
from strata.training.metrics import TrainingMetrics
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

DECIDED = (common_pb2.CONSENSUS_STATUS_ACCEPTED, common_pb2.CONSENSUS_STATUS_EXPERT)


def label_source(c: common_pb2.ConsensusLabel) -> int:
    """The source the governance policy sees: who decided this label."""
    if c.status == common_pb2.CONSENSUS_STATUS_EXPERT or (
        c.method == common_pb2.CONSENSUS_METHOD_EXPERT
    ):
        return common_pb2.LABEL_SOURCE_EXPERT
    agreeing = {v.source for v in c.votes if v.value == c.value}
    by_model = c.method == common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT or (
        common_pb2.LABEL_SOURCE_MODEL in agreeing
    )
    by_people = agreeing & {common_pb2.LABEL_SOURCE_HUMAN, common_pb2.LABEL_SOURCE_EXPERT}
    if by_model and not by_people:
        # Auto-accepted, or a duplicate that inherited an auto-accepted label.
        return common_pb2.LABEL_SOURCE_MODEL
    return common_pb2.LABEL_SOURCE_HUMAN


class TrainingHandlers:
    def __init__(
        self, contracts: ContractCache, metrics: TrainingMetrics, config: TrainingConfig
    ) -> None:
        self.contracts = contracts
        self.metrics = metrics
        self.config = config

    def on_consensus(self, ctx: BatchContext, events: list[Event]) -> None:
        """Accepted and expert decisions join the training set (the newest per item
        wins); an item sent back for review leaves it until decided again."""
        decided: list[store.LabelRow] = []
        withdrawn: list[tuple[str, datetime]] = []
        for event in events:
            msg = event.message
            assert isinstance(msg, events_pb2.ConsensusUpdated)
            c = msg.consensus
            if not c.item_id or not c.project:
                ctx.reject(event, "a consensus label needs item_id and project")
                continue
            at = (
                c.decided_at.ToDatetime(tzinfo=UTC)
                if c.HasField("decided_at")
                else datetime.now(UTC)
            )
            if c.status in DECIDED:
                if not c.value:
                    ctx.reject(event, f"item {c.item_id}: an accepted consensus needs a value")
                    continue
                if not 0.0 <= c.consensus_score <= 1.0:
                    ctx.reject(
                        event,
                        f"item {c.item_id}: consensus_score {c.consensus_score} is not in [0, 1]",
                    )
                    continue
                decided.append(
                    store.LabelRow(
                        item_id=c.item_id,
                        project=c.project,
                        label_id=event.event_id,
                        value=c.value,
                        consensus_score=c.consensus_score,
                        source=label_source(c),
                        method=c.method,
                        status=c.status,
                        annotator_ids=sorted({v.annotator_id for v in c.votes if v.annotator_id}),
                        ontology_version=c.ontology_version,
                        decided_at=at,
                    )
                )
            elif c.status == common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW:
                withdrawn.append((c.item_id, at))
        # Within one batch, an item's later event decides (they arrive in partition order).
        store.save_labels(ctx.conn, _newest(decided))
        gone = store.withdraw_labels(ctx.conn, withdrawn)
        self.metrics.labels.labels(outcome="decided").inc(len(decided))
        self.metrics.labels.labels(outcome="withdrawn").inc(gone)

    def on_requested(self, ctx: HandlerContext, event: Event) -> None:
        """Active learning asked for a model: queue a run unless one is already waiting."""
        msg = event.message
        assert isinstance(msg, events_pb2.TrainingRequested)
        if not msg.project:
            raise ValueError("a training request needs a project")
        waiting = store.queued_run(ctx.conn, msg.project)
        if waiting is not None:
            log.info("%s: training requested; run %s is already queued", msg.project, waiting)
            return
        run_id = store.create_run(
            ctx.conn,
            msg.project,
            "",
            self.config.num_workers,
            self.config.epochs,
            f"{msg.trigger or 'requested'} ({msg.consensus_labels} consensus labels)",
        )
        log.info("%s: training requested; run %s queued", msg.project, run_id)

    def on_trust(self, ctx: HandlerContext, event: Event) -> None:
        """Quality fitted a project's trust curve: keep it if newer (runs in learned
        governance apply the newest). A malformed curve is a poison event."""
        msg = event.message
        assert isinstance(msg, events_pb2.TrustCurveFitted)
        if not msg.curve.project:
            raise ValueError("a trust curve needs a project")
        from_message(msg.curve)  # ValueError: not a curve
        if store.save_trust_curve(ctx.conn, msg.curve):
            log.info(
                "%s: trust curve fitted on %d gold answers kept", msg.curve.project, msg.curve.gold
            )

    def routes(self) -> dict[str, TopicHandler]:
        return {
            CONTRACTS.name: contract_handler(self.contracts),
            ITEMS_IMPORTED.name: Batched(items_imported(duplicates=True)),
            LABELS_CONSENSUS.name: Batched(self.on_consensus),
            TRAINING_REQUESTED.name: self.on_requested,
            TRUST_CURVES.name: self.on_trust,
        }


def _newest(rows: list[store.LabelRow]) -> list[store.LabelRow]:
    latest: dict[str, store.LabelRow] = {}
    for r in rows:
        if r.item_id not in latest or latest[r.item_id].decided_at <= r.decided_at:
            latest[r.item_id] = r
    return list(latest.values())
