"""What quality does with events: votes in, consensus, gold verdicts and reviews out.

Each handler runs in the consumer's transaction; the decisions are the pure
functions of `consensus`, `gold` and `label_errors`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
from google.protobuf.message import Message

from strata.common.audit import AuditEntry, AuditSink
from strata.common.consumer import BatchContext, Batched, Deferred, HandlerContext, TopicHandler
from strata.common.contract_store import contract_handler
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.events import Event
from strata.common.item_store import imported_items, reject_item
from strata.common.predictions import predictions_of, reject_prediction
from strata.common.topics import (
    ANNOTATORS_STATUS,
    CONTRACTS,
    ITEMS_IMPORTED,
    LABELS_CONSENSUS,
    LABELS_SUBMITTED,
    PREDICTIONS,
    REVIEWS_REQUESTED,
    TRAINING_FEEDBACK,
)
from strata.quality import amendments, item_data, propagated, store
from strata.quality.consensus import (
    ACCEPTED,
    MORE,
    decide,
    overturned_agreement,
    prior_confusion,
    score_item,
)
from strata.quality.gold import Anchoring, gold_verdict
from strata.quality.metrics import QualityMetrics
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

# The prefix of annotators whose answers were imported (module `imports`).
EXTERNAL = "ext:"

SOURCES = {
    common_pb2.LABEL_SOURCE_HUMAN: "human",
    common_pb2.LABEL_SOURCE_MODEL: "model",
    common_pb2.LABEL_SOURCE_WEAK: "weak",
    common_pb2.LABEL_SOURCE_EXPERT: "expert",
}
SOURCE_ENUM = {name: value for value, name in SOURCES.items()}
STATUS_ENUM = {
    "active": common_pb2.ANNOTATOR_STATUS_ACTIVE,
    "retrain": common_pb2.ANNOTATOR_STATUS_RETRAIN,
    "blocked": common_pb2.ANNOTATOR_STATUS_BLOCKED,
}
STATUS_NAMES = {value: name for name, value in STATUS_ENUM.items()}
METHODS = {
    "dawid_skene": common_pb2.CONSENSUS_METHOD_DAWID_SKENE,
    "majority_vote": common_pb2.CONSENSUS_METHOD_MAJORITY_VOTE,
    "expert": common_pb2.CONSENSUS_METHOD_EXPERT,
    store.MODEL_AUTO_ACCEPT: common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT,
}
STATES = {
    "accepted": common_pb2.CONSENSUS_STATUS_ACCEPTED,
    "expert": common_pb2.CONSENSUS_STATUS_EXPERT,
    "review": common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW,
    "open": common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW,
}

# (topic, key, message, trace id): emit an event in the caller's transaction.
Publish = Callable[[str, str, Message, str], object]


class ContractUnknown(Deferred):
    """A label names a contract version quality has not received (yet): it waits for it."""


def class_names(contract: common_pb2.LabelingContract) -> list[str]:
    return [c.name for c in contract.classes]


class EstimateCache:
    """Each project's latest Dawid-Skene estimate, re-read when the table has a newer one."""

    def __init__(self, db: Database, check_every_s: float = 1.0) -> None:
        self.db = db
        self.check_every_s = check_every_s
        self._cached: dict[str, tuple[float, store.Estimate | None]] = {}
        self._lock = threading.Lock()

    def get(self, conn: store.Conn, project: str) -> store.Estimate | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cached.get(project)
        if hit is not None and now - hit[0] < self.check_every_s:
            return hit[1]
        stamp = store.estimate_stamp(conn, project)
        if hit is not None and hit[1] is not None and hit[1].estimated_at == stamp:
            found: store.Estimate | None = hit[1]
        else:
            found = store.load_estimate(conn, project) if stamp is not None else None
        with self._lock:
            self._cached[project] = (now, found)
        return found

    def invalidate(self, project: str) -> None:
        with self._lock:
            self._cached.pop(project, None)


