"""The /api routes of reviewers and managers: the review queue with each item's evidence,
the project's queue and annotators, and blocking or unblocking someone. Every call is
made as the signed-in person, so the services' matrix decides who may do what."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from strata.v1 import common_pb2, gateway_pb2, quality_pb2
from strata.web import insight, views
from strata.web.api import ERRORS, Me, NextTaskOut
from strata.web.backends import Backends, Person

STATUS_ENUM = {
    "active": common_pb2.ANNOTATOR_STATUS_ACTIVE,
    "blocked": common_pb2.ANNOTATOR_STATUS_BLOCKED,
}


class VoteOut(BaseModel):
    annotator_id: str
    value: str
    weight: float
    source: str


class ClassScoreOut(BaseModel):
    class_label: str
    score: float


class ReviewOut(BaseModel):
    why: str = Field(description="disagreement, memorization flag, model disagreement, ...")
    kind: str
    detail: str
    opened_at: str | None


class EvidenceOut(BaseModel):
    value: str
    consensus_score: float
    status: str
    votes: list[VoteOut]
    posterior: list[ClassScoreOut]
    review: ReviewOut | None


class ReviewTaskOut(NextTaskOut):
    evidence: EvidenceOut | None


class AnnotatorOut(BaseModel):
    annotator_id: str
    role: str
    status: str
    status_reason: str
    labels: int
    gold_answered: int
    gold_accuracy: float | None
    gold_accuracy_lower_bound: float | None
    agreement_with_consensus: float | None
    median_seconds: float | None
    wrong_prelabels_shown: int
    anchoring_rate: float | None
    anchoring_lower_bound: float | None
    anchoring_upper_bound: float | None


class StatusIn(BaseModel):
    status: Literal["active", "blocked"]
    reason: str = Field(default="", max_length=200)


class StatusOut(BaseModel):
    annotator_id: str
    status: str


class QueueOut(BaseModel):
    ready: int
    leased: int
    completed: int
    review_tasks: int
    labelled: int = Field(description="items whose votes are all in, waiting for consensus")
    items_by_state: dict[str, int] = Field(
        description="items handed out for labeling by where each is: queued, leased, "
        "labelled, review, completed"
    )
    labels_total: int
    labels_last_hour: int
    oldest_lease_at: str | None
    oldest_lease_seconds: float | None
    oldest_lease_annotator: str | None


def evidence(backends: Backends, item_id: str, me: Person) -> dict[str, Any]:
    """What a reviewer weighs: every vote with its weight, the posterior, why it is here."""
    reply = backends.call(
        backends.quality.ItemConsensus, quality_pb2.ItemConsensusRequest(item_id=item_id), me
    )
    return views.evidence(reply.consensus, reply.review if reply.HasField("review") else None)


def annotator_rows(backends: Backends, project: str, me: Person) -> list[dict[str, Any]]:
    """The project's people, as the gateway lists them, with quality's scores of each."""
    people, scores = backends.gather(
        [
            (backends.gateway.ListAnnotators, gateway_pb2.ListAnnotatorsRequest(project=project)),
            (
                backends.quality.AnnotatorScores,
                quality_pb2.AnnotatorScoresRequest(project=project),
            ),
        ],
        me,
    )
    return views.annotator_rows(people, scores)


def queue(backends: Backends, project: str, me: Person) -> dict[str, Any]:
    q = backends.call(
        backends.gateway.QueueStats, gateway_pb2.QueueStatsRequest(project=project), me
    )
    return insight.queue_view(q, datetime.now(UTC))


def build_manage_router(backends: Backends) -> APIRouter:
    api = APIRouter(prefix="/api", responses=ERRORS)
    gw = backends.gateway

    @api.post("/projects/{project}/reviews/next", response_model=ReviewTaskOut, tags=["review"])
    def next_review(project: str, me: Me) -> dict[str, Any]:
        """Lease the next item in review, with its votes, posterior and why it is here."""
        reply = backends.call(
            gw.NextTask, gateway_pb2.NextTaskRequest(project=project, reviews_only=True), me
        )
        if not reply.HasField("task"):
            return {"task": None, "evidence": None, "retry_after_ms": reply.retry_after_ms}
        return {
            "task": views.task(reply.task),
            "evidence": evidence(backends, reply.task.item_id, me),
            "retry_after_ms": 0,
        }

    @api.get("/items/{item_id}/evidence", response_model=EvidenceOut, tags=["review"])
    def item_evidence(item_id: str, me: Me) -> dict[str, Any]:
        """An item's votes, weights, posterior and open review (reviewers and managers)."""
        return evidence(backends, item_id, me)

    @api.get("/projects/{project}/queue", response_model=QueueOut, tags=["console"])
    def project_queue(project: str, me: Me) -> dict[str, Any]:
        """The project's task queue: ready, leased, labelled (waiting for consensus),
        completed, in review, labels; its items by where each is."""
        return queue(backends, project, me)

    @api.get("/projects/{project}/annotators", response_model=list[AnnotatorOut], tags=["console"])
    def annotators(project: str, me: Me) -> list[dict[str, Any]]:
        """Every member's labels, gold accuracy, agreement, time, anchoring and status."""
        return annotator_rows(backends, project, me)

    @api.post(
        "/projects/{project}/annotators/{annotator_id}/status",
        response_model=StatusOut,
        tags=["console"],
    )
    def set_status(project: str, annotator_id: str, body: StatusIn, me: Me) -> StatusOut:
        """Block or unblock a member of the project (audited by the gateway)."""
        backends.call(
            gw.SetAnnotatorStatus,
            gateway_pb2.SetAnnotatorStatusRequest(
                project=project,
                annotator_id=annotator_id,
                status=STATUS_ENUM[body.status],
                reason=body.reason or f"set to {body.status} in the console",
            ),
            me,
        )
        return StatusOut(annotator_id=annotator_id, status=body.status)

    return api
