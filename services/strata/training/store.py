"""Training's SQL for labels, runs and trust curves (what runs produced is
`strata.training.ledger_store`'s). Every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from strata.common.contract_store import load_contract, projects, save_contract
from strata.common.item_store import save_items
from strata.common.trust import TrustCurve
from strata.common.trust import from_message as curve_of
from strata.v1 import common_pb2

__all__ = ["load_contract", "projects", "save_contract", "save_items"]

Conn = psycopg.Connection[Any]


# -- labels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRow:
    item_id: str
    project: str
    label_id: str
    value: str
    consensus_score: float
    source: int
    method: int
    status: int
    annotator_ids: list[str]
    ontology_version: str
    decided_at: datetime


def save_labels(conn: Conn, rows: Sequence[LabelRow]) -> int:
    """Keep each item's newest decision (a re-delivery or an older one changes nothing)."""
    if not rows:
        return 0
    cur = conn.cursor()
    cur.executemany(
        "INSERT INTO labels (item_id, project, label_id, value, consensus_score, source, "
        "method, status, annotator_ids, ontology_version, decided_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (item_id) DO UPDATE SET label_id = excluded.label_id, "
        "value = excluded.value, consensus_score = excluded.consensus_score, "
        "source = excluded.source, method = excluded.method, status = excluded.status, "
        "annotator_ids = excluded.annotator_ids, ontology_version = excluded.ontology_version, "
        "decided_at = excluded.decided_at, received_at = now() "
        "WHERE labels.decided_at < excluded.decided_at",
        [
            (
                r.item_id,
                r.project,
                r.label_id,
                r.value,
                r.consensus_score,
                r.source,
                r.method,
                r.status,
                r.annotator_ids,
                r.ontology_version,
                r.decided_at,
            )
            for r in rows
        ],
    )
    return len(rows)


def withdraw_labels(conn: Conn, decided: Sequence[tuple[str, datetime]]) -> int:
    """An item sent back for review leaves the training set until it is decided again
    (unless a newer decision is already here)."""
    if not decided:
        return 0
    cur = conn.execute(
        "DELETE FROM labels l USING unnest(%s::text[], %s::timestamptz[]) AS n(i, d) "
        "WHERE l.item_id = n.i AND l.decided_at <= n.d",
        ([i for i, _ in decided], [d for _, d in decided]),
    )
    return cur.rowcount


@dataclass(frozen=True)
class TrainingRow:
    label: LabelRow
    content: bytes
    gold: bool


def training_set(conn: Conn, project: str) -> list[TrainingRow]:
    """The project's decided labels with their items' content (gold items held out)."""
    rows = conn.execute(
        "SELECT l.item_id, l.project, l.label_id, l.value, l.consensus_score, l.source, "
        "l.method, l.status, l.annotator_ids, l.ontology_version, l.decided_at, i.content "
        "FROM labels l JOIN items i USING (item_id) "
        "WHERE l.project = %s AND i.gold_answer IS NULL ORDER BY l.item_id",
        (project,),
    ).fetchall()
    return [TrainingRow(LabelRow(*r[:11]), bytes(r[11]), False) for r in rows]


def count_labels(conn: Conn, project: str) -> int:
    row = conn.execute("SELECT count(*) FROM labels WHERE project = %s", (project,)).fetchone()
    return int(row[0]) if row else 0


def gold_set(conn: Conn, project: str) -> list[tuple[str, bytes, str]]:
    """(item, content, answer) of the project's gold items: the held-out set."""
    rows = conn.execute(
        "SELECT item_id, content, gold_answer FROM items "
        "WHERE project = %s AND gold_answer IS NOT NULL ORDER BY item_id",
        (project,),
    ).fetchall()
    return [(r[0], bytes(r[1]), r[2]) for r in rows]


def contents_of(conn: Conn, project: str, item_ids: Sequence[str]) -> dict[str, bytes]:
    rows = conn.execute(
        "SELECT item_id, content FROM items WHERE project = %s AND item_id = ANY(%s)",
        (project, list(item_ids)),
    ).fetchall()
    return {r[0]: bytes(r[1]) for r in rows}


