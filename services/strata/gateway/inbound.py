"""The gateway's SQL for what other services tell it: quality's consensus and review
requests, inference's pre-labels. Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from strata.v1 import common_pb2

Conn = psycopg.Connection[Any]


def apply_consensus(
    conn: Conn, item_id: str, status: int, requested_overlap: int, value: str = ""
) -> str:
    """Close a decided item, or open more slots when quality wants more annotators."""
    decided = status in (common_pb2.CONSENSUS_STATUS_ACCEPTED, common_pb2.CONSENSUS_STATUS_EXPERT)
    row = conn.execute(
        "SELECT unit_id, target, state FROM units WHERE item_id = %s AND kind = 'label' "
        "FOR NO KEY UPDATE",
        (item_id,),
    ).fetchone()
    if row is None:
        return "unknown"
    unit_id, target, state = row
    if decided:
        conn.execute(
            "UPDATE units SET state = 'done', slots_open = 0, decided_value = %s, "
            "updated_at = now() WHERE unit_id = %s",
            (value or None, unit_id),
        )
        conn.execute(
            "UPDATE units SET state = 'done', slots_open = 0, updated_at = now() "
            "WHERE item_id = %s AND kind = 'review' AND state = 'open'",
            (item_id,),
        )
        return "decided"
    if requested_overlap > target and state == "open":
        live = conn.execute(
            "SELECT count(*) FROM tasks WHERE unit_id = %s AND state IN ('leased', 'labeled')",
            (unit_id,),
        ).fetchone()
        assert live is not None
        conn.execute(
            "UPDATE units SET target = %s, slots_open = greatest(%s - %s, 0), updated_at = now() "
            "WHERE unit_id = %s",
            (requested_overlap, requested_overlap, live[0], unit_id),
        )
        return "widened"
    return "unchanged"


def open_review(conn: Conn, item_id: str, project: str, routing: bytes, review_kind: int) -> str:
    """Turn a review request into a reviewer task; the item stops taking labels."""
    known = conn.execute("SELECT 1 FROM items WHERE item_id = %s", (item_id,)).fetchone()
    if known is None:
        return "unknown"
    conn.execute(
        "UPDATE units SET state = 'closed', slots_open = 0, updated_at = now() "
        "WHERE item_id = %s AND kind = 'label' AND state = 'open'",
        (item_id,),
    )
    # A review whose task was answered is over even without a decision: quality asks
    # for another (a second opinion), which goes to a reviewer who has not seen the item.
    conn.execute(
        "UPDATE units u SET state = 'done', updated_at = now() "
        "WHERE u.item_id = %s AND u.kind = 'review' AND u.state = 'open' AND u.slots_open = 0 "
        "AND EXISTS (SELECT 1 FROM tasks t WHERE t.unit_id = u.unit_id AND t.state = 'labeled')",
        (item_id,),
    )
    cur = conn.execute(
        "INSERT INTO units (item_id, project, kind, target, slots_open, routing, review_kind) "
        "VALUES (%s, %s, 'review', 1, 1, %s, %s) ON CONFLICT DO NOTHING",
        (item_id, project, routing, review_kind),
    )
    return "opened" if cur.rowcount else "already open"


def save_prelabels(conn: Conn, predictions: Sequence[common_pb2.Prediction]) -> int:
    """Keep the newest prediction per item, in one statement for a batch of events
    (inference re-scores the whole pool with each model). Returns rows written."""
    newest: dict[str, common_pb2.Prediction] = {}
    for p in predictions:
        kept = newest.get(p.item_id)
        if kept is None or _at(kept) <= _at(p):
            newest[p.item_id] = p
    if not newest:
        return 0
    rows = list(newest.values())
    cur = conn.execute(
        "INSERT INTO prelabels (item_id, value, confidence, model_version, calibrated, "
        "predicted_at, runner_up) SELECT * FROM unnest(%s::text[], %s::text[], %s::float8[], "
        "%s::text[], %s::bool[], %s::timestamptz[], %s::text[]) ON CONFLICT (item_id) DO UPDATE "
        "SET value = EXCLUDED.value, confidence = EXCLUDED.confidence, "
        "model_version = EXCLUDED.model_version, calibrated = EXCLUDED.calibrated, "
        "predicted_at = EXCLUDED.predicted_at, runner_up = EXCLUDED.runner_up "
        "WHERE prelabels.predicted_at <= EXCLUDED.predicted_at",
        (
            [p.item_id for p in rows],
            [p.predicted_class for p in rows],
            [p.confidence for p in rows],
            [p.model_version for p in rows],
            [p.calibrated for p in rows],
            [_at(p) for p in rows],
            [_runner_up(p) for p in rows],
        ),
    )
    return cur.rowcount


def _runner_up(p: common_pb2.Prediction) -> str | None:
    """The model's second most likely class."""
    if len(p.probabilities) < 2 or len(p.classes) != len(p.probabilities):
        return None
    ranked = sorted(range(len(p.probabilities)), key=lambda i: -p.probabilities[i])
    return p.classes[ranked[1]]


def _at(p: common_pb2.Prediction) -> datetime:
    return p.predicted_at.ToDatetime(tzinfo=UTC)
