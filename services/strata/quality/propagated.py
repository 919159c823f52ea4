"""Duplicates labelled from their canonical item (the sampler's propagation).

The sampler never sends a duplicate to annotators; when its canonical item is decided it
publishes the duplicate's label on `labels.consensus` with method PROPAGATED, carrying the
canonical decision whole (value, score, status, votes, posterior). Quality keeps them as
decided items, marked with `propagated_from`, so the dataset it exports is whole. An
item people voted on is never overwritten by a propagated label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from strata.quality.store import Conn
from strata.v1 import common_pb2

DECIDED = {
    common_pb2.CONSENSUS_STATUS_ACCEPTED: "accepted",
    common_pb2.CONSENSUS_STATUS_EXPERT: "expert",
}


@dataclass(frozen=True)
class Propagated:
    item_id: str
    project: str
    ontology_version: str
    state: str
    value: str
    consensus_score: float
    canonical: str
    decided_at: datetime
    consensus: bytes


def propagated(c: common_pb2.ConsensusLabel) -> Propagated | None:
    """The duplicate's row, or None when `c` is not a decided propagated label."""
    state = DECIDED.get(c.status)
    if c.method != common_pb2.CONSENSUS_METHOD_PROPAGATED or state is None or not c.value:
        return None
    at = c.decided_at.ToDatetime(tzinfo=UTC) if c.HasField("decided_at") else datetime.now(UTC)
    return Propagated(
        c.item_id,
        c.project,
        c.ontology_version,
        state,
        c.value,
        c.consensus_score,
        c.propagated_from_item_id,
        at,
        c.SerializeToString(),
    )


def save(conn: Conn, rows: Sequence[Propagated]) -> int:
    """Upsert the newest label of each duplicate; returns how many rows changed."""
    newest: dict[str, Propagated] = {}
    for r in rows:
        if r.item_id not in newest or r.decided_at >= newest[r.item_id].decided_at:
            newest[r.item_id] = r
    if not newest:
        return 0
    keep = [newest[k] for k in sorted(newest)]
    cur = conn.execute(
        "INSERT INTO items (item_id, project, ontology_version, state, value, consensus_score, "
        "method, propagated_from, decided_at, consensus) "
        "SELECT u.item_id, u.project, u.version, u.state, u.value, u.score, 'propagated', "
        "u.canonical, u.decided_at, u.consensus "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], "
        "%s::text[], %s::timestamptz[], %s::bytea[]) "
        "AS u(item_id, project, version, state, value, score, canonical, decided_at, consensus) "
        "ON CONFLICT (item_id) DO UPDATE SET state = EXCLUDED.state, value = EXCLUDED.value, "
        "consensus_score = EXCLUDED.consensus_score, propagated_from = EXCLUDED.propagated_from, "
        "ontology_version = EXCLUDED.ontology_version, decided_at = EXCLUDED.decided_at, "
        "consensus = EXCLUDED.consensus, updated_at = now() "
        "WHERE items.method = 'propagated' AND items.decided_at <= EXCLUDED.decided_at",
        (
            [r.item_id for r in keep],
            [r.project for r in keep],
            [r.ontology_version for r in keep],
            [r.state for r in keep],
            [r.value for r in keep],
            [r.consensus_score for r in keep],
            [r.canonical for r in keep],
            [r.decided_at for r in keep],
            [r.consensus for r in keep],
        ),
    )
    return cur.rowcount
