"""Training's SQL. Every function runs inside the caller's transaction."""

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


# -- models, ledger, profiles, flags, checkpoints ---------------------------------------------


def next_model_seq(conn: Conn, project: str) -> int:
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('training.models'), hashtext(%s))", (project,)
    )
    row = conn.execute(
        "SELECT coalesce(max(seq), 0) + 1 FROM models WHERE project = %s", (project,)
    ).fetchone()
    return int(row[0]) if row else 1


@dataclass(frozen=True)
class ModelRow:
    project: str
    version: str
    run_id: str
    seq: int
    family: str
    classes: list[str]
    layer_groups: list[str]
    artifact_uri: str
    metrics: bytes


def record_model(conn: Conn, m: ModelRow) -> None:
    conn.execute(
        "INSERT INTO models (project, version, run_id, seq, family, classes, layer_groups, "
        "artifact_uri, metrics) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            m.project,
            m.version,
            m.run_id,
            m.seq,
            m.family,
            m.classes,
            m.layer_groups,
            m.artifact_uri,
            m.metrics,
        ),
    )


def last_published(conn: Conn) -> dict[str, datetime]:
    """When each project's newest model was recorded."""
    rows = conn.execute("SELECT project, max(created_at) FROM models GROUP BY project").fetchall()
    return {r[0]: r[1] for r in rows}


def model(conn: Conn, project: str, version: str | None) -> ModelRow | None:
    """A model version, or the project's newest when `version` is empty."""
    cols = "project, version, run_id, seq, family, classes, layer_groups, artifact_uri, metrics"
    if version:
        row = conn.execute(
            f"SELECT {cols} FROM models WHERE project = %s AND version = %s", (project, version)
        ).fetchone()
    else:
        row = conn.execute(
            f"SELECT {cols} FROM models WHERE project = %s ORDER BY seq DESC LIMIT 1", (project,)
        ).fetchone()
    if row is None:
        return None
    values = list(row)
    values[2] = str(values[2])
    values[8] = bytes(values[8])
    return ModelRow(*values)


@dataclass(frozen=True)
class LedgerRow:
    label_id: str
    item_id: str
    layer_group: int
    influence: float
    influence_depth: int
    value: str
    consensus_score: float
    annotator_ids: list[str]
    magnitude: float = 1.0  # the label's gradient scale in this group


def write_ledger(conn: Conn, run_id: str, rows: Sequence[LedgerRow]) -> int:
    """A run's ledger in one COPY (rows for groups a label never reached are not written)."""
    with conn.cursor().copy(
        "COPY ledger (run_id, label_id, item_id, layer_group, influence, influence_depth, "
        "value, consensus_score, annotator_ids, magnitude) FROM STDIN"
    ) as copy:
        for r in rows:
            copy.write_row(
                (
                    run_id,
                    r.label_id,
                    r.item_id,
                    r.layer_group,
                    r.influence,
                    r.influence_depth,
                    r.value,
                    r.consensus_score,
                    r.annotator_ids,
                    r.magnitude,
                )
            )
    return len(rows)


def query_ledger(
    conn: Conn,
    run_id: str,
    annotator_id: str = "",
    class_label: str = "",
    layer_group: int = 0,
    limit: int = 100,
) -> list[LedgerRow]:
    """The run's ledger rows, largest influence first, filtered by what is given."""
    where, args = ["run_id = %s"], [run_id]
    if annotator_id:
        where.append("annotator_ids @> ARRAY[%s]::text[]")
        args.append(annotator_id)
    if class_label:
        where.append("value = %s")
        args.append(class_label)
    if layer_group:
        where.append("layer_group = %s")
        args.append(str(layer_group))
    rows = conn.execute(
        "SELECT label_id, item_id, layer_group, influence, influence_depth, value, "
        f"consensus_score, annotator_ids, magnitude FROM ledger WHERE {' AND '.join(where)} "
        "ORDER BY influence DESC, label_id, layer_group LIMIT %s",
        (*args, limit),
    ).fetchall()
    return [LedgerRow(*r) for r in rows]


def write_profiles(conn: Conn, run_id: str, profiles: dict[str, list[float]]) -> None:
    if profiles:
        conn.cursor().executemany(
            "INSERT INTO depth_profiles (run_id, class_label, entropy_by_group) "
            "VALUES (%s, %s, %s)",
            [(run_id, c, v) for c, v in profiles.items()],
        )


def profiles(conn: Conn, run_id: str) -> dict[str, list[float]]:
    rows = conn.execute(
        "SELECT class_label, entropy_by_group FROM depth_profiles WHERE run_id = %s "
        "ORDER BY class_label",
        (run_id,),
    ).fetchall()
    return {r[0]: list(r[1]) for r in rows}


@dataclass(frozen=True)
class FlagRow:
    label_id: str
    item_id: str
    value: str
    annotator_ids: list[str]
    reason: str
    score: float