def consensus_message(
    item_id: str,
    project: str,
    version: str,
    state: str,
    method: str,
    value: str,
    score: float,
    votes: Sequence[store.VoteRow],
    weights: Sequence[float],
    classes: Sequence[str] = (),
    posterior: Sequence[float] = (),
) -> common_pb2.ConsensusLabel:
    """The ConsensusLabel that travels on strata.labels.consensus."""
    msg = common_pb2.ConsensusLabel(
        item_id=item_id,
        value=value,
        consensus_score=score,
        method=METHODS[method],
        status=STATES[state],
        project=project,
        ontology_version=version,
        votes=[
            common_pb2.Vote(
                annotator_id=v.annotator_id,
                value=v.value,
                weight=w,
                label_id=v.label_id,
                source=SOURCE_ENUM.get(v.source, common_pb2.LABEL_SOURCE_UNSPECIFIED),
            )
            for v, w in zip(votes, weights, strict=True)
        ],
        posterior=[
            common_pb2.ClassScore(class_label=c, score=float(p))
            for c, p in zip(classes, posterior, strict=True)
        ],
    )
    msg.decided_at.FromDatetime(datetime.now(UTC))
    return msg


def routing(
    project: str, version: str, reason: common_pb2.RoutingReason, trace_id: str, **attributes: str
) -> common_pb2.RoutingMetadata:
    return common_pb2.RoutingMetadata(
        trace_id=trace_id,
        source_service="quality",
        reason=reason,
        project=project,
        ontology_version=version,
        attributes=attributes,
    )


def decide_by_expert(
    conn: store.Conn,
    publish: Publish,
    item: store.ItemState,
    votes: Sequence[store.VoteRow],
    value: str,
    expert_id: str,
    note: str,
    trace_id: str,
) -> common_pb2.ConsensusLabel:
    """An expert's answer decides the item (status EXPERT) and closes its open review."""
    weights = [1.0 if v.annotator_id == expert_id and v.value == value else 0.0 for v in votes]
    consensus = consensus_message(
        item.item_id,
        item.project,
        item.ontology_version,
        "expert",
        "expert",
        value,
        1.0,
        votes,
        weights,
    )
    store.update_items(
        conn,
        [
            store.ItemUpdate(
                item.item_id,
                "expert",
                len(votes),
                item.requested_overlap,
                value=value,
                consensus_score=1.0,
                method="expert",
                decided_by=expert_id,
                consensus=consensus.SerializeToString(),
            )
        ],
    )
    store.resolve_review(conn, item.item_id, expert_id, value, note)
    publish(
        LABELS_CONSENSUS.name,
        item.item_id,
        events_pb2.ConsensusUpdated(
            routing=routing(
                item.project, item.ontology_version, common_pb2.ROUTING_REASON_REVIEW, trace_id
            ),
            consensus=consensus,
            requested_overlap=len(votes),
        ),
        trace_id,
    )
    return consensus


@dataclass
class _Fresh:
    event: Event
    message: events_pb2.LabelSubmitted
    vote: store.NewVote


