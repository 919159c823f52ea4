"""The sampler's SQL. Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg.types.json import Jsonb

from strata.common import pgcopy
from strata.common.contract_store import load_contract, projects, save_contract
from strata.common.pgarrays import numpy_cursor

__all__ = ["load_contract", "projects", "save_contract"]

Conn = psycopg.Connection[Any]


class NewItem(NamedTuple):
    """An item row, fields in `_ITEM_COLUMNS` order (a tuple: an import makes thousands)."""

    item_id: str
    project: str
    external_id: str
    content: bytes
    metadata: dict[str, str]
    content_hash: str
    state: str
    canonical_item_id: str | None
    duplicate_kind: str | None
    similarity: float | None
    gold_answer: str | None
    signature: bytes | None
    vector: NDArray[np.float32] | None
    thumbnail: NDArray[np.float32] | None
    shingles: bytes | None = None


_ITEM_COLUMNS = (
    "item_id",
    "project",
    "external_id",
    "content",
    "metadata",
    "content_hash",
    "state",
    "canonical_item_id",
    "duplicate_kind",
    "similarity",
    "gold_answer",
    "signature",
    "vector",
    "thumbnail",
    "shingles",
    "import_seq",
)


def _item_row(i: NewItem, import_seq: bytes) -> bytes:
    return pgcopy.row(
        (
            pgcopy.text(i.item_id),
            pgcopy.text(i.project),
            pgcopy.text(i.external_id),
            pgcopy.bytea(i.content),
            pgcopy.jsonb(i.metadata),
            pgcopy.text(i.content_hash),
            pgcopy.text(i.state),
            pgcopy.text(i.canonical_item_id),
            pgcopy.text(i.duplicate_kind),
            pgcopy.float8(i.similarity),
            pgcopy.text(i.gold_answer),
            pgcopy.bytea(i.signature),
            pgcopy.float4_array(i.vector),
            pgcopy.float4_array(i.thumbnail),
            pgcopy.bytea(i.shingles),
            import_seq,
        )
    )


def lock_imports(conn: Conn, project: str) -> int:
    """Serialise imports into `project` (until commit); returns this import's number."""
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('strata-sampler-import:' || %s))", (project,)
    )
    row = conn.execute("SELECT nextval('import_seq')").fetchone()
    assert row is not None
    return int(row[0])


def insert_items(conn: Conn, items: Iterable[NewItem], import_seq: int) -> None:
    """Store items (binary COPY, sent as `items` yields them) under the import lock,
    numbered `import_seq`."""
    seq = pgcopy.int8(import_seq)
    pgcopy.copy_rows(conn, "items", _ITEM_COLUMNS, (_item_row(i, seq) for i in items))


def existing_hashes(conn: Conn, project: str, hashes: Sequence[str]) -> dict[str, str]:
    """content hash -> canonical item id, for hashes already in the project."""
    # One comma-joined parameter: hex digests need no quoting, and a list parameter of
    # thousands of strings costs more to send than the lookup.
    rows = conn.execute(
        "SELECT content_hash, item_id FROM items WHERE project = %s "
        "AND content_hash = ANY(string_to_array(%s, ',')) AND canonical_item_id IS NULL",
        (project, ",".join(hashes)),
    )
    return {r[0]: r[1] for r in rows}


class IndexRow(NamedTuple):
    """What a replica's near-duplicate index keeps of one canonical pool item."""

    item_id: str
    signature: bytes | None  # a text's MinHash signature
    shingles: bytes | None  # a text's shingle set
    text: bytes | None  # the content, only for a text stored before its shingles were
    vector: list[float] | None
    thumbnail: list[float] | None
    import_seq: int


