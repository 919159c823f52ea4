"""What the console reads from the gateway: the task queue (depth, throughput, the oldest
lease) and a project's contract versions with the documents they were loaded from."""

from __future__ import annotations

from dataclasses import dataclass
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


def queue_counts(conn: Conn, project: str) -> QueueCounts:
    row = conn.execute(
        "SELECT "
        "(SELECT coalesce(sum(slots_open), 0) FROM units WHERE project = %(p)s AND kind = 'label' "
        " AND state = 'open'), "
        "(SELECT count(*) FROM tasks WHERE project = %(p)s AND state = 'leased'), "
        "(SELECT count(*) FROM units WHERE project = %(p)s AND kind = 'label' AND state = 'done'), "
        "(SELECT count(*) FROM units WHERE project = %(p)s AND kind = 'gold'), "
        "(SELECT count(*) FROM units WHERE project = %(p)s AND kind = 'review' "
        " AND state = 'open'), "
        "(SELECT count(*) FROM labels WHERE project = %(p)s), "
        "(SELECT count(*) FROM labels WHERE project = %(p)s "
        " AND submitted_at > now() - interval '1 hour')",
        {"p": project},
    ).fetchone()
    assert row is not None
    # The oldest lease still held (not yet swept), and whose it is.
    oldest = conn.execute(
        "SELECT leased_at, annotator_id FROM tasks WHERE project = %s AND state = 'leased' "
        "ORDER BY leased_at LIMIT 1",
        (project,),
    ).fetchone()
    ready, leased, completed, gold, review, labels, last_hour = (int(v) for v in row)
    return QueueCounts(
        ready,
        leased,
        completed,
        gold,
        review,
        labels,
        last_hour,
        oldest[0] if oldest else None,
        oldest[1] if oldest else "",
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