def is_gold(conn: Conn, project: str, item_id: str = "", content: bytes = b"") -> bool:
    """Whether an item, or a content, is one of the project's gold items."""
    row = conn.execute(
        "SELECT 1 FROM items WHERE project = %s AND gold_answer IS NOT NULL "
        "AND (item_id = %s OR content = %s) LIMIT 1",
        (project, item_id, content),
    ).fetchone()
    return row is not None


# -- runs -------------------------------------------------------------------------------------

RUN_COLUMNS = (
    "run_id, project, state, family, num_workers, epochs, epoch, reason, requested_at, "
    "started_at, finished_at, n_labels, samples_seen, samples_per_second, resumed, "
    "model_version, metrics, error, crash_at_epoch, governance_mode, trust_curve"
)


@dataclass(frozen=True)
class RunRow:
    run_id: str
    project: str
    state: str
    family: str
    num_workers: int
    epochs: int
    epoch: int
    reason: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    n_labels: int
    samples_seen: int
    samples_per_second: float
    resumed: bool
    model_version: str | None
    metrics: bytes | None
    error: str | None
    crash_at_epoch: int
    governance_mode: int = 0
    trust_curve: bytes | None = None  # common_pb2.TrustCurve the run applied (learned)


def _run(row: Sequence[Any]) -> RunRow:
    values = list(row)
    values[0] = str(values[0])
    for at in (16, 20):
        if values[at] is not None:
            values[at] = bytes(values[at])
    return RunRow(*values)


def create_run(
    conn: Conn,
    project: str,
    family: str,
    num_workers: int,
    epochs: int,
    reason: str,
    crash_at_epoch: int = 0,
) -> str:
    run_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO runs (run_id, project, state, family, num_workers, epochs, reason, "
        "crash_at_epoch) VALUES (%s, %s, 'queued', %s, %s, %s, %s, %s)",
        (run_id, project, family, num_workers, epochs, reason, crash_at_epoch),
    )
    return run_id


def queued_run(conn: Conn, project: str) -> str | None:
    """A run of the project still waiting to start (an automatic request joins it)."""
    row = conn.execute(
        "SELECT run_id FROM runs WHERE project = %s AND state = 'queued' "
        "ORDER BY requested_at LIMIT 1",
        (project,),
    ).fetchone()
    return str(row[0]) if row else None


def runs_ahead(conn: Conn, project: str, run_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM runs WHERE project = %s AND run_id <> %s "
        "AND state IN ('queued', 'running') AND requested_at <= "
        "(SELECT requested_at FROM runs WHERE run_id = %s)",
        (project, run_id, run_id),
    ).fetchone()
    return int(row[0]) if row else 0


# Claims take this transaction-scoped advisory lock, one after another: a claim that ran
# beside another could see the other's run of the same project still queued, and fail
# on runs_one_running when the other commits.
CLAIM_LOCK = 0x5472_6169_6E43  # "TrainC"


def claim_next_run(conn: Conn, owner: str) -> RunRow | None:
    """The oldest queued run of a project with nothing running, now RUNNING and `owner`'s."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK,))
    row = conn.execute(
        f"UPDATE runs SET state = 'running', started_at = coalesce(started_at, now()), "
        f"owner = %s, heartbeat_at = now() "
        f"WHERE run_id = (SELECT q.run_id FROM runs q WHERE q.state = 'queued' AND NOT EXISTS "
        f"  (SELECT 1 FROM runs r WHERE r.project = q.project AND r.state = 'running') "
        f"  ORDER BY q.requested_at LIMIT 1 FOR UPDATE SKIP LOCKED) "
        f"RETURNING {RUN_COLUMNS}",
        (owner,),
    ).fetchone()
    return _run(row) if row else None


def heartbeat(conn: Conn, owner: str) -> int:
    """`owner` is alive: its running runs stay claimed. How many it holds."""
    return conn.execute(
        "UPDATE runs SET heartbeat_at = now() WHERE state = 'running' AND owner = %s", (owner,)
    ).rowcount


def requeue_running(conn: Conn, owner: str | None, stale_s: float) -> list[str]:
    """Runs left RUNNING by a process that died, queued again (they resume from their
    last checkpoint): `owner`'s own at once (it is starting again), any other once its
    heartbeat is `stale_s` old."""
    return [
        str(r[0])
        for r in conn.execute(
            "UPDATE runs SET state = 'queued', owner = NULL WHERE state = 'running' AND "
            "(owner IS NOT DISTINCT FROM %s OR heartbeat_at IS NULL "
            " OR heartbeat_at < now() - make_interval(secs => %s)) RETURNING run_id",
            (owner, stale_s),
        )
    ]


def requeue(conn: Conn, run_id: str) -> None:
    """A claimed run that could not start (its compute was not there): back in the queue."""
    conn.execute("UPDATE runs SET state = 'queued', owner = NULL WHERE run_id = %s", (run_id,))


def run(conn: Conn, run_id: str) -> RunRow | None:
    row = conn.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s", (run_id,)).fetchone()
    return _run(row) if row else None


def runs_of(conn: Conn, project: str, limit: int) -> list[RunRow]:
    """The project's newest `limit` runs, newest request first."""
    rows = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE project = %s "
        "ORDER BY requested_at DESC, run_id DESC LIMIT %s",
        (project, limit),
    ).fetchall()
    return [_run(r) for r in rows]


