"""What the sampler does with events: scores from predictions, consensus out of the pool
(and onto duplicates), retraining triggers, confused classes from training feedback."""

from __future__ import annotations

import logging

import numpy as np

from strata.common.consumer import BatchContext, Batched, HandlerContext, TopicHandler
from strata.common.contract_store import contract_handler
from strata.common.contracts import ContractCache
from strata.common.events import Event
from strata.common.predictions import predictions_of, reject_prediction
from strata.common.topics import (
    CONTRACTS,
    LABELS_CONSENSUS,
    PREDICTIONS,
    REVIEWS_REQUESTED,
    TRAINING_FEEDBACK,
    TRAINING_REQUESTED,
)
from strata.sampler import store
from strata.sampler.feedback import confusion_weights
from strata.sampler.metrics import SamplerMetrics
from strata.sampler.strategies import STRATEGIES, bald
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

DECIDED = (common_pb2.CONSENSUS_STATUS_ACCEPTED, common_pb2.CONSENSUS_STATUS_EXPERT)


def uncertainty(prediction: common_pb2.Prediction, strategy: str) -> float:
    """The contract's strategy applied to one prediction (BALD when MC samples came)."""
    probs = np.asarray([prediction.probabilities], dtype=float)
    if strategy == "bald" and len(prediction.mc_samples) >= 2:
        samples = np.asarray([[s.probabilities] for s in prediction.mc_samples], dtype=float)
        return float(bald(samples)[0])
    return float(STRATEGIES.get(strategy, STRATEGIES["margin"])(probs)[0])


def propagated_copy(
    canonical: common_pb2.ConsensusLabel, item_id: str, project: str
) -> common_pb2.ConsensusLabel:
    """A duplicate's label: its canonical item's decision whole, marked as propagated."""
    copy = common_pb2.ConsensusLabel()
    copy.CopyFrom(canonical)
    copy.item_id = item_id
    copy.project = project
    copy.method = common_pb2.CONSENSUS_METHOD_PROPAGATED
    copy.propagated_from_item_id = canonical.item_id
    copy.decided_at.GetCurrentTime()
    return copy


