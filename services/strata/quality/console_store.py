"""SQL behind the console's views: pairwise agreement, a pair's disagreements, progress.

Every function runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from strata.quality.progress import Grid
from strata.quality.store import MODEL_AUTO_ACCEPT, Conn

# The project's gold items: marked on the item, or on any vote of it. Their votes stay
# out of agreement between annotators (gold is scored on its own, and never shown).
_GOLD = (
    "gold AS (SELECT item_id FROM items WHERE project = %(project)s AND gold_answer IS NOT NULL "
    "UNION SELECT item_id FROM votes WHERE project = %(project)s "
    "AND (gold OR gold_answer IS NOT NULL))"
)
# Human votes on the project's pool (non-gold) items.
_POOL = (
    "pool AS (SELECT item_id, annotator_id, value, submitted_at, label_id FROM votes "
    "WHERE project = %(project)s AND source = 'human' "
    "AND item_id NOT IN (SELECT item_id FROM gold))"
)
# One vote per item and annotator: the latest, when someone labelled an item twice.
_LATEST = (
    "SELECT DISTINCT ON (item_id, annotator_id) item_id, annotator_id, value, submitted_at "
    "FROM pool WHERE annotator_id = ANY(%(annotators)s) "
    "ORDER BY item_id, annotator_id, submitted_at DESC, label_id DESC"
)


def top_annotators(conn: Conn, project: str, limit: int) -> list[str]:
    """The annotators with the most human labels on pool items, most first (ties by id)."""
    rows = conn.execute(
        f"WITH {_GOLD}, {_POOL} SELECT annotator_id FROM pool GROUP BY annotator_id "
        "ORDER BY count(*) DESC, annotator_id LIMIT %(limit)s",
        {"project": project, "limit": limit},
    ).fetchall()
    return [r[0] for r in rows]


def latest_votes(conn: Conn, project: str, annotators: Sequence[str]) -> list[tuple[str, str, str]]:
    """(item, annotator, value): each annotator's latest human vote per pool item, on the
    items at least two of `annotators` labelled."""
    rows = conn.execute(
        f"WITH {_GOLD}, {_POOL}, latest AS ({_LATEST}) "
        "SELECT item_id, annotator_id, value FROM ("
        "SELECT item_id, annotator_id, value, count(*) OVER (PARTITION BY item_id) AS n "
        "FROM latest) shared WHERE n >= 2",
        {"project": project, "annotators": list(annotators)},
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


@dataclass(frozen=True)
class Disagreement:
    item_id: str
    value_a: str
    value_b: str
    consensus_value: str
    state: str


def pair_disagreements(
    conn: Conn, project: str, a: str, b: str, limit: int
) -> tuple[list[Disagreement], int]:
    """Pool items where the latest human votes of `a` and `b` differ, newest first (by the
    later of the two votes), at most `limit`; and how many there are in all."""
    rows = conn.execute(
        f"WITH {_GOLD}, {_POOL}, latest AS ({_LATEST}), "
        "differ AS (SELECT x.item_id, x.value AS value_a, y.value AS value_b, "
        "greatest(x.submitted_at, y.submitted_at) AS at FROM latest x JOIN latest y "
        "ON y.item_id = x.item_id AND y.annotator_id = %(b)s "
        "WHERE x.annotator_id = %(a)s AND x.value <> y.value) "
        "SELECT d.item_id, d.value_a, d.value_b, coalesce(i.value, ''), "
        "coalesce(i.state, 'open'), count(*) OVER () "
        "FROM differ d LEFT JOIN items i ON i.item_id = d.item_id "
        "ORDER BY d.at DESC, d.item_id LIMIT %(limit)s",
        {"project": project, "annotators": [a, b], "a": a, "b": b, "limit": limit},
    ).fetchall()
    total = int(rows[0][5]) if rows else 0
    return [Disagreement(*r[:5]) for r in rows], total


@dataclass(frozen=True)
class Contested:
    item_id: str
    values: list[str]
    consensus_value: str
    state: str


def contested_items(
    conn: Conn, project: str, class_label: str, limit: int
) -> tuple[list[Contested], int]:
    """Pool items whose people's latest answers differ, one of them `class_label`, newest
    first (by the latest vote), at most `limit`; and how many there are in all."""
    rows = conn.execute(
        f"WITH {_GOLD}, {_POOL}, latest AS ("
        "SELECT DISTINCT ON (item_id, annotator_id) item_id, value, submitted_at FROM pool "
        "ORDER BY item_id, annotator_id, submitted_at DESC, label_id DESC), "
        "contested AS (SELECT item_id, array_agg(value ORDER BY value) AS vals, "
        "max(submitted_at) AS at FROM latest GROUP BY item_id "
        "HAVING count(DISTINCT value) > 1 AND bool_or(value = %(cls)s)) "
        "SELECT c.item_id, c.vals, coalesce(i.value, ''), coalesce(i.state, 'open'), "
        "count(*) OVER () FROM contested c LEFT JOIN items i ON i.item_id = c.item_id "
        "ORDER BY c.at DESC, c.item_id LIMIT %(limit)s",
        {"project": project, "cls": class_label, "limit": limit},
    ).fetchall()
    total = int(rows[0][4]) if rows else 0
    return [Contested(r[0], list(r[1]), r[2], r[3]) for r in rows], total


# -- progress --------------------------------------------------------------------------------

# What the progress chart counts, each as (kind, epoch seconds of the event). Model labels
# are model-sourced votes and the standing auto-accepted items (an auto-accept stores no
# vote, only the item's decision). Gold items never decide and are left out of decisions.
_EVENTS = (
    "SELECT CASE WHEN source = 'human' THEN 'human' ELSE 'model' END AS kind, submitted_at AS at "
    "FROM votes WHERE project = %(project)s AND source IN ('human', 'model') "
    "UNION ALL SELECT 'model', decided_at FROM items WHERE project = %(project)s "
    "AND state = 'accepted' AND method = %(auto)s AND decided_at IS NOT NULL "
    "UNION ALL SELECT 'decided', decided_at FROM items WHERE project = %(project)s "
    "AND state IN ('accepted', 'expert') AND decided_at IS NOT NULL AND gold_answer IS NULL "
    "UNION ALL SELECT 'opened', opened_at FROM reviews WHERE project = %(project)s "
    "UNION ALL SELECT 'resolved', resolved_at FROM reviews WHERE project = %(project)s "
    "AND resolved_at IS NOT NULL"
)
KINDS = ("human", "model", "decided", "opened", "resolved")


def activity_span(conn: Conn, project: str) -> tuple[float | None, float | None, float]:
    """Epoch seconds of the project's first and last counted event (None: none yet), and
    the database's now."""
    row = conn.execute(
        f"SELECT extract(epoch FROM min(at))::float8, extract(epoch FROM max(at))::float8, "
        f"extract(epoch FROM now())::float8 FROM ({_EVENTS}) e",
        {"project": project, "auto": MODEL_AUTO_ACCEPT},
    ).fetchone()
    assert row is not None
    return row[0], row[1], float(row[2])


