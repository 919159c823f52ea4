"""Inference's SQL. Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from strata.common.contract_store import load_contract, projects, save_contract
from strata.common.item_store import save_items

__all__ = ["load_contract", "projects", "save_contract", "save_items"]

Conn = psycopg.Connection[Any]


# -- items ------------------------------------------------------------------------------------


def contents_of(conn: Conn, project: str, item_ids: Sequence[str]) -> dict[str, bytes]:
    """Content of the project's pool items among `item_ids`: no person is ever served a
    prediction for a gold item, so gold ones are not found."""
    rows = conn.execute(
        "SELECT item_id, content FROM items WHERE project = %s AND item_id = ANY(%s) "
        "AND gold_answer IS NULL",
        (project, list(item_ids)),
    ).fetchall()
    return {r[0]: bytes(r[1]) for r in rows}


def gold_among(conn: Conn, project: str, contents: Sequence[bytes]) -> list[int]:
    """Indexes of `contents` (serialized ItemContent) that are a gold item's content."""
    if not contents:
        return []
    rows = conn.execute(
        "SELECT DISTINCT c.n FROM unnest(%s::bytea[]) WITH ORDINALITY AS c(content, n) "
        "JOIN items i ON i.content = c.content WHERE i.project = %s AND i.gold_answer IS NOT NULL",
        (list(contents), project),
    ).fetchall()
    return sorted(int(r[0]) - 1 for r in rows)


def claim_unscored(
    conn: Conn, project: str, generation: int, version: str, limit: int
) -> list[tuple[str, bytes, bool]]:
    """Take items the serving generation has not scored: (item, content, is gold),
    marked scored by it and locked until this transaction ends (it rolls back whole
    if publishing fails)."""
    return [
        (r[0], bytes(r[1]), bool(r[2]))
        for r in conn.execute(
            "UPDATE items SET scored_generation = %s, scored_version = %s, score_error = NULL "
            "WHERE item_id IN (SELECT item_id FROM items WHERE project = %s "
            "AND scored_generation < %s "
            "ORDER BY scored_generation, item_id LIMIT %s FOR UPDATE SKIP LOCKED) "
            "RETURNING item_id, content, gold_answer IS NOT NULL",
            (generation, version, project, generation, limit),
        )
    ]


def record_score_errors(conn: Conn, errors: dict[str, str]) -> None:
    """Why the serving model could not score these items (wrong modality or shape)."""
    if errors:
        conn.execute(
            "UPDATE items SET score_error = u.e FROM unnest(%s::text[], %s::text[]) AS u(i, e) "
            "WHERE items.item_id = u.i",
            (list(errors), list(errors.values())),
        )


def backlog(conn: Conn, project: str, generation: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM items WHERE project = %s AND scored_generation < %s",
        (project, generation),
    ).fetchone()
    return int(row[0]) if row else 0


def gold_items(conn: Conn, project: str) -> list[tuple[str, bytes, str]]:
    return [
        (r[0], bytes(r[1]), r[2])
        for r in conn.execute(
            "SELECT item_id, content, gold_answer FROM items "
            "WHERE project = %s AND gold_answer IS NOT NULL ORDER BY item_id",
            (project,),
        )
    ]


def record_external_ids(conn: Conn, rows: Sequence[tuple[str, str, str]]) -> None:
    """(item, project, external id): what imports of predictions name the items by. An
    item another project owns is left alone."""
    if rows:
        conn.execute(
            "UPDATE items SET external_id = u.e "
            "FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(i, p, e) "
            "WHERE items.item_id = u.i AND items.project = u.p "
            "AND items.external_id IS DISTINCT FROM u.e",
            ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]),
        )


def items_named(
    conn: Conn, project: str, names: Sequence[str]
) -> tuple[dict[str, list[str]], set[str]]:
    """The project's items that `names` name: (external id -> item ids with it, the
    names that are item ids). Gold items are found too (their pre-labels must follow
    the pool's), duplicates are not (inference never keeps them)."""
    external: dict[str, list[str]] = {}
    ids: set[str] = set()
    rows = conn.execute(
        "SELECT u.name, i.item_id, true FROM unnest(%s::text[]) AS u(name) "
        "JOIN items i ON i.project = %s AND i.external_id = u.name "
        "UNION ALL SELECT item_id, item_id, false FROM items "
        "WHERE project = %s AND item_id = ANY(%s)",
        (list(names), project, project, list(names)),
    ).fetchall()
    for name, item_id, by_external in rows:
        if by_external:
            external.setdefault(name, []).append(item_id)
        else:
            ids.add(name)
    return external, ids