def write_flags(conn: Conn, run_id: str, flags: Sequence[FlagRow]) -> None:
    if flags:
        conn.cursor().executemany(
            "INSERT INTO memorization_flags (run_id, label_id, item_id, value, annotator_ids, "
            "reason, score) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (run_id, f.label_id, f.item_id, f.value, f.annotator_ids, f.reason, f.score)
                for f in flags
            ],
        )


def flags(conn: Conn, run_id: str) -> list[FlagRow]:
    rows = conn.execute(
        "SELECT label_id, item_id, value, annotator_ids, reason, score "
        "FROM memorization_flags WHERE run_id = %s ORDER BY score DESC, label_id",
        (run_id,),
    ).fetchall()
    return [FlagRow(*r) for r in rows]


def write_checkpoints(conn: Conn, run_id: str, saved: Sequence[tuple[int, float, str]]) -> None:
    if saved:
        conn.cursor().executemany(
            "INSERT INTO checkpoints (run_id, epoch, lr, artifact_uri) VALUES (%s, %s, %s, %s)",
            [(run_id, e, lr, uri) for e, lr, uri in saved],
        )


def checkpoints(conn: Conn, run_id: str) -> list[tuple[int, float, str]]:
    return [
        (int(r[0]), float(r[1]), r[2])
        for r in conn.execute(
            "SELECT epoch, lr, artifact_uri FROM checkpoints WHERE run_id = %s ORDER BY epoch",
            (run_id,),
        )
    ]


@dataclass(frozen=True)
class RunLabel:
    label_id: str
    item_id: str
    value: str
    consensus_score: float
    annotator_ids: list[str]
    influence_depth: int


def run_labels(conn: Conn, run_id: str) -> list[RunLabel]:
    """The labels a run trained on, as its ledger recorded them (in label order)."""
    rows = conn.execute(
        "SELECT label_id, item_id, value, consensus_score, annotator_ids, influence_depth "
        "FROM ledger WHERE run_id = %s AND layer_group = 1 ORDER BY item_id",
        (run_id,),
    ).fetchall()
    return [RunLabel(*r) for r in rows]


def runs_ahead(conn: Conn, project: str, run_id: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM runs WHERE project = %s AND run_id <> %s "
        "AND state IN ('queued', 'running') AND requested_at <= "
        "(SELECT requested_at FROM runs WHERE run_id = %s)",
        (project, run_id, run_id),
    ).fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class ItemTrace:
    """One label of an item in one run's ledger, with its influence per group reached."""

    run_id: str
    model_version: str
    finished_at: datetime | None
    label_id: str
    value: str
    consensus_score: float
    annotator_ids: list[str]
    influence_depth: int
    groups: list[int]
    influences: list[float]
    layer_groups: list[str]
    magnitudes: list[float]  # the label's gradient scale in each of `groups`


def item_traces(conn: Conn, project: str, item_id: str) -> list[ItemTrace]:
    """Every (run, label) of the project whose ledger holds a label of `item_id`,
    newest run first."""
    rows = conn.execute(
        "SELECT l.run_id, coalesce(r.model_version, ''), r.finished_at, l.label_id, l.value, "
        "l.consensus_score, l.annotator_ids, l.influence_depth, "
        "array_agg(l.layer_group ORDER BY l.layer_group), "
        "array_agg(l.influence ORDER BY l.layer_group), "
        "coalesce(m.layer_groups, '{}'), "
        "array_agg(l.magnitude ORDER BY l.layer_group) "
        "FROM ledger l JOIN runs r USING (run_id) "
        "LEFT JOIN models m ON m.project = r.project AND m.version = r.model_version "
        "WHERE l.item_id = %s AND r.project = %s "
        "GROUP BY l.run_id, r.model_version, r.finished_at, r.requested_at, l.label_id, "
        "l.value, l.consensus_score, l.annotator_ids, l.influence_depth, m.layer_groups "
        "ORDER BY r.finished_at DESC NULLS LAST, r.requested_at DESC, l.run_id, l.label_id",
        (item_id, project),
    ).fetchall()
    return [ItemTrace(str(r[0]), *r[1:]) for r in rows]


def latest_depths(
    conn: Conn, project: str, item_ids: Sequence[str]
) -> list[tuple[str, str, str, int]]:
    """(item, run, model version, influence depth) in the newest succeeded run of the
    project that trained on each item; items no such run used are left out."""
    rows = conn.execute(
        "SELECT DISTINCT ON (l.item_id) l.item_id, l.run_id, coalesce(r.model_version, ''), "
        "l.influence_depth FROM ledger l JOIN runs r USING (run_id) "
        "WHERE l.item_id = ANY(%s) AND r.project = %s AND r.state = 'succeeded' "
        "ORDER BY l.item_id, r.finished_at DESC NULLS LAST, r.requested_at DESC",
        (list(item_ids), project),
    ).fetchall()
    return [(r[0], str(r[1]), r[2], int(r[3])) for r in rows]
