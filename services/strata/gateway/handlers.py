"""What the gateway does with other services' events. Each runs in the consumer's transaction."""

from __future__ import annotations

import logging

from strata.common.audit import AuditEntry, entry_from_event, insert_entry
from strata.common.consumer import BatchContext, Batched, HandlerContext, TopicHandler
from strata.common.events import Event
from strata.common.item_store import imported_items
from strata.common.predictions import predictions_of
from strata.common.topics import (
    ANNOTATORS_STATUS,
    AUDIT,
    ITEMS_IMPORTED,
    LABELS_CONSENSUS,
    PREDICTIONS,
    REVIEWS_REQUESTED,
)
from strata.gateway import inbound, people, store
from strata.gateway.auth import Authenticator
from strata.gateway.policy import STATUSES
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)


class GatewayHandlers:
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    def on_items_imported(self, ctx: BatchContext, events: list[Event]) -> None:
        """Gold items join the gold set; pool items come through sampler batches instead."""
        for _, msg in imported_items(events):
            if not msg.gold_answer:
                continue
            routing = common_pb2.RoutingMetadata()
            routing.CopyFrom(msg.routing)
            routing.reason = common_pb2.ROUTING_REASON_GOLD
            store.add_gold_item(
                ctx.conn,
                msg.item.project,
                msg.item.item_id,
                msg.item.content.SerializeToString(),
                msg.gold_answer,
                routing.SerializeToString(),
            )

    def on_predictions(self, ctx: BatchContext, events: list[Event]) -> None:
        """Pre-labels: the newest prediction per item, one statement per batch."""
        inbound.save_prelabels(
            ctx.conn, [p for _, p in predictions_of(events) if p.item_id and p.predicted_class]
        )

    def on_consensus(self, ctx: HandlerContext, event: Event) -> None:
        msg = event.message
        assert isinstance(msg, events_pb2.ConsensusUpdated)
        outcome = inbound.apply_consensus(
            ctx.conn,
            msg.consensus.item_id,
            msg.consensus.status,
            msg.requested_overlap,
            msg.consensus.value,
        )
        log.debug("consensus for %s: %s", msg.consensus.item_id, outcome)

    def on_review(self, ctx: HandlerContext, event: Event) -> None:
        msg = event.message
        assert isinstance(msg, events_pb2.ReviewRequested)
        routing = common_pb2.RoutingMetadata()
        routing.CopyFrom(msg.routing)
        routing.reason = common_pb2.ROUTING_REASON_REVIEW
        outcome = inbound.open_review(
            ctx.conn, msg.item_id, msg.project, routing.SerializeToString(), msg.kind
        )
        if outcome == "unknown":
            log.warning(
                "review requested for item %s, which this gateway never queued", msg.item_id
            )

    def on_annotator_status(self, ctx: HandlerContext, event: Event) -> None:
        msg = event.message
        assert isinstance(msg, events_pb2.AnnotatorStatusChanged)
        status = STATUSES.get(msg.status)
        if status is None:
            raise ValueError(f"annotator status {msg.status} is not one the gateway knows")
        if not msg.project:
            raise ValueError("an annotator status change must name its project")
        if msg.routing.source_service == "gateway":
            return  # a person's decision, applied when it was made
        # A verdict applies to its own project only.
        if not people.set_status(ctx.conn, msg.project, msg.annotator_id, status, msg.reason):
            log.warning(
                "status change for %s, not a member of %s, ignored", msg.annotator_id, msg.project
            )
            return
        if status != "active":
            store.release_leases(ctx.conn, msg.annotator_id, msg.project)
        insert_entry(
            ctx.conn,
            AuditEntry(
                service="gateway",
                action="set_status",
                actor=msg.routing.source_service or "quality",
                actor_kind="service",
                project=msg.project,
                target=msg.annotator_id,
                detail={
                    "status": status,
                    "reason": msg.reason,
                    "gold_accuracy": msg.gold_accuracy,
                    "gold_answered": msg.gold_answered,
                },
                event_id=f"status:{event.event_id}",
            ),
        )
        self.auth.forget(msg.annotator_id)

    def on_audit(self, ctx: HandlerContext, event: Event) -> None:
        """Another service's audit record joins the audit table (once per event id)."""
        msg = event.message
        assert isinstance(msg, events_pb2.AuditRecorded)
        insert_entry(ctx.conn, entry_from_event(msg))

    def routes(self) -> dict[str, TopicHandler]:
        return {
            ITEMS_IMPORTED.name: Batched(self.on_items_imported),
            PREDICTIONS.name: Batched(self.on_predictions),
            LABELS_CONSENSUS.name: self.on_consensus,
            REVIEWS_REQUESTED.name: self.on_review,
            ANNOTATORS_STATUS.name: self.on_annotator_status,
            AUDIT.name: self.on_audit,
        }
