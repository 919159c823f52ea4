"""Training's SQL for what runs produced: models, the influence ledger, depth profiles,
memorization flags and TracIn checkpoints, and the lineage read from them. Every
function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from strata.training.store import Conn


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