def save_imported_predictions(
    conn: Conn,
    project: str,
    model_version: str,
    classes: Sequence[str],
    rows: Sequence[tuple[str, str, float, Sequence[float]]],
    imported_by: str,
) -> set[str]:
    """(item, class, confidence, probabilities in `classes` order) of one outside model;
    returns the items whose prediction is new or changed (an exact repeat is not)."""
    if not rows:
        return set()
    cur = conn.execute(
        "INSERT INTO imported_predictions AS p (item_id, model_version, project, "
        "predicted_class, confidence, classes, probabilities, imported_by) "
        "SELECT u.i, %s, %s, u.v, u.c, %s::text[], string_to_array(u.p, ',')::float8[], %s "
        "FROM unnest(%s::text[], %s::text[], %s::float8[], %s::text[]) AS u(i, v, c, p) "
        "ON CONFLICT (item_id, model_version) DO UPDATE SET "
        "predicted_class = EXCLUDED.predicted_class, confidence = EXCLUDED.confidence, "
        "classes = EXCLUDED.classes, probabilities = EXCLUDED.probabilities, "
        "imported_by = EXCLUDED.imported_by, imported_at = now() "
        "WHERE (p.predicted_class, p.confidence, p.classes, p.probabilities) IS DISTINCT FROM "
        "(EXCLUDED.predicted_class, EXCLUDED.confidence, EXCLUDED.classes, EXCLUDED.probabilities) "
        "RETURNING item_id",
        (
            model_version,
            project,
            list(classes),
            imported_by,
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            # repr round-trips a float exactly, so a repeat compares equal
            [",".join(repr(float(p)) for p in r[3]) for r in rows],
        ),
    )
    return {str(r[0]) for r in cur.fetchall()}


# -- models -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRow:
    project: str
    version: str
    family: str
    artifact_uri: str
    classes: list[str]
    run_id: str
    metrics: bytes | None
    status: str
    error: str | None
    calibrated: bool
    temperature: float
    ece_before: float | None
    ece_after: float | None
    n_gold: int
    calibration_note: str
    gold_confidence: list[float]
    gold_correct: list[bool]
    published_at: Any
    recorded_at: Any


_MODEL_COLUMNS = (
    "project, version, family, artifact_uri, classes, run_id, metrics, status, error, "
    "calibrated, temperature, ece_before, ece_after, n_gold, calibration_note, "
    "gold_confidence, gold_correct, published_at, recorded_at"
)


def record_model(conn: Conn, m: ModelRow) -> bool:
    """Record a published version (loaded or failed); False if it was recorded before."""
    cur = conn.execute(
        f"INSERT INTO models ({_MODEL_COLUMNS}) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now()) "
        "ON CONFLICT (project, version) DO NOTHING",
        (
            m.project,
            m.version,
            m.family,
            m.artifact_uri,
            m.classes,
            m.run_id,
            m.metrics,
            m.status,
            m.error,
            m.calibrated,
            m.temperature,
            m.ece_before,
            m.ece_after,
            m.n_gold,
            m.calibration_note,
            m.gold_confidence,
            m.gold_correct,
            m.published_at,
        ),
    )
    return cur.rowcount == 1


def model(conn: Conn, project: str, version: str) -> ModelRow | None:
    row = conn.execute(
        f"SELECT {_MODEL_COLUMNS} FROM models WHERE project = %s AND version = %s",
        (project, version),
    ).fetchone()
    return ModelRow(*row) if row else None


def models(conn: Conn, project: str) -> list[ModelRow]:
    """Every version of the project inference has recorded, newest first."""
    return [
        ModelRow(*r)
        for r in conn.execute(
            f"SELECT {_MODEL_COLUMNS} FROM models WHERE project = %s "
            "ORDER BY recorded_at DESC, published_at DESC NULLS LAST, version DESC",
            (project,),
        )
    ]


def last_failure(conn: Conn, project: str) -> ModelRow | None:
    """The newest failed version, if it is newer than every loaded one."""
    row = conn.execute(
        f"SELECT {_MODEL_COLUMNS} FROM models m WHERE project = %s AND status = 'failed' "
        "AND NOT EXISTS (SELECT 1 FROM models n WHERE n.project = m.project "
        "AND n.status = 'loaded' AND n.recorded_at > m.recorded_at) "
        "ORDER BY recorded_at DESC LIMIT 1",
        (project,),
    ).fetchone()
    return ModelRow(*row) if row else None


# -- serving ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Serving:
    project: str
    version: str
    previous_version: str | None
    generation: int
    auto_accepted: int
    spot_checked: int


def serve(conn: Conn, project: str, version: str) -> Serving:
    """Make `version` serve `project` (the one serving so far becomes the previous)."""
    row = conn.execute(
        "INSERT INTO serving (project, version, generation) "
        "VALUES (%s, %s, nextval('serving_generation')) "
        "ON CONFLICT (project) DO UPDATE SET previous_version = serving.version, "
        "version = EXCLUDED.version, generation = EXCLUDED.generation, updated_at = now() "
        "RETURNING project, version, previous_version, generation, auto_accepted, spot_checked",
        (project, version),
    ).fetchone()
    assert row is not None
    return Serving(*row)


def serving(conn: Conn, project: str | None = None) -> list[Serving]:
    return [
        Serving(*r)
        for r in conn.execute(
            "SELECT project, version, previous_version, generation, auto_accepted, spot_checked "
            "FROM serving" + (" WHERE project = %s" if project else "") + " ORDER BY project",
            (project,) if project else (),
        )
    ]


def lock_serving(conn: Conn, project: str) -> Serving | None:
    row = conn.execute(
        "SELECT project, version, previous_version, generation, auto_accepted, spot_checked "
        "FROM serving WHERE project = %s FOR UPDATE",
        (project,),
    ).fetchone()
    return Serving(*row) if row else None


def count_routed(conn: Conn, project: str, auto: int, spot: int) -> None:
    if auto or spot:
        conn.execute(
            "UPDATE serving SET auto_accepted = auto_accepted + %s, "
            "spot_checked = spot_checked + %s WHERE project = %s",
            (auto, spot, project),
        )
