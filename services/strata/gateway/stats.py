"""What the console reads from the gateway: the task queue (depth, throughput, the oldest
lease) and a project's contract versions with the documents they were loaded from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


@dataclass(frozen=True)
class QueueCounts:
    ready: int
    leased: int
    completed: int
    gold_tasks: int
    review_tasks: int
    labels_total: int
    labels_last_hour: int
    oldest_lease_at: datetime | None
    oldest_lease_annotator: str
    items_by_state: dict[str, int] = field(default_factory=dict)


# Label units (one per item the sampler handed out) by where the item is.
ITEM_STATES = ("queued", "leased", "labelled", "review", "completed")


def queue_counts(conn: Conn, project: str) -> QueueCounts:
    """The queue in figures, each read in time independent of the project's size.

    What grows with the project comes from `queue_counters` and `label_minutes`, kept
    exact by triggers on units and labels in the transaction of each change (migration
    0006). What the queue holds now is read from partial indexes that hold only that:
    the open label units with a slot (`units_ready`: the refill keeps them near its low
    water) and the live leases (`tasks_leased_by_project`: bounded by the people at
    work). Items still waiting for votes are queued when a slot is open, else leased.
    """
    rows = conn.execute(
        "SELECT kind, value, sum(n) FROM queue_counters WHERE project = %s GROUP BY kind, value",
        (project,),
    ).fetchall()
    counts = {(kind, value): int(n) for kind, value, n in rows}
    units = {value: n for (kind, value), n in counts.items() if kind == "unit"}
    live = conn.execute(
        "SELECT (SELECT coalesce(sum(slots_open), 0) FROM units WHERE project = %(p)s "
        "        AND kind = 'label' AND state = 'open' AND slots_open > 0), "
        "       (SELECT count(*) FROM units WHERE project = %(p)s "
        "        AND kind = 'label' AND state = 'open' AND slots_open > 0 AND labels < target), "
        "       (SELECT count(*) FROM tasks WHERE project = %(p)s AND state = 'leased'), "
        # Labels in the last hour: whole minutes from their counters, and the labels of
        # the minute the hour starts in, counted (at most a minute's worth, by index).
        "       (WITH edge AS (SELECT now() - interval '1 hour' AS since, "
        "              date_trunc('minute', now() - interval '1 hour', 'UTC') "
        "              + interval '1 minute' AS whole) "
        "        SELECT (SELECT coalesce(sum(m.n), 0) FROM label_minutes m, edge "
        "                WHERE m.project = %(p)s AND m.minute >= edge.whole) "
        "             + (SELECT count(*) FROM labels l, edge WHERE l.project = %(p)s "
        "                AND l.submitted_at > edge.since AND l.submitted_at < edge.whole))",
        {"p": project},
    ).fetchone()
    assert live is not None
    ready, queued, leased, last_hour = (int(v) for v in live)
    # The oldest lease still held (not yet swept), and whose it is.
    oldest = conn.execute(
        "SELECT leased_at, annotator_id FROM tasks WHERE project = %s AND state = 'leased' "
        "ORDER BY leased_at LIMIT 1",
        (project,),
    ).fetchone()
    waiting = units.get("waiting", 0)
    by_state = {
        "queued": queued,
        "leased": waiting - queued,
        "labelled": units.get("labelled", 0),
        "review": units.get("review", 0),
        "completed": units.get("completed", 0),
    }
    return QueueCounts(
        ready=ready,
        leased=leased,
        completed=units.get("completed", 0),
        gold_tasks=units.get("gold", 0),
        review_tasks=units.get("review_open", 0),
        labels_total=counts.get(("labels", "all"), 0),
        labels_last_hour=last_hour,
        oldest_lease_at=oldest[0] if oldest else None,
        oldest_lease_annotator=oldest[1] if oldest else "",
        items_by_state={s: n for s, n in by_state.items() if n},
    )


@dataclass(frozen=True)
class ContractRow:
    version: str
    digest: str
    loaded_at: datetime
    loaded_by: str
    document: str


def contract_versions(conn: Conn, project: str) -> list[ContractRow]:
    """Newest first: the first is the current one."""
    rows = conn.execute(
        "SELECT version, digest, loaded_at, loaded_by, document FROM contracts "
        "WHERE project = %s ORDER BY loaded_at DESC",
        (project,),
    ).fetchall()
    return [ContractRow(*r) for r in rows]