def set_plan(conn: Conn, run_id: str, n_labels: int, epochs: int) -> None:
    """What the run trains on, once it has started: its labels and epochs."""
    conn.execute(
        "UPDATE runs SET n_labels = %s, epochs = %s WHERE run_id = %s", (n_labels, epochs, run_id)
    )


def record_progress(
    conn: Conn, run_id: str, epoch: int, samples: int, per_second: float, resumed: bool
) -> None:
    conn.execute(
        "UPDATE runs SET epoch = greatest(epoch, %s), samples_seen = samples_seen + %s, "
        "samples_per_second = %s, resumed = resumed OR %s WHERE run_id = %s AND state = 'running'",
        (epoch, samples, per_second, resumed, run_id),
    )


def holds(conn: Conn, run_id: str, owner: str) -> bool:
    """Whether `owner` still holds the running run, which stays locked until the
    transaction ends. A run queued again after its lease ran out is no longer the first
    owner's to publish or fail: another process may be training it."""
    row = conn.execute(
        "SELECT 1 FROM runs WHERE run_id = %s AND state = 'running' AND owner = %s FOR UPDATE",
        (run_id, owner),
    ).fetchone()
    return row is not None


def fail_run(conn: Conn, run_id: str, error: str) -> None:
    conn.execute(
        "UPDATE runs SET state = 'failed', error = %s, finished_at = now() WHERE run_id = %s",
        (error, run_id),
    )


def succeed_run(
    conn: Conn,
    run_id: str,
    model_version: str,
    metrics: bytes,
    governance_mode: int = 0,
    trust_curve: bytes | None = None,
) -> None:
    conn.execute(
        "UPDATE runs SET state = 'succeeded', model_version = %s, metrics = %s, "
        "governance_mode = %s, trust_curve = %s, finished_at = now() WHERE run_id = %s",
        (model_version, metrics, governance_mode, trust_curve, run_id),
    )


# -- trust curves -----------------------------------------------------------------------------


def save_trust_curve(conn: Conn, curve: common_pb2.TrustCurve) -> bool:
    """Keep the project's curve if it is newer than the one kept (events may arrive
    out of order after a redelivery); True when kept."""
    fitted = curve.fitted_at.ToDatetime(tzinfo=UTC)
    row = conn.execute(
        "INSERT INTO trust_curves (project, fitted_at, curve) VALUES (%s, %s, %s) "
        "ON CONFLICT (project) DO UPDATE SET fitted_at = EXCLUDED.fitted_at, "
        "curve = EXCLUDED.curve WHERE trust_curves.fitted_at < EXCLUDED.fitted_at "
        "RETURNING 1",
        (curve.project, fitted, curve.SerializeToString()),
    ).fetchone()
    return row is not None


def trust_curve(conn: Conn, project: str) -> TrustCurve | None:
    """The newest trust curve quality fitted for the project (None: none yet)."""
    row = conn.execute("SELECT curve FROM trust_curves WHERE project = %s", (project,)).fetchone()
    if row is None:
        return None
    return curve_of(common_pb2.TrustCurve.FromString(bytes(row[0])))