def index_material(conn: Conn, project: str, after: int) -> list[IndexRow]:
    """What the index needs of the canonical pool items imported after import number
    `after`, in import order."""
    return [
        IndexRow(r[0], _bytes(r[1]), _bytes(r[2]), _bytes(r[3]), r[4], r[5], int(r[6]))
        for r in conn.execute(
            "SELECT item_id, signature, shingles, "
            "CASE WHEN signature IS NOT NULL AND shingles IS NULL THEN content END, "
            "vector, thumbnail, import_seq FROM items "
            "WHERE project = %s "
            "AND canonical_item_id IS NULL AND state <> 'gold' AND import_seq > %s "
            "AND (signature IS NOT NULL OR vector IS NOT NULL OR thumbnail IS NOT NULL) "
            "ORDER BY import_seq",
            (project, after),
        )
    ]


def _bytes(value: object) -> bytes | None:
    return None if value is None else bytes(value)  # type: ignore[call-overload]


def refresh_statistics(conn: Conn, stored: int) -> bool:
    """ANALYZE the items table after an import that stored at least a tenth of it (as
    the planner last counted it), so the very next hand-out is planned on the pool as it
    now is rather than waiting for autovacuum; returns whether it did."""
    if stored <= 0:
        return False
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = 'items'::regclass").fetchone()
    counted = float(row[0]) if row else -1.0
    if counted > 0 and stored < 0.1 * counted:
        return False
    conn.execute("ANALYZE items")
    return True


# -- predictions ---------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    item_id: str
    model_version: str
    probabilities: Sequence[float]
    embedding: NDArray[np.float32] | Sequence[float] | None
    predicted_class: int
    uncertainty: float
    spot_check: bool = False


# A scoring batch's predictions go in by binary COPY, then into the pool in one UPDATE:
# an embedding is 64 floats or more, and as text it costs more to write and to parse
# than everything else the prediction carries.
_SCORES_IN = (
    "CREATE TEMP TABLE IF NOT EXISTS scores_in (item_id text, model_version text, "
    "probabilities real[], embedding real[], predicted_class int8, uncertainty float8, "
    "spot_check bool)"
)
_SCORES_IN_COLUMNS = (
    "item_id",
    "model_version",
    "probabilities",
    "embedding",
    "predicted_class",
    "uncertainty",
    "spot_check",
)


def _score_row(s: Scored) -> bytes:
    return pgcopy.row(
        (
            pgcopy.text(s.item_id),
            pgcopy.text(s.model_version),
            pgcopy.float4_array(s.probabilities),
            pgcopy.float4_array(s.embedding),
            pgcopy.int8(s.predicted_class),
            pgcopy.float8(s.uncertainty),
            pgcopy.boolean(s.spot_check),
        )
    )


def save_scores(conn: Conn, scored: Sequence[Scored]) -> int:
    """Store the newest prediction and its uncertainty per item; returns rows changed.
    An item scored twice in `scored` keeps the later prediction."""
    if not scored:
        return 0
    newest = {s.item_id: s for s in scored}
    conn.execute(_SCORES_IN)
    pgcopy.copy_rows(conn, "scores_in", _SCORES_IN_COLUMNS, map(_score_row, newest.values()))
    cur = conn.execute(
        "UPDATE items SET model_version = u.model_version, probabilities = u.probabilities, "
        "embedding = u.embedding, predicted_class = u.predicted_class, "
        "uncertainty = u.uncertainty, spot_check = u.spot_check FROM scores_in AS u "
        "WHERE items.item_id = u.item_id"
    )
    changed = cur.rowcount
    conn.execute("TRUNCATE scores_in")  # empty again for the next batch (a rollback too)
    return changed


# -- consensus ---------------------------------------------------------------------------