class QualityHandlers:
    def __init__(
        self,
        contracts: ContractCache,
        estimates: EstimateCache,
        metrics: QualityMetrics,
        *,
        prior_accuracy: float = 0.7,
        gold_min_answered: int = 5,
        second_opinion_votes: int = 2,
        audit: AuditSink | None = None,
    ) -> None:
        self.audit = audit
        self.contracts = contracts
        self.estimates = estimates
        self.metrics = metrics
        self.prior_accuracy = prior_accuracy
        self.gold_min_answered = gold_min_answered
        self.second_opinion_votes = second_opinion_votes

    # -- contracts ---------------------------------------------------------------

    def _check(self, ctx: BatchContext, event: Event) -> _Fresh | None:
        msg = event.message
        assert isinstance(msg, events_pb2.LabelSubmitted)
        label = msg.label
        project = label.project or msg.routing.project
        missing = [
            name
            for name, value in (
                ("label_id", label.label_id),
                ("item_id", label.item_id),
                ("annotator_id", label.annotator_id),
                ("project", project),
                ("ontology_version", label.ontology_version),
                ("value", label.value),
            )
            if not value
        ]
        if missing:
            ctx.reject(event, f"label is missing {', '.join(missing)}")
            return None
        source = SOURCES.get(label.source)
        if source is None:
            ctx.reject(event, f"label {label.label_id} has no known source ({label.source})")
            return None
        contract = self.contracts.version(project, label.ontology_version)
        if contract is None:
            raise ContractUnknown(
                f"label {label.label_id} is for contract version {label.ontology_version!r} of "
                f"project {project!r}, which quality has not received on {CONTRACTS.name}"
            )
        classes = class_names(contract)
        if label.value not in classes:
            ctx.reject(
                event,
                f"label {label.label_id}: class {label.value!r} is not in contract "
                f"{project} v{label.ontology_version} (classes: {', '.join(classes)})",
            )
            return None
        vote = store.NewVote(
            label_id=label.label_id,
            item_id=label.item_id,
            project=project,
            annotator_id=label.annotator_id,
            value=label.value,
            ontology_version=label.ontology_version,
            source=source,
            gold=msg.gold,
            gold_answer=msg.gold_answer or None,
            submitted_at=(
                label.submitted_at.ToDatetime(tzinfo=UTC)
                if label.HasField("submitted_at")
                else datetime.now(UTC)
            ),
            duration_ms=max(0, label.duration_ms),
            prelabel_value=label.shown_prelabel.value or None,
            prelabel_honeypot=msg.prelabel_honeypot,
            active_ms=max(0, label.active_ms),
            prelabel_confidence=(
                label.shown_prelabel.confidence if label.shown_prelabel.value else None
            ),
            prelabel_model=label.shown_prelabel.model_version or None,
        )
        return _Fresh(event, msg, vote)

    def on_labels(self, ctx: BatchContext, events: list[Event]) -> None:
        """Store votes (once per label id), score gold, and decide the touched items;
        then apply the changes annotators made to their votes (revision > 0)."""
        checked = [f for f in (self._check(ctx, e) for e in events) if f is not None]
        firsts = [f for f in checked if f.message.revision == 0]
        changes = [f for f in checked if f.message.revision > 0]
        new_ids = store.insert_votes(ctx.conn, [f.vote for f in firsts])
        fresh: list[_Fresh] = []
        for f in firsts:
            if f.vote.label_id in new_ids:
                new_ids.discard(f.vote.label_id)
                fresh.append(f)
        for f in fresh:
            self.metrics.labels_consumed.labels(project=f.vote.project, source=f.vote.source).inc()
        if fresh:
            self.score_gold(ctx, [(f.vote, f.event.trace_id) for f in fresh if f.vote.gold])
            self._decide(ctx, fresh)
        if changes:
            self._apply_changes(ctx, changes)

    def _apply_changes(self, ctx: BatchContext, changes: list[_Fresh]) -> None:
        """An annotator changed their answer: replace the vote, correct their gold record
        by the difference, and decide its item afresh (module `amendments`)."""
        by_label = {f.vote.label_id: f for f in changes}
        applied, unknown = amendments.apply_changes(
            ctx.conn, [(f.vote, f.message.revision) for f in changes]
        )
        for vote in unknown:
            ctx.reject(
                by_label[vote.label_id].event,
                f"label {vote.label_id} was changed, but quality never stored it (its first "
                "answer was refused), so there is nothing to change",
            )
        deltas: dict[tuple[str, str], store.GoldDelta] = {}
        traces: dict[tuple[str, str], tuple[str, str]] = {}
        for change in applied:
            delta = amendments.gold_delta(change)
            if delta is not None:
                key = (change.vote.project, change.vote.annotator_id)
                deltas[key] = deltas.get(key, store.GoldDelta()) + delta
                f = by_label[change.vote.label_id]
                traces[key] = (f.vote.ontology_version, f.event.trace_id)
            log.info(
                "%s changed label %s on %s from %r to %r",
                change.vote.annotator_id,
                change.vote.label_id,
                change.vote.item_id,
                change.old_value,
                change.vote.value,
            )
        self._judge_gold(ctx, deltas, traces)
        pool = [c for c in applied if not c.gold_answer]
        if not pool:
            return
        # Decided before the change (by people): a withdrawn deciding answer reopens it.
        before = {c.vote.item_id: store.item_row(ctx.conn, c.vote.item_id) for c in pool}
        self._decide(ctx, [by_label[c.vote.label_id] for c in pool])
        for c in pool:
            item = before[c.vote.item_id]
            withdrawn = (
                item is not None
                and item["state"] == "accepted"
                and item["method"] != store.MODEL_AUTO_ACCEPT
                and item["value"] == c.old_value != c.vote.value
            )
            if withdrawn:
                request_relabel(
                    ctx.conn,
                    ctx.publish,
                    c.vote.item_id,
                    f"{c.vote.annotator_id} changed their answer from {c.old_value!r} to "
                    f"{c.vote.value!r} after the item was accepted as {c.old_value!r}",
                    [c.vote.label_id],
                    "",
                    by_label[c.vote.label_id].event.trace_id,
                    "amended",
                    self.metrics,
                )

    def score_gold(self, ctx: BatchContext, gold: list[tuple[store.NewVote, str]]) -> None:
        """Add new answers on gold items (with their trace ids) to their annotators'
        records, and publish the verdicts that change."""
        deltas: dict[tuple[str, str], store.GoldDelta] = {}
        traces: dict[tuple[str, str], tuple[str, str]] = {}
        for vote, trace in gold:
            if vote.source != "human" or not vote.gold_answer:
                continue
            key = (vote.project, vote.annotator_id)
            wrong = vote.wrong_prelabel
            deltas[key] = deltas.get(key, store.GoldDelta()) + store.GoldDelta(
                answered=1,
                correct=int(vote.value == vote.gold_answer),
                wrong_prelabels_shown=int(wrong),
                wrong_prelabels_followed=int(wrong and vote.value == vote.prelabel_value),
            )
            traces[key] = (vote.ontology_version, trace)
        self._judge_gold(ctx, deltas, traces)

    def _judge_gold(
        self,
        ctx: BatchContext,
        deltas: dict[tuple[str, str], store.GoldDelta],
        traces: dict[tuple[str, str], tuple[str, str]],
    ) -> None:
        """Add gold deltas to the annotators' records and publish changed verdicts."""
        for totals in store.add_gold(ctx.conn, deltas):
            key = (totals.project, totals.annotator_id)
            version, trace = traces[key]
            contract = self.contracts.version(totals.project, version)
            assert contract is not None
            verdict = gold_verdict(
                totals.correct,
                totals.answered,
                contract.gold_accuracy_threshold,
                self.gold_min_answered,
                Anchoring(totals.wrong_prelabels_followed, totals.wrong_prelabels_shown),
                contract.gold_max_anchoring,
            )
            if verdict.status == totals.status or totals.status == "blocked":
                # A verdict never lifts a block: gold answers still in flight when it
                # landed must not let a spammer back in. A person unblocks (the gateway
                # tells quality, below), and then the verdicts run afresh.
                continue
            store.set_status(ctx.conn, *key, verdict.status, verdict.reason)
            self.metrics.annotator_status.labels(
                project=totals.project, status=verdict.status
            ).inc()
            log.info("annotator %s in %s: %s (%s)", key[1], key[0], verdict.status, verdict.reason)
            if totals.annotator_id.startswith(EXTERNAL):
                continue  # imported answers: no account at the gateway to act on
            ctx.publish(
                ANNOTATORS_STATUS.name,
                totals.annotator_id,
                events_pb2.AnnotatorStatusChanged(
                    routing=routing(
                        totals.project,
                        version,
                        common_pb2.ROUTING_REASON_GOLD,
                        trace,
                    ),
                    annotator_id=totals.annotator_id,
                    project=totals.project,
                    status=STATUS_ENUM[verdict.status],
                    gold_accuracy=verdict.accuracy,
                    gold_accuracy_lower_bound=verdict.lower,
                    gold_answered=totals.answered,
                    reason=verdict.reason,
                ),
                trace,
            )

    def _decide(self, ctx: BatchContext, fresh: list[_Fresh]) -> None:
        items = store.lock_items(ctx.conn, [f.vote for f in fresh])
        by_item: dict[str, list[_Fresh]] = {}
        for f in fresh:
            by_item.setdefault(f.vote.item_id, []).append(f)
        all_votes = store.votes_of(ctx.conn, by_item)
        updates: list[store.ItemUpdate] = []
        for item_id, arrivals in by_item.items():
            item = items[item_id]
            votes = all_votes.get(item_id, [])
            trace = arrivals[-1].event.trace_id
            expert = next((f for f in arrivals if f.vote.source == "expert"), None)
            if expert is not None and item.state == "review":
                agreed = overturned_agreement(
                    [(v.annotator_id, v.value) for v in votes if v.source == "human"],
                    expert.vote.annotator_id,
                    expert.vote.value,
                    [v.annotator_id for v in votes if v.source == "expert"],
                    self.second_opinion_votes,
                )
                if agreed is not None:
                    self._second_opinion(ctx, item, votes, expert, agreed)
                    updates.append(
                        store.ItemUpdate(item.item_id, "review", len(votes), item.requested_overlap)
                    )
                    continue
            if expert is not None and item.state != "expert":
                decide_by_expert(
                    ctx.conn,
                    ctx.publish,
                    item,
                    votes,
                    expert.vote.value,
                    expert.vote.annotator_id,
                    "labelled on a review task",
                    expert.event.trace_id,
                )
                if self.audit is not None:
                    self.audit.write(
                        ctx.conn,
                        AuditEntry(
                            service="quality",
                            action="resolve_review",
                            actor=expert.vote.annotator_id,
                            actor_kind="person",
                            project=item.project,
                            target=item.item_id,
                            detail={"value": expert.vote.value, "via": "review task"},
                        ),
                    )
                self.metrics.consensus.labels(project=item.project, outcome="expert").inc()
                continue
            if item.gold_answer is not None or (item.state != "open" and not item.model_label):
                # Gold items' truth is known; decided items and items in review only
                # record the late vote. A model label stands until humans decide.
                updates.append(
                    store.ItemUpdate(item.item_id, item.state, len(votes), item.requested_overlap)
                )
                continue
            update = self._consensus(ctx, item, votes, trace)
            updates.append(update)
        store.update_items(ctx.conn, updates)

    def _second_opinion(
        self,
        ctx: BatchContext,
        item: store.ItemState,
        votes: list[store.VoteRow],
        expert: _Fresh,
        agreed: str,
    ) -> None:
        """An expert overturned a unanimous crowd: their answer is kept on the review they
        closed, and a second expert (one who has not seen the item) decides."""
        crowd = sum(1 for v in votes if v.source == "human")
        by, answer = expert.vote.annotator_id, expert.vote.value
        store.resolve_review(
            ctx.conn, item.item_id, by, answer, f"overturns {crowd} agreeing votes for {agreed!r}"
        )
        detail = (
            f"expert {by} answered {answer!r} against {crowd} agreeing votes for {agreed!r}; "
            "a second expert decides"
        )
        current = common_pb2.ConsensusLabel(
            item_id=item.item_id,
            value=agreed,
            status=common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW,
            project=item.project,
            ontology_version=item.ontology_version,
        )
        self._ask_expert(ctx, item, detail, current, expert.event.trace_id, "second_opinion")
        log.info("review of %s: %s", item.item_id, detail)

    def _ask_expert(
        self,
        ctx: BatchContext,
        item: store.ItemState,
        detail: str,
        current: common_pb2.ConsensusLabel,
        trace: str,
        outcome: str,
    ) -> None:
        """Open an expert review of the item and put it on `strata.reviews.requested`."""
        store.open_review(ctx.conn, item.item_id, item.project, "expert", detail)
        self.metrics.consensus.labels(project=item.project, outcome=outcome).inc()
        ctx.publish(
            REVIEWS_REQUESTED.name,
            item.item_id,
            events_pb2.ReviewRequested(
                routing=routing(
                    item.project, item.ontology_version, common_pb2.ROUTING_REASON_REVIEW, trace
                ),
                item_id=item.item_id,
                project=item.project,
                kind=events_pb2.REVIEW_KIND_EXPERT,
                detail=detail,
                current=current,
            ),
            trace,
        )

    def redecide(self, ctx: BatchContext, project: str) -> int:
        """Decide the project's waiting items again under the newest estimate.

        A better-known crowd can settle an item without the extra annotator it
        was waiting for. Items a consumer holds right now are skipped (next round).
        Returns how many were accepted.
        """
        self.estimates.invalidate(project)
        items = store.open_items(ctx.conn, project)
        votes = store.votes_of(ctx.conn, [i.item_id for i in items])
        trace = uuid.uuid4().hex
        updates = [self._consensus(ctx, i, votes.get(i.item_id, []), trace) for i in items]
        store.update_items(ctx.conn, updates)
        return sum(u.state == "accepted" for u in updates)

    def _consensus(
        self, ctx: BatchContext, item: store.ItemState, votes: list[store.VoteRow], trace: str
    ) -> store.ItemUpdate:
        contract = self.contracts.version(item.project, item.ontology_version)
        assert contract is not None
        classes = class_names(contract)
        index = {c: i for i, c in enumerate(classes)}
        counted = [v for v in votes if v.value in index and v.source == "human"]
        estimate = self.estimates.get(ctx.conn, item.project)
        k = len(classes)
        if estimate is not None and estimate.classes == classes:
            confusions, priors = estimate.confusions, estimate.class_priors
        else:
            confusions, priors = {}, np.full(k, 1.0 / k)
        scored = score_item(
            [index[v.value] for v in counted],
            [v.annotator_id for v in counted],
            confusions,
            priors,
            prior_confusion(k, self.prior_accuracy),
        )
        overlap_min = max(1, contract.overlap.min)
        decision = decide(
            scored.posterior,
            len(counted),
            overlap_min=overlap_min,
            overlap_max=max(overlap_min, contract.overlap.max),
            threshold=contract.consensus_threshold,
        )
        majority = classes[scored.majority]
        posterior = [float(p) for p in scored.posterior]
        base = store.ItemUpdate(
            item.item_id,
            item.state,
            len(votes),
            item.requested_overlap,
            classes=classes,
            posterior=posterior,
            majority_value=majority,
        )
        if decision is None:
            return base
        value = classes[decision.value]
        consensus = consensus_message(
            item.item_id,
            item.project,
            item.ontology_version,
            "accepted" if decision.status == ACCEPTED else "open",
            "dawid_skene",
            value,
            decision.score,
            counted,
            scored.weights,
            classes,
            posterior,
        )
        if decision.status == ACCEPTED:
            self.metrics.consensus.labels(project=item.project, outcome="accepted").inc()
            ctx.publish(
                LABELS_CONSENSUS.name,
                item.item_id,
                events_pb2.ConsensusUpdated(
                    routing=routing(
                        item.project,
                        item.ontology_version,
                        common_pb2.ROUTING_REASON_OVERLAP,
                        trace,
                        method="dawid_skene",
                    ),
                    consensus=consensus,
                    requested_overlap=len(counted),
                ),
                trace,
            )
            return replace(
                base,
                state="accepted",
                value=value,
                consensus_score=decision.score,
                method="dawid_skene",
                consensus=consensus.SerializeToString(),
            )
        if decision.status == MORE:
            if decision.requested_overlap <= item.requested_overlap:
                return base
            self.metrics.consensus.labels(project=item.project, outcome="more").inc()
            ctx.publish(
                LABELS_CONSENSUS.name,
                item.item_id,
                events_pb2.ConsensusUpdated(
                    routing=routing(
                        item.project,
                        item.ontology_version,
                        common_pb2.ROUTING_REASON_OVERLAP,
                        trace,
                    ),
                    consensus=consensus,
                    requested_overlap=decision.requested_overlap,
                ),
                trace,
            )
            return replace(base, requested_overlap=decision.requested_overlap)
        detail = (
            f"consensus {decision.score:.2f} for {value!r} stayed under the threshold "
            f"{contract.consensus_threshold:.2f} after {len(counted)} votes (overlap.max)"
        )
        self._ask_expert(ctx, item, detail, consensus, trace, "review")
        # Kept so the reviewer sees each vote's weight as this estimate gave it.
        return replace(base, state="review", consensus=consensus.SerializeToString())

    # -- model signals ---------------------------------------------------------------

    def on_predictions(self, ctx: BatchContext, events: list[Event]) -> None:
        """Keep the newest prediction per item (label-error audit, the report) and
        accept the items the model auto-labels."""
        valid: list[tuple[Event, common_pb2.Prediction]] = []
        for event, p in predictions_of(events):
            if not p.item_id or not p.project or len(p.classes) != len(p.probabilities):
                reject_prediction(
                    ctx,
                    event,
                    p,
                    "prediction needs item_id, project and one probability per class "
                    f"(got {len(p.classes)} classes, {len(p.probabilities)} probabilities)",
                )
                continue
            valid.append((event, p))
        store.save_predictions(ctx.conn, [p for _, p in valid])
        self._accept_model_labels(ctx, [(e, p) for e, p in valid if p.auto_accept])

    def _accept_model_labels(
        self, ctx: BatchContext, proposed: list[tuple[Event, common_pb2.Prediction]]
    ) -> None:
        """Auto-accept: an item no human has labelled takes the model's label, marked
        as such (method MODEL_AUTO_ACCEPT, one MODEL vote by "model:<version>").
        Items with human votes, decisions or reviews keep them; a newer model's
        auto label replaces an older one."""
        if not proposed:
            return
        newest: dict[str, common_pb2.Prediction] = {}
        versions: dict[str, str] = {}
        for event, p in proposed:  # a partition is in order: the last word wins
            contract = self.contracts.current(p.project)
            if contract is None:
                raise ContractUnknown(
                    f"auto-accepted prediction for {p.item_id} of project {p.project!r}, "
                    f"which quality has not received on {CONTRACTS.name}"
                )
            if p.predicted_class not in class_names(contract):
                reject_prediction(
                    ctx,
                    event,
                    p,
                    f"auto-accepted prediction for {p.item_id}: class {p.predicted_class!r} is "
                    f"not in contract {p.project} v{contract.version}",
                )
                continue
            newest[p.item_id] = p
            versions[p.item_id] = contract.version
        existing = store.lock_existing(ctx.conn, newest)
        labels = []
        for item_id, p in sorted(newest.items()):
            item = existing.get(item_id)
            if item is not None and not (item.model_label and item.value != p.predicted_class):
                continue
            model = f"model:{p.model_version}"
            vote = store.VoteRow(
                f"{model}:{item_id}", model, p.predicted_class, "model", datetime.now(UTC)
            )
            consensus = consensus_message(
                item_id,
                p.project,
                versions[item_id],
                "accepted",
                store.MODEL_AUTO_ACCEPT,
                p.predicted_class,
                p.confidence,
                [vote],
                [1.0],
                list(p.classes),
                list(p.probabilities),
            )
            labels.append(
                store.ModelLabel(
                    item_id,
                    p.project,
                    versions[item_id],
                    p.predicted_class,
                    p.confidence,
                    p.model_version,
                    consensus.SerializeToString(),
                )
            )
            trace = uuid.uuid4().hex
            ctx.publish(
                LABELS_CONSENSUS.name,
                item_id,
                events_pb2.ConsensusUpdated(
                    routing=routing(
                        p.project,
                        versions[item_id],
                        common_pb2.ROUTING_REASON_UNSPECIFIED,
                        trace,
                        method=store.MODEL_AUTO_ACCEPT,
                        auto_accept="model",
                        model_version=p.model_version,
                    ),
                    consensus=consensus,
                ),
                trace,
            )
            self.metrics.consensus.labels(project=p.project, outcome="model").inc()
        store.save_model_labels(ctx.conn, labels)

    def on_consensus(self, ctx: BatchContext, events: list[Event]) -> None:
        """Duplicates the sampler labelled from their canonical item join the decided
        items (module `propagated`); quality's own decisions coming back are skipped."""
        rows = []
        for event in events:
            msg = event.message
            assert isinstance(msg, events_pb2.ConsensusUpdated)
            row = propagated.propagated(msg.consensus)
            if row is None:
                continue
            if not (row.item_id and row.project and row.canonical):
                ctx.reject(
                    event, "a propagated label needs item_id, project and propagated_from_item_id"
                )
                continue
            rows.append(row)
        propagated.save(ctx.conn, rows)

    def on_items(self, ctx: BatchContext, events: list[Event]) -> None:
        """What each item is, kept for the export and for imports (module `item_data`)."""
        rows = []
        for event, msg in imported_items(events):
            if not (msg.item.item_id and msg.item.project):
                reject_item(ctx, event, msg, "an imported item needs item_id and project")
                continue
            rows.append(item_data.from_event(msg))
        item_data.save(ctx.conn, rows)

    def on_feedback(self, ctx: HandlerContext, event: Event) -> None:
        """Memorization flags are stored; the label-error audit sends the flagged labels
        back for review (RELABEL) once the flagging version is right enough on gold."""
        msg = event.message
        assert isinstance(msg, events_pb2.TrainingFeedback)
        store.save_memorization_flags(
            ctx.conn, msg.project, msg.run_id, msg.model_version, msg.memorization_flags
        )

    def on_annotator_status(self, ctx: HandlerContext, event: Event) -> None:
        """A person (a manager, through the gateway) set an annotator's standing; quality's
        own verdicts are already stored when it publishes them."""
        msg = event.message
        assert isinstance(msg, events_pb2.AnnotatorStatusChanged)
        if msg.routing.source_service != "gateway":
            return
        status = STATUS_NAMES.get(msg.status)
        if status is None or not msg.project:
            raise ValueError(
                f"annotator status {msg.status} in {msg.project!r} is not one quality knows"
            )
        store.record_status(ctx.conn, msg.project, msg.annotator_id, status, msg.reason)

    def routes(self) -> dict[str, TopicHandler]:
        # Contracts first: a poll that holds a contract and its first labels applies both.
        return {
            CONTRACTS.name: contract_handler(self.contracts),
            LABELS_SUBMITTED.name: Batched(self.on_labels),
            PREDICTIONS.name: Batched(self.on_predictions),
            LABELS_CONSENSUS.name: Batched(self.on_consensus),
            ITEMS_IMPORTED.name: Batched(self.on_items),
            TRAINING_FEEDBACK.name: self.on_feedback,
            ANNOTATORS_STATUS.name: self.on_annotator_status,
        }