class SamplerHandlers:
    def __init__(self, contracts: ContractCache, metrics: SamplerMetrics) -> None:
        self.contracts = contracts
        self.metrics = metrics

    def on_predictions(self, ctx: BatchContext, events: list[Event]) -> None:
        scored: list[store.Scored] = []
        versions: set[tuple[str, str]] = set()
        for event, p in predictions_of(events):
            if not p.item_id or len(p.probabilities) < 2 or len(p.classes) != len(p.probabilities):
                reject_prediction(
                    ctx,
                    event,
                    p,
                    "prediction needs item_id and one probability per class (at least two)",
                )
                continue
            contract = self.contracts.current(p.project) if p.project else None
            strategy = contract.active_learning.strategy if contract else ""
            probs = list(p.probabilities)
            if p.project:
                versions.add((p.project, p.model_version))
            scored.append(
                store.Scored(
                    item_id=p.item_id,
                    model_version=p.model_version,
                    probabilities=probs,
                    embedding=np.asarray(p.embedding, dtype=np.float32) if p.embedding else None,
                    predicted_class=int(np.argmax(probs)),
                    uncertainty=uncertainty(p, strategy or "margin"),
                    spot_check=p.spot_check,
                )
            )
        changed = store.save_scores(ctx.conn, scored)
        if changed:
            # Numbered as they arrive, so a batch can tell how stale its ranking is.
            store.note_model_versions(ctx.conn, versions)
        self.metrics.predictions.inc(changed)

    def on_consensus(self, ctx: BatchContext, events: list[Event]) -> None:
        decided: dict[str, common_pb2.ConsensusLabel] = {}
        model_labels: set[str] = set()
        # A withdrawal applies before the batch's decisions, unless it came after the
        # item's decision in this batch (the decision, then its withdrawal).
        withdrawn: list[str] = []
        withdrawn_after: set[str] = set()
        for event in events:
            msg = event.message
            assert isinstance(msg, events_pb2.ConsensusUpdated)
            c = msg.consensus
            if c.method == common_pb2.CONSENSUS_METHOD_PROPAGATED:
                continue  # our own propagation coming back
            if c.status in DECIDED and c.value:
                decided[c.item_id] = c
                withdrawn_after.discard(c.item_id)
                if c.method == common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT:
                    model_labels.add(c.item_id)
                else:
                    model_labels.discard(c.item_id)
            elif msg.routing.reason == common_pb2.ROUTING_REASON_RELABEL:
                if c.item_id in decided:
                    withdrawn_after.add(c.item_id)
                else:
                    withdrawn.append(c.item_id)
        if withdrawn:
            store.withdraw_for_review(ctx.conn, withdrawn)
        values = {item: c.value for item, c in decided.items()}
        labeled = store.mark_labeled(ctx.conn, values)
        changed = store.relabel_decided(ctx.conn, values)
        # Duplicates inherit their canonical item's decision whole (value, score, status,
        # votes, posterior), recorded as propagated, so training governs them and the
        # ledger attributes them exactly as it does the canonical item; when that decision
        # changes later, they take the new one.
        canonical_items = [item for item, _ in labeled] + changed
        dups = store.duplicates_of(ctx.conn, {i: values[i] for i in canonical_items})
        store.mark_labeled(
            ctx.conn,
            {dup: values[canonical] for dup, canonical, _ in dups},
            {dup: canonical for dup, canonical, _ in dups},
        )
        for dup, canonical, project in dups:
            propagated = propagated_copy(decided[canonical], dup, project)
            routing = common_pb2.RoutingMetadata(source_service="sampler", project=project)
            if canonical in model_labels:
                # A model label stays marked as one on the copies it propagates to.
                routing.attributes["auto_accept"] = "model"
            ctx.publish(
                LABELS_CONSENSUS.name,
                dup,
                events_pb2.ConsensusUpdated(routing=routing, consensus=propagated),
                "",
            )
        if withdrawn_after:
            store.withdraw_for_review(ctx.conn, sorted(withdrawn_after))
        self.metrics.propagated.inc(len(dups))
        per_project: dict[str, int] = {}
        for _, project in labeled:
            per_project[project] = per_project.get(project, 0) + 1
        for project, n in per_project.items():
            self._maybe_request_training(ctx, project, n)

    def on_reviews(self, ctx: BatchContext, events: list[Event]) -> None:
        """Items quality sends to an expert wait in review (not in flight, where a lease
        running out would put them back in the pool) until the decision labels them.
        A RELABEL review withdraws a label: that comes on labels.consensus, in order with
        the item's decisions, and is applied there."""
        waiting = []
        for event in events:
            msg = event.message
            assert isinstance(msg, events_pb2.ReviewRequested)
            if msg.kind != events_pb2.REVIEW_KIND_RELABEL and msg.item_id:
                waiting.append(msg.item_id)
        if waiting:
            store.await_review(ctx.conn, waiting)

    def _maybe_request_training(self, ctx: BatchContext, project: str, n: int) -> None:
        since = store.count_consensus(ctx.conn, project, n)
        contract = self.contracts.current(project)
        every = contract.active_learning.retrain_every if contract else 0
        if every <= 0 or since < every:
            return
        store.training_requested(ctx.conn, project)
        self.metrics.trainings_requested.inc()
        log.info("%s: %d consensus labels since the last training: requesting one", project, since)
        ctx.publish(
            TRAINING_REQUESTED.name,
            project,
            events_pb2.TrainingRequested(
                routing=common_pb2.RoutingMetadata(source_service="sampler", project=project),
                project=project,
                consensus_labels=since,
                trigger=f"retrain_every={every}",
            ),
            "",
        )

    def on_feedback(self, ctx: HandlerContext, event: Event) -> None:
        """Classes whose representation is confused get a ranking boost (0..1 each, the
        rule in `strata.sampler.feedback`)."""
        msg = event.message
        assert isinstance(msg, events_pb2.TrainingFeedback)
        weights = confusion_weights(
            {p.class_label: list(p.entropy_by_group) for p in msg.depth_profiles}
        )
        if not weights:
            return
        store.save_confusion(ctx.conn, msg.project, weights, msg.model_version)

    def routes(self) -> dict[str, TopicHandler]:
        return {
            CONTRACTS.name: contract_handler(self.contracts),
            PREDICTIONS.name: Batched(self.on_predictions),
            LABELS_CONSENSUS.name: Batched(self.on_consensus),
            REVIEWS_REQUESTED.name: Batched(self.on_reviews),
            TRAINING_FEEDBACK.name: self.on_feedback,
        }