def activity_counts(conn: Conn, project: str, grid: Grid) -> dict[str, list[int]]:
    """Per kind, the events in each bucket of `grid` (counted by SQL, not row by row)."""
    rows = conn.execute(
        f"SELECT kind, floor(extract(epoch FROM at) / %(size)s)::bigint AS slot, count(*) "
        f"FROM ({_EVENTS}) e GROUP BY kind, slot",
        {"project": project, "auto": MODEL_AUTO_ACCEPT, "size": grid.bucket_s},
    ).fetchall()
    counts = {kind: [0] * grid.buckets for kind in KINDS}
    for kind, slot, n in rows:
        counts[kind][grid.index(int(slot))] += int(n)
    return counts


@dataclass(frozen=True)
class ProgressTotals:
    items_by_state: dict[str, int] = field(default_factory=dict)
    decided_by_model: int = 0
    open_reviews: int = 0
    human_labels_last_hour: int = 0


STATES = ("open", "accepted", "review", "expert")


def progress_totals(conn: Conn, project: str) -> ProgressTotals:
    """The project's pool items by state now, standing model decisions, open reviews, and
    human labels in the last hour."""
    states = conn.execute(
        "SELECT state, count(*), count(*) FILTER (WHERE state = 'accepted' AND method = %s) "
        "FROM items WHERE project = %s AND gold_answer IS NULL GROUP BY state",
        (MODEL_AUTO_ACCEPT, project),
    ).fetchall()
    by_state = dict.fromkeys(STATES, 0)
    by_model = 0
    for state, n, model in states:
        by_state[state] = int(n)
        by_model += int(model)
    reviews = conn.execute(
        "SELECT count(*) FROM reviews WHERE project = %s AND resolved_at IS NULL", (project,)
    ).fetchone()
    recent = conn.execute(
        "SELECT count(*) FROM votes WHERE project = %s AND source = 'human' "
        "AND submitted_at > now() - interval '1 hour'",
        (project,),
    ).fetchone()
    return ProgressTotals(
        items_by_state=by_state,
        decided_by_model=by_model,
        open_reviews=int(reviews[0]) if reviews else 0,
        human_labels_last_hour=int(recent[0]) if recent else 0,
    )