def request_relabel(
    conn: store.Conn,
    publish: Publish,
    item_id: str,
    detail: str,
    suspected_label_ids: Sequence[str],
    model_version: str,
    trace_id: str,
    detector: str,
    metrics: QualityMetrics,
) -> bool:
    """Send an accepted item back to review (RELABEL); False when it is not accepted."""
    row = store.item_row(conn, item_id, lock=True)
    if row is None or row["state"] != "accepted":
        return False
    if not store.open_review(
        conn, item_id, row["project"], "relabel", detail, suspected_label_ids, model_version
    ):
        return False
    conn.execute(
        "UPDATE items SET state = 'review', updated_at = now() WHERE item_id = %s", (item_id,)
    )
    current = common_pb2.ConsensusLabel(
        item_id=item_id,
        value=row["value"] or "",
        consensus_score=row["consensus_score"] or 0.0,
        status=common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW,
        project=row["project"],
        ontology_version=row["ontology_version"],
    )
    route = routing(
        row["project"],
        row["ontology_version"],
        common_pb2.ROUTING_REASON_RELABEL,
        trace_id,
        detector=detector,
    )
    # Withdraw the accepted label (training drops it) until the review decides.
    publish(
        LABELS_CONSENSUS.name,
        item_id,
        events_pb2.ConsensusUpdated(routing=route, consensus=current),
        trace_id,
    )
    publish(
        REVIEWS_REQUESTED.name,
        item_id,
        events_pb2.ReviewRequested(
            routing=route,
            item_id=item_id,
            project=row["project"],
            kind=events_pb2.REVIEW_KIND_RELABEL,
            detail=detail,
            current=current,
            suspected_label_ids=list(suspected_label_ids),
        ),
        trace_id,
    )
    metrics.label_errors.labels(project=row["project"], detector=detector).inc()
    return True
