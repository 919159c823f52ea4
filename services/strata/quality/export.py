"""Decided items as export records (docs/export.md): JSONL with full provenance, or
Label Studio tasks."""

from __future__ import annotations

import json
from typing import Any

from strata.quality.item_data import content_json
from strata.quality.store import Decided, ExportVote
from strata.v1 import common_pb2

_STATUS = {
    common_pb2.CONSENSUS_STATUS_ACCEPTED: "accepted",
    common_pb2.CONSENSUS_STATUS_EXPERT: "expert",
}
_METHOD = {
    common_pb2.CONSENSUS_METHOD_DAWID_SKENE: "dawid_skene",
    common_pb2.CONSENSUS_METHOD_MAJORITY_VOTE: "majority_vote",
    common_pb2.CONSENSUS_METHOD_EXPERT: "expert",
    common_pb2.CONSENSUS_METHOD_PROPAGATED: "propagated",
    common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT: "model_auto_accept",
}


_SOURCE = {
    common_pb2.LABEL_SOURCE_HUMAN: "human",
    common_pb2.LABEL_SOURCE_EXPERT: "expert",
    common_pb2.LABEL_SOURCE_MODEL: "model",
}


def provenance(
    decided: Decided, inline_images: bool = False, trained: tuple[int, str] | None = None
) -> dict[str, Any]:
    """One decided item as an export row (schema: docs/export.md): what the item is, its
    consensus, every vote behind it, where a duplicate's label came from, and (`trained`:
    influence depth, model version) how deep its label reached in the newest run that
    trained on it."""
    consensus = common_pb2.ConsensusLabel()
    consensus.ParseFromString(decided.consensus)
    weights = {v.label_id: v.weight for v in consensus.votes}
    votes = decided.votes or [
        # No vote stored here: a model label's one MODEL vote, or a duplicate's canonical
        # votes, travel in the consensus itself.
        ExportVote(
            v.label_id,
            v.annotator_id,
            v.value,
            _SOURCE.get(v.source, "human"),
            decided.decided_at,
            0,
        )
        for v in consensus.votes
    ]
    data = content_json(decided.content, inline_images)
    data["metadata"] = decided.metadata or {}
    return {
        "item_id": decided.item_id,
        "external_id": decided.external_id,
        "project": consensus.project,
        "data": data,
        "value": consensus.value,
        "consensus_score": consensus.consensus_score,
        "status": _STATUS.get(consensus.status, "unknown"),
        "method": _METHOD.get(consensus.method, "unknown"),
        "model_label": consensus.method == common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT,
        "ontology_version": consensus.ontology_version,
        "decided_at": decided.decided_at.isoformat(),
        "posterior": {c.class_label: c.score for c in consensus.posterior},
        "propagated_from": consensus.propagated_from_item_id or None,
        "influence_depth": trained[0] if trained else None,
        "influence_model": trained[1] if trained else None,
        "votes": [
            {
                "label_id": v.label_id,
                "annotator_id": v.annotator_id,
                "value": v.value,
                "source": v.source,
                "submitted_at": v.submitted_at.isoformat(),
                "duration_ms": v.duration_ms,
                "active_ms": v.active_ms,
                "weight": weights.get(v.label_id),
                "prelabel": (
                    {
                        "value": v.prelabel_value,
                        "confidence": v.prelabel_confidence,
                        "model_version": v.prelabel_model,
                    }
                    if v.prelabel_value
                    else None
                ),
            }
            for v in votes
        ],
    }


def jsonl_line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, sort_keys=True) + "\n").encode()


def label_studio_task(record: dict[str, Any]) -> dict[str, Any]:
    """A Label Studio import task (choices) carrying the consensus and each human vote."""

    def result(value: str) -> list[dict[str, Any]]:
        return [
            {
                "from_name": "label",
                "to_name": "item",
                "type": "choices",
                "value": {"choices": [value]},
            }
        ]

    # Label Studio shows `data` through the labeling config's variables ($text, $image).
    data = {
        **record["data"],
        "item_id": record["item_id"],
        "external_id": record["external_id"],
        "project": record["project"],
    }
    if record["model_label"]:
        # Label Studio's place for a model's label is a prediction, not an annotation.
        model = next((v["annotator_id"] for v in record["votes"]), "model")
        return {
            "data": data,
            "annotations": [],
            "predictions": [
                {
                    "model_version": model.removeprefix("model:"),
                    "score": record["consensus_score"],
                    "result": result(record["value"]),
                }
            ],
        }
    return {
        "data": data,
        "annotations": [
            {
                "result": result(record["value"]),
                "ground_truth": record["status"] == "expert",
                "created_at": record["decided_at"],
                "lead_time": None,
                "meta": {
                    "kind": "consensus",
                    "consensus_score": record["consensus_score"],
                    "method": record["method"],
                    "ontology_version": record["ontology_version"],
                    "annotators": [v["annotator_id"] for v in record["votes"]],
                },
            },
            *[
                {
                    "result": result(v["value"]),
                    "ground_truth": False,
                    "created_at": v["submitted_at"],
                    "lead_time": v["duration_ms"] / 1000,
                    "meta": {"kind": "vote", **v},
                }
                for v in record["votes"]
            ],
        ],
    }