def mark_labeled(
    conn: Conn, decided: dict[str, str], propagated_from: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """Items leave the pool with their consensus; returns (item, project) newly labeled.
    With `propagated_from`, copies that inherited an earlier label take the new one too."""
    if not decided:
        return []
    ids = sorted(decided)
    source = propagated_from or {}
    states = (
        "('pool', 'inflight', 'duplicate', 'labeled')"
        if source
        else ("('pool', 'inflight', 'duplicate')")
    )
    # An item waiting for an expert is labeled by the decision; one that was labeled
    # before its review (a withdrawn label) takes its new value in `relabel_decided`.
    return conn.execute(
        "UPDATE items SET state = 'labeled', consensus_value = u.v, labeled_at = now(), "
        "leased_by = NULL, lease_until = NULL, "
        "propagated_from = u.f FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(i, v, f) "
        f"WHERE items.item_id = u.i AND (items.state IN {states} "
        "OR (items.state = 'review' AND items.labeled_at IS NULL)) "
        "RETURNING items.item_id, items.project",
        (ids, [decided[i] for i in ids], [source.get(i) for i in ids]),
    ).fetchall()


def relabel_decided(conn: Conn, decided: dict[str, str]) -> list[str]:
    """Labeled items whose decided value changed (an expert review, a human overruling a
    model's label), and labeled items withdrawn for review that the reviewer decided:
    store the new value (the item's own from now on, a copy's too); returns those items."""
    if not decided:
        return []
    ids = sorted(decided)
    rows = conn.execute(
        "UPDATE items SET state = 'labeled', consensus_value = u.v, labeled_at = now(), "
        "propagated_from = NULL FROM unnest(%s::text[], %s::text[]) AS u(i, v) "
        "WHERE items.item_id = u.i AND items.labeled_at IS NOT NULL "
        "AND ((items.state = 'labeled' AND items.propagated_from IS NULL) "
        "OR items.state = 'review') "
        "AND items.consensus_value IS DISTINCT FROM u.v RETURNING items.item_id",
        (ids, [decided[i] for i in ids]),
    ).fetchall()
    return [r[0] for r in rows]


def duplicates_of(conn: Conn, values: dict[str, str]) -> list[tuple[str, str, str]]:
    """(duplicate, canonical, project) for the copies of canonical items that must take the
    canonical's value: those still waiting, and those that inherited a different one."""
    ids = sorted(values)
    return conn.execute(
        "SELECT d.item_id, d.canonical_item_id, d.project FROM items d "
        "JOIN unnest(%s::text[], %s::text[]) AS u(c, v) ON d.canonical_item_id = u.c "
        "WHERE d.state = 'duplicate' OR (d.state = 'labeled' AND d.propagated_from = u.c "
        "AND d.consensus_value IS DISTINCT FROM u.v)",
        (ids, [values[i] for i in ids]),
    ).fetchall()


def withdraw_for_review(conn: Conn, item_ids: Sequence[str]) -> int:
    """Quality withdrew these items' labels for a reviewer's decision (RELABEL): they
    wait in review, out of the pool, with no value, until the decision comes
    (`relabel_decided`). The crowd is not asked again: quality waits for the review and
    would only record their labels, not use them."""
    cur = conn.execute(
        "UPDATE items SET state = 'review', consensus_value = NULL "
        "WHERE item_id = ANY(%s) AND state = 'labeled'",
        (list(item_ids),),
    )
    return cur.rowcount


def await_review(conn: Conn, item_ids: Sequence[str]) -> int:
    """Quality sent these items to an expert (their votes did not settle them): they wait
    in review, neither in the pool nor in flight, until the decision labels them. An item
    already decided stays so (the decision may be read before the request)."""
    cur = conn.execute(
        "UPDATE items SET state = 'review', leased_by = NULL, lease_until = NULL "
        "WHERE item_id = ANY(%s) AND state IN ('pool', 'inflight')",
        (list(item_ids),),
    )
    return cur.rowcount


def count_consensus(conn: Conn, project: str, n: int) -> int:
    """Add `n` consensus labels; returns how many have come since the last training request."""
    row = conn.execute(
        "INSERT INTO projects (project, consensus_since_training, consensus_total) "
        "VALUES (%s, %s, %s) ON CONFLICT (project) DO UPDATE SET "
        "consensus_since_training = projects.consensus_since_training + EXCLUDED."
        "consensus_since_training, consensus_total = projects.consensus_total + "
        "EXCLUDED.consensus_total, updated_at = now() RETURNING consensus_since_training",
        (project, n, n),
    ).fetchone()
    assert row is not None
    return int(row[0])


def training_requested(conn: Conn, project: str) -> None:
    conn.execute(
        "UPDATE projects SET consensus_since_training = 0, "
        "trainings_requested = trainings_requested + 1, updated_at = now() WHERE project = %s",
        (project,),
    )


def save_confusion(conn: Conn, project: str, weights: dict[str, float], model_version: str) -> None:
    conn.execute(
        "INSERT INTO projects (project, confused_classes, feedback_model_version) "
        "VALUES (%s, %s, %s) ON CONFLICT (project) DO UPDATE SET "
        "confused_classes = EXCLUDED.confused_classes, "
        "feedback_model_version = EXCLUDED.feedback_model_version, updated_at = now()",
        (project, Jsonb(weights), model_version),
    )


def project_state(conn: Conn, project: str) -> tuple[dict[str, float], int, int]:
    """(confused class weights, consensus since training, consensus in all)."""
    row = conn.execute(
        "SELECT confused_classes, consensus_since_training, consensus_total FROM projects "
        "WHERE project = %s",
        (project,),
    ).fetchone()
    if row is None:
        return {}, 0, 0
    return dict(row[0]), int(row[1]), int(row[2])


# -- hand-out --------------------------------------------------------------------------------


def expire_leases(conn: Conn, project: str | None = None) -> int:
    """Items handed out whose lease ran out go back to the pool."""
    cur = conn.execute(
        "UPDATE items SET state = 'pool', leased_by = NULL, lease_until = NULL "
        "WHERE state = 'inflight' AND lease_until < now()"
        + (" AND project = %s" if project else ""),
        (project,) if project else (),
    )
    return cur.rowcount


@dataclass(frozen=True)
class Candidate:
    item_id: str
    uncertainty: float | None
    predicted_class: int | None
    # Read as float32 arrays (`numpy_cursor`): a hand-out reads thousands of them.
    embedding: NDArray[np.float32] | None
    vector: NDArray[np.float32] | None
    spot_check: bool = False
    model_version: str | None = None


_CANDIDATE_COLUMNS = (
    "item_id, uncertainty, predicted_class, embedding, vector, spot_check, model_version"
)


def ranked_candidates(conn: Conn, project: str, limit: int) -> list[Candidate]:
    """The most uncertain scored pool items (spot checks first), read in the order of the
    items_ranked index: `limit` rows whatever the pool's size, no sort; none at a cold
    start."""
    rows = (
        numpy_cursor(conn)
        .execute(
            f"SELECT {_CANDIDATE_COLUMNS} FROM items WHERE project = %s AND state = 'pool' "
            "AND uncertainty IS NOT NULL "
            "ORDER BY spot_check DESC, uncertainty DESC NULLS LAST LIMIT %s",
            (project, limit),
        )
        .fetchall()
    )
    return [Candidate(*r) for r in rows]


def random_candidates(conn: Conn, project: str, start: str, limit: int) -> list[Candidate]:
    """Pool items from a random point of the (random, 128-bit) id order: a cheap random
    sample, `limit` rows read from the items_pool_by_id index in its order."""
    query = (
        f"SELECT {_CANDIDATE_COLUMNS} FROM items WHERE project = %s AND state = 'pool' "
        "AND item_id {op} %s ORDER BY item_id {order} LIMIT %s"
    )
    cursor = numpy_cursor(conn)
    rows = cursor.execute(query.format(op=">=", order="ASC"), (project, start, limit)).fetchall()
    if len(rows) < limit:
        rows += cursor.execute(
            query.format(op="<", order="DESC"), (project, start, limit - len(rows))
        ).fetchall()
    return [Candidate(*r) for r in rows]


def note_model_versions(conn: Conn, versions: Iterable[tuple[str, str]]) -> None:
    """Number the (project, model version) pairs whose predictions reached the pool, in
    the order each first did (a version seen before keeps its number)."""
    pairs = sorted(set(versions))
    if pairs:
        conn.execute(
            "INSERT INTO model_versions (project, model_version) "
            "SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
            ([p for p, _ in pairs], [v for _, v in pairs]),
        )


# The newest model version of a project: the last whose predictions first reached the
# pool. PoolStats and a batch's staleness both go by it.
NEWEST_VERSION = (
    "SELECT model_version FROM model_versions WHERE project = %(p)s ORDER BY seq DESC LIMIT 1"
)


def ranking_age(conn: Conn, project: str, chosen: Sequence[str]) -> tuple[str | None, int]:
    """(the newest model version that scored the project's pool, how many versions came
    after the oldest of `chosen`): 0 when the batch was ranked by the newest model."""
    row = conn.execute(
        f"SELECT ({NEWEST_VERSION}), "
        "       (SELECT count(*) FROM model_versions WHERE project = %(p)s AND seq > "
        "        (SELECT min(seq) FROM model_versions WHERE project = %(p)s "
        "         AND model_version = ANY(%(v)s)))",
        {"p": project, "v": sorted(set(chosen))},
    ).fetchone()
    assert row is not None
    return row[0], int(row[1])


def hand_out(
    conn: Conn, item_ids: Sequence[str], requester: str, lease_s: int
) -> list[tuple[str, str, bytes, dict[str, str], str, str]]:
    """Lease items to `requester`; (item, project, content, metadata, hash, external id)."""
    rows = conn.execute(
        "UPDATE items SET state = 'inflight', leased_by = %s, "
        "lease_until = now() + make_interval(secs => %s) "
        "WHERE item_id = ANY(%s) AND state = 'pool' "
        "RETURNING item_id, project, content, metadata, content_hash, external_id",
        (requester, lease_s, list(item_ids)),
    ).fetchall()
    return rows


def record_batch(
    conn: Conn, batch_id: str, project: str, requester: str, n: int, cold: bool
) -> None:
    conn.execute(
        "INSERT INTO batches (batch_id, project, requester, items, cold_start) "
        "VALUES (%s, %s, %s, %s, %s)",
        (batch_id, project, requester, n, cold),
    )


# -- stats ---------------------------------------------------------------------------------------


# Every figure here is read from `pool_counters`, which triggers on `items` keep exact in
# the transaction of each change (migration 0006), and from `model_versions`: a read
# costs the same at a thousand items and at millions.


def pool_counts(conn: Conn, project: str) -> dict[str, int]:
    """The project's items by state (states with none are left out)."""
    rows = conn.execute(
        "SELECT value, sum(n) FROM pool_counters WHERE project = %s AND kind = 'state' "
        "GROUP BY value HAVING sum(n) <> 0",
        (project,),
    ).fetchall()
    return {state: int(n) for state, n in rows}


@dataclass(frozen=True)
class PoolCounts:
    """A project's pool in figures."""

    states: dict[str, int]
    duplicates: dict[str, int]  # by kind: exact, near
    classes: dict[int, int]  # pool and in-flight items by predicted class
    score_bins: dict[int, int]  # pool items by uncertainty: bin b holds (b/10, (b+1)/10]
    model_version: str  # the newest to reach the pool ("" before any did)


def pool_stats(conn: Conn, project: str) -> PoolCounts:
    rows = conn.execute(
        "SELECT kind, value, sum(n) FROM pool_counters WHERE project = %s "
        "GROUP BY kind, value HAVING sum(n) <> 0",
        (project,),
    ).fetchall()
    by_kind: dict[str, dict[str, int]] = {}
    for kind, value, n in rows:
        by_kind.setdefault(kind, {})[value] = int(n)
    version = conn.execute(NEWEST_VERSION, {"p": project}).fetchone()
    return PoolCounts(
        states=by_kind.get("state", {}),
        duplicates=by_kind.get("duplicate", {}),
        classes={int(c): n for c, n in by_kind.get("class", {}).items()},
        score_bins={int(b): n for b, n in by_kind.get("score", {}).items()},
        model_version=(version[0] if version else None) or "",
    )
