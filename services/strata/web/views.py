"""What the browser is sent: plain JSON shapes made from the services' messages (pure)."""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from strata.v1 import common_pb2, gateway_pb2, quality_pb2

ROLE_NAMES = {
    common_pb2.ROLE_ANNOTATOR: "annotator",
    common_pb2.ROLE_REVIEWER: "reviewer",
    common_pb2.ROLE_MANAGER: "manager",
    common_pb2.ROLE_ADMIN: "admin",
}
STATUS_NAMES = {
    common_pb2.ANNOTATOR_STATUS_ACTIVE: "active",
    common_pb2.ANNOTATOR_STATUS_RETRAIN: "retrain",
    common_pb2.ANNOTATOR_STATUS_BLOCKED: "blocked",
}


def iso(ts: Timestamp) -> str | None:
    """An RFC 3339 time, or None for an unset timestamp."""
    if not ts.seconds and not ts.nanos:
        return None
    return str(ts.ToDatetime().isoformat()) + "Z"


def content(c: common_pb2.ItemContent) -> dict[str, Any]:
    """An item as a page shows it: text, an image (inline PNG), or a feature vector."""
    kind = c.WhichOneof("kind")
    if kind == "text":
        return {"kind": "text", "text": c.text}
    if kind == "image":
        if c.image.png:
            data = base64.b64encode(c.image.png).decode()
            return {
                "kind": "image",
                "src": f"data:image/png;base64,{data}",
                "width": c.image.width,
                "height": c.image.height,
            }
        return {"kind": "image", "src": None, "uri": c.image.uri}
    if kind == "features":
        return {"kind": "features", "values": [round(v, 4) for v in c.features.values]}
    return {"kind": "empty"}


def prelabel(p: common_pb2.PreLabel) -> dict[str, Any] | None:
    if not p.value:
        return None
    return {
        "value": p.value,
        "confidence": round(p.confidence, 4),
        "model_version": p.model_version,
        "calibrated": p.calibrated,
    }


def task(t: gateway_pb2.Task) -> dict[str, Any]:
    """A task as the workbench needs it. Gold has no marker here, as on the wire."""
    return {
        "task_id": t.task_id,
        "item_id": t.item_id,
        "project": t.project,
        "content": content(t.content),
        "prelabel": prelabel(t.prelabel) if t.HasField("prelabel") else None,
        "lease_expires_at": iso(t.lease_expires_at),
        "ontology_version": t.ontology_version,
        "classes": list(t.classes),
        "review": t.review,
    }


def contract(c: common_pb2.LabelingContract) -> dict[str, Any]:
    """The instructions an annotator needs: classes, examples, rulings and the version."""
    return {
        "project": c.project,
        "version": c.version,
        "classes": [
            {
                "name": k.name,
                "definition": k.definition,
                "positive_examples": list(k.positive_examples),
                "negative_examples": list(k.negative_examples),
            }
            for k in c.classes
        ],
        "edge_cases": [{"case": e.case, "ruling": e.ruling} for e in c.edge_cases],
        "hide_prelabels": c.hide_prelabels,
        "lease_seconds": c.lease_seconds,
    }


def project(p: gateway_pb2.ProjectInfo) -> dict[str, Any]:
    return {
        "project": p.project,
        "role": ROLE_NAMES.get(p.role, ""),
        "status": STATUS_NAMES.get(p.status, "active"),
        "contract_version": p.contract_version,
    }


def own_progress(score: quality_pb2.AnnotatorScore | None) -> dict[str, Any]:
    """An annotator's own standing, without anything that tells gold apart."""
    if score is None:
        return {"labels": 0, "agreement_with_consensus": None, "median_seconds": None}
    return {
        "labels": score.labels,
        "agreement_with_consensus": round(score.agreement_with_consensus, 4)
        if score.labels
        else None,
        "median_seconds": round(score.median_seconds, 2) if score.median_seconds else None,
    }


def _enum_name(prefix: str, name: str) -> str:
    return name.removeprefix(prefix).lower()


def why_in_review(kind: str, detail: str) -> str:
    """The reason a reviewer is shown, in the words of the review queue."""
    text = detail.lower()
    if "second opinion" in text or "second expert" in text:
        return "second opinion"
    if "memoriz" in text:
        return "memorization flag"
    if kind == "relabel":
        return "model disagreement"
    return "disagreement"


def evidence(c: common_pb2.ConsensusLabel, review: quality_pb2.ReviewInfo | None) -> dict[str, Any]:
    """What a reviewer weighs before deciding an item."""
    return {
        "value": c.value,
        "consensus_score": round(c.consensus_score, 4),
        "status": _enum_name("CONSENSUS_STATUS_", common_pb2.ConsensusStatus.Name(c.status)),
        "votes": [
            {
                "annotator_id": v.annotator_id,
                "value": v.value,
                "weight": round(v.weight, 4),
                "source": _enum_name("LABEL_SOURCE_", common_pb2.LabelSource.Name(v.source)),
            }
            for v in c.votes
        ],
        "posterior": [
            {"class_label": s.class_label, "score": round(s.score, 4)} for s in c.posterior
        ],
        "review": None
        if review is None
        else {
            "why": why_in_review(review.kind, review.detail),
            "kind": review.kind,
            "detail": review.detail,
            "opened_at": iso(review.opened_at),
        },
    }


def _rate(value: float, n: int) -> float | None:
    return round(value, 4) if n else None


def annotator_rows(
    people: gateway_pb2.ListAnnotatorsResponse, scores: quality_pb2.AnnotatorScoresResponse
) -> list[dict[str, Any]]:
    """The console's annotator table: each of the gateway's people with quality's scores."""
    by_id = {a.annotator_id: a for a in scores.annotators}
    return [annotator_row(p, by_id.get(p.annotator_id)) for p in people.annotators]


def annotator_row(
    person: gateway_pb2.AnnotatorInfo, score: quality_pb2.AnnotatorScore | None
) -> dict[str, Any]:
    """A line of the console's annotator table: the gateway's person, quality's scores."""
    s = score or quality_pb2.AnnotatorScore()
    return {
        "annotator_id": person.annotator_id,
        "role": ROLE_NAMES.get(person.role, ""),
        "status": STATUS_NAMES.get(person.status, "active"),
        "status_reason": person.status_reason,
        "labels": max(s.labels, person.labels_submitted),
        "gold_answered": s.gold_answered,
        "gold_accuracy": _rate(s.gold_accuracy, s.gold_answered),
        "gold_accuracy_lower_bound": _rate(s.gold_accuracy_lower_bound, s.gold_answered),
        "agreement_with_consensus": _rate(s.agreement_with_consensus, s.labels),
        "median_seconds": round(s.median_seconds, 2) if s.median_seconds else None,
        "wrong_prelabels_shown": s.wrong_prelabels_shown,
        "anchoring_rate": _rate(s.anchoring_rate, s.wrong_prelabels_shown),
        "anchoring_lower_bound": _rate(s.anchoring_lower_bound, s.wrong_prelabels_shown),
        "anchoring_upper_bound": _rate(s.anchoring_upper_bound, s.wrong_prelabels_shown),
    }
