"""The quality service's SQL. Every function runs inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray

from strata.common.contract_store import load_contract, projects, save_contract
from strata.quality.report import ProjectData
from strata.v1 import common_pb2, quality_pb2

__all__ = ["load_contract", "projects", "save_contract"]

Conn = psycopg.Connection[Any]


# -- votes and items -----------------------------------------------------------


@dataclass(frozen=True)
class NewVote:
    label_id: str
    item_id: str
    project: str
    annotator_id: str
    value: str
    ontology_version: str
    source: str
    gold: bool
    gold_answer: str | None
    submitted_at: datetime
    duration_ms: int
    prelabel_value: str | None
    prelabel_honeypot: bool = False
    active_ms: int = 0
    prelabel_confidence: float | None = None
    prelabel_model: str | None = None

    @property
    def wrong_prelabel(self) -> bool:
        """A gold vote shown a pre-label that was not the answer."""
        return bool(
            self.gold_answer and self.prelabel_value and self.prelabel_value != self.gold_answer
        )


def insert_votes(conn: Conn, votes: Sequence[NewVote]) -> set[str]:
    """Store votes; returns the label ids that were new (a label id counts once, ever)."""
    if not votes:
        return set()
    rows = conn.execute(
        "INSERT INTO votes (label_id, item_id, project, annotator_id, value, ontology_version, "
        "source, gold, gold_answer, submitted_at, duration_ms, prelabel_value, "
        "prelabel_honeypot, active_ms, prelabel_confidence, prelabel_model) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
        "%s::text[], %s::text[], %s::bool[], %s::text[], %s::timestamptz[], %s::bigint[], "
        "%s::text[], %s::bool[], %s::bigint[], %s::float8[], %s::text[]) "
        "ON CONFLICT (label_id) DO NOTHING RETURNING label_id",
        (
            [v.label_id for v in votes],
            [v.item_id for v in votes],
            [v.project for v in votes],
            [v.annotator_id for v in votes],
            [v.value for v in votes],
            [v.ontology_version for v in votes],
            [v.source for v in votes],
            [v.gold for v in votes],
            [v.gold_answer for v in votes],
            [v.submitted_at for v in votes],
            [v.duration_ms for v in votes],
            [v.prelabel_value for v in votes],
            [v.prelabel_honeypot for v in votes],
            [v.active_ms for v in votes],
            [v.prelabel_confidence for v in votes],
            [v.prelabel_model for v in votes],
        ),
    ).fetchall()
    return {r[0] for r in rows}


@dataclass
class ItemState:
    item_id: str
    project: str
    ontology_version: str
    gold_answer: str | None
    state: str
    votes: int
    requested_overlap: int
    method: str | None = None
    value: str | None = None

    @property
    def model_label(self) -> bool:
        """Accepted on the model's word alone (auto-accept): humans may still decide it."""
        return self.state == "accepted" and self.method == MODEL_AUTO_ACCEPT


MODEL_AUTO_ACCEPT = "model_auto_accept"
_ITEM_COLUMNS = (
    "item_id, project, ontology_version, gold_answer, state, votes, requested_overlap, method, "
    "value"
)


def lock_items(conn: Conn, first_votes: Sequence[NewVote]) -> dict[str, ItemState]:
    """Create the items these votes are for, if new, and lock them (sorted: no deadlocks)."""
    seen: dict[str, NewVote] = {}
    for v in first_votes:
        seen.setdefault(v.item_id, v)
    ids = sorted(seen)
    conn.execute(
        "INSERT INTO items (item_id, project, ontology_version, gold_answer) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
        "ORDER BY 1 ON CONFLICT (item_id) DO NOTHING",
        (
            ids,
            [seen[i].project for i in ids],
            [seen[i].ontology_version for i in ids],
            [seen[i].gold_answer for i in ids],
        ),
    )
    rows = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = ANY(%s) ORDER BY item_id FOR UPDATE",
        (ids,),
    ).fetchall()
    return {r[0]: ItemState(*r) for r in rows}


def open_items(conn: Conn, project: str) -> list[ItemState]:
    """The project's undecided items that have votes, locked; ones locked elsewhere are skipped."""
    rows = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM items WHERE project = %s AND state = 'open' "
        "AND gold_answer IS NULL AND votes > 0 ORDER BY item_id FOR UPDATE SKIP LOCKED",
        (project,),
    ).fetchall()
    return [ItemState(*r) for r in rows]


@dataclass(frozen=True)
class VoteRow:
    label_id: str
    annotator_id: str
    value: str
    source: str
    submitted_at: datetime


def votes_of(conn: Conn, item_ids: Iterable[str]) -> dict[str, list[VoteRow]]:
    """Every vote on these items, oldest first."""
    found: dict[str, list[VoteRow]] = {}
    rows = conn.execute(
        "SELECT item_id, label_id, annotator_id, value, source, submitted_at FROM votes "
        "WHERE item_id = ANY(%s) ORDER BY item_id, submitted_at, label_id",
        (list(item_ids),),
    )
    for r in rows:
        found.setdefault(r[0], []).append(VoteRow(*r[1:]))
    return found


@dataclass(frozen=True)
class ItemUpdate:
    item_id: str
    state: str
    votes: int
    requested_overlap: int
    value: str | None = None
    consensus_score: float | None = None
    method: str | None = None
    classes: list[str] | None = None
    posterior: list[float] | None = None
    majority_value: str | None = None
    decided_by: str | None = None
    consensus: bytes | None = None


def update_items(conn: Conn, updates: Sequence[ItemUpdate]) -> None:
    """Write the new state of many items in one statement; None keeps a column as it is."""
    if not updates:
        return
    conn.execute(
        "UPDATE items SET state = u.state, votes = u.votes, "
        "requested_overlap = u.requested_overlap, value = coalesce(u.value, items.value), "
        "consensus_score = coalesce(u.score, items.consensus_score), "
        "method = coalesce(u.method, items.method), "
        "classes = coalesce(string_to_array(u.classes, chr(31)), items.classes), "
        "posterior = coalesce(string_to_array(u.posterior, ',')::float8[], items.posterior), "
        "majority_value = coalesce(u.majority, items.majority_value), "
        "decided_by = coalesce(u.decided_by, items.decided_by), "
        "consensus = coalesce(u.consensus, items.consensus), "
        "decided_at = CASE WHEN u.state NOT IN ('accepted', 'expert') THEN items.decided_at "
        "WHEN u.method IS DISTINCT FROM items.method AND u.method IS NOT NULL THEN now() "
        "ELSE coalesce(items.decided_at, now()) END, "
        "updated_at = now() "
        "FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::text[], %s::float8[], "
        "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bytea[]) "
        "AS u(item_id, state, votes, requested_overlap, value, score, method, classes, "
        "posterior, majority, decided_by, consensus) WHERE items.item_id = u.item_id",
        (
            [u.item_id for u in updates],
            [u.state for u in updates],
            [u.votes for u in updates],
            [u.requested_overlap for u in updates],
            [u.value for u in updates],
            [u.consensus_score for u in updates],
            [u.method for u in updates],
            [chr(31).join(u.classes) if u.classes else None for u in updates],
            [",".join(repr(x) for x in u.posterior) if u.posterior else None for u in updates],
            [u.majority_value for u in updates],
            [u.decided_by for u in updates],
            [u.consensus for u in updates],
        ),
    )


ITEM_COLUMNS = (
    "item_id",
    "project",
    "ontology_version",
    "gold_answer",
    "state",
    "votes",
    "requested_overlap",
    "value",
    "consensus_score",
    "method",
    "classes",
    "posterior",
    "decided_at",
    "decided_by",
)


def item_row(conn: Conn, item_id: str, *, lock: bool = False) -> dict[str, Any] | None:
    """One item's consensus state, as a dict of column values."""
    row = conn.execute(
        f"SELECT {', '.join(ITEM_COLUMNS)} FROM items WHERE item_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (item_id,),
    ).fetchone()
    return dict(zip(ITEM_COLUMNS, row, strict=True)) if row else None


# -- annotators: gold and estimates -----------------------------------------------


@dataclass(frozen=True)
class GoldTotals:
    project: str
    annotator_id: str
    answered: int
    correct: int
    status: str
    wrong_prelabels_shown: int = 0
    wrong_prelabels_followed: int = 0


@dataclass(frozen=True)
class GoldDelta:
    """What a batch of gold votes adds to one annotator's record."""

    answered: int = 0
    correct: int = 0
    wrong_prelabels_shown: int = 0
    wrong_prelabels_followed: int = 0

    def __add__(self, other: GoldDelta) -> GoldDelta:
        return GoldDelta(
            self.answered + other.answered,
            self.correct + other.correct,
            self.wrong_prelabels_shown + other.wrong_prelabels_shown,
            self.wrong_prelabels_followed + other.wrong_prelabels_followed,
        )


def add_gold(conn: Conn, deltas: dict[tuple[str, str], GoldDelta]) -> list[GoldTotals]:
    """Add gold answers and anchoring counts per (project, annotator); the new totals."""
    if not deltas:
        return []
    keys = sorted(deltas)
    rows = conn.execute(
        "INSERT INTO annotators (project, annotator_id, gold_answered, gold_correct, "
        "wrong_prelabels_shown, wrong_prelabels_followed) "
        "SELECT * FROM unnest(%s::text[], %s::text[], %s::int[], %s::int[], %s::int[], "
        "%s::int[]) ORDER BY 1, 2 "
        "ON CONFLICT (project, annotator_id) DO UPDATE SET "
        "gold_answered = annotators.gold_answered + EXCLUDED.gold_answered, "
        "gold_correct = annotators.gold_correct + EXCLUDED.gold_correct, "
        "wrong_prelabels_shown = annotators.wrong_prelabels_shown "
        "+ EXCLUDED.wrong_prelabels_shown, "
        "wrong_prelabels_followed = annotators.wrong_prelabels_followed "
        "+ EXCLUDED.wrong_prelabels_followed, updated_at = now() "
        "RETURNING project, annotator_id, gold_answered, gold_correct, status, "
        "wrong_prelabels_shown, wrong_prelabels_followed",
        (
            [k[0] for k in keys],
            [k[1] for k in keys],
            [deltas[k].answered for k in keys],
            [deltas[k].correct for k in keys],
            [deltas[k].wrong_prelabels_shown for k in keys],
            [deltas[k].wrong_prelabels_followed for k in keys],
        ),
    ).fetchall()
    return [GoldTotals(*r) for r in rows]


def set_status(conn: Conn, project: str, annotator_id: str, status: str, reason: str) -> None:
    conn.execute(
        "UPDATE annotators SET status = %s, status_reason = %s, updated_at = now() "
        "WHERE project = %s AND annotator_id = %s",
        (status, reason, project, annotator_id),
    )


def record_status(conn: Conn, project: str, annotator_id: str, status: str, reason: str) -> None:
    """A standing a person set: kept even for an annotator with no gold answer yet."""
    conn.execute(
        "INSERT INTO annotators (project, annotator_id, status, status_reason) "
        "VALUES (%s, %s, %s, %s) ON CONFLICT (project, annotator_id) DO UPDATE SET "
        "status = EXCLUDED.status, status_reason = EXCLUDED.status_reason, updated_at = now()",
        (project, annotator_id, status, reason),
    )


@dataclass(frozen=True)
class Estimate:
    """A project's latest Dawid-Skene estimate, as consensus needs it."""

    classes: list[str]
    class_priors: NDArray[np.float64]
    confusions: dict[str, NDArray[np.float64]]
    estimated_at: datetime | None


def load_estimate(conn: Conn, project: str) -> Estimate | None:
    row = conn.execute(
        "SELECT classes, class_priors, estimated_at FROM estimates WHERE project = %s",
        (project,),
    ).fetchone()
    if row is None:
        return None
    classes, priors, at = row
    k = len(classes)
    confusions = {
        r[0]: np.asarray(r[1], dtype=float).reshape(k, k)
        for r in conn.execute(
            "SELECT annotator_id, confusion FROM annotators WHERE project = %s "
            "AND confusion IS NOT NULL AND classes = %s",
            (project, classes),
        )
    }
    return Estimate(list(classes), np.asarray(priors, dtype=float), confusions, at)


def estimate_stamp(conn: Conn, project: str) -> datetime | None:
    row = conn.execute(
        "SELECT estimated_at FROM estimates WHERE project = %s", (project,)
    ).fetchone()
    return row[0] if row else None


IMPORT_LOCK = "SELECT {}(hashtext('strata-quality-import:' || %s))"


def importing(conn: Conn, project: str) -> bool:
    """An import of answers into `project` is running (it holds the project's import
    lock): its items wait to be decided until all its answers are in."""
    row = conn.execute(
        IMPORT_LOCK.format("pg_try_advisory_xact_lock_shared"), (project,)
    ).fetchone()
    return not (row and row[0])


def votes_seen(conn: Conn, project: str) -> tuple[int, int]:
    """(votes in the project, votes the last estimate used)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM votes WHERE project = %s), "
        "(SELECT votes_seen FROM estimates WHERE project = %s)",
        (project, project),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1] or 0)


def project_votes(conn: Conn, project: str) -> list[tuple[str, str, str, str | None]]:
    """(item, annotator, value, gold answer or None) of every human vote in the project
    (expert votes excluded)."""
    return conn.execute(
        "SELECT item_id, annotator_id, value, gold_answer FROM votes "
        "WHERE project = %s AND source = 'human'",
        (project,),
    ).fetchall()


def save_estimate(
    conn: Conn,
    project: str,
    classes: list[str],
    class_priors: NDArray[np.float64],
    confusions: dict[str, NDArray[np.float64]],
    *,
    labels_used: int,
    items_used: int,
    iterations: int,
    converged: bool,
    votes_seen: int,
) -> None:
    conn.execute(
        "INSERT INTO estimates (project, classes, class_priors, labels_used, items_used, "
        "iterations, converged, votes_seen) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (project) DO UPDATE SET classes = EXCLUDED.classes, "
        "class_priors = EXCLUDED.class_priors, labels_used = EXCLUDED.labels_used, "
        "items_used = EXCLUDED.items_used, iterations = EXCLUDED.iterations, "
        "converged = EXCLUDED.converged, votes_seen = EXCLUDED.votes_seen, estimated_at = now()",
        (
            project,
            classes,
            class_priors.tolist(),
            labels_used,
            items_used,
            iterations,
            converged,
            votes_seen,
        ),
    )
    ids = sorted(confusions)
    conn.execute(
        "INSERT INTO annotators (project, annotator_id, confusion, classes, estimated_at) "
        "SELECT %s, u.a, string_to_array(u.c, ',')::float8[], %s, now() "
        "FROM unnest(%s::text[], %s::text[]) AS u(a, c) ORDER BY 2 "
        "ON CONFLICT (project, annotator_id) DO UPDATE SET confusion = EXCLUDED.confusion, "
        "classes = EXCLUDED.classes, estimated_at = EXCLUDED.estimated_at",
        (
            project,
            classes,
            ids,
            [",".join(repr(float(x)) for x in confusions[a].ravel()) for a in ids],
        ),
    )


# -- reviews -------------------------------------------------------------------------


def open_review(
    conn: Conn,
    item_id: str,
    project: str,
    kind: str,
    detail: str,
    suspected_label_ids: Sequence[str] = (),
    model_version: str | None = None,
) -> bool:
    """Open a review unless one is open for the item already."""
    cur = conn.execute(
        "INSERT INTO reviews (item_id, project, kind, detail, suspected_label_ids, "
        "model_version) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (item_id, project, kind, detail, list(suspected_label_ids), model_version),
    )
    return cur.rowcount == 1


def open_review_of(conn: Conn, item_id: str) -> quality_pb2.ReviewInfo | None:
    """The item's open review, or None."""
    row = conn.execute(
        "SELECT kind, detail, opened_at, suspected_label_ids, coalesce(model_version, '') "
        "FROM reviews WHERE item_id = %s AND resolved_at IS NULL",
        (item_id,),
    ).fetchone()
    if row is None:
        return None
    info = quality_pb2.ReviewInfo(
        kind=row[0], detail=row[1], suspected_label_ids=list(row[3]), model_version=row[4]
    )
    info.opened_at.FromDatetime(row[2])
    return info


def resolve_review(conn: Conn, item_id: str, by: str, value: str, note: str) -> str | None:
    """Close the item's open review; returns its kind, or None when none was open."""
    row = conn.execute(
        "UPDATE reviews SET resolved_at = now(), resolved_by = %s, value = %s, note = %s "
        "WHERE item_id = %s AND resolved_at IS NULL RETURNING kind",
        (by, value, note, item_id),
    ).fetchone()
    return row[0] if row else None


def review_backlog(conn: Conn) -> list[tuple[str, str, int]]:
    return conn.execute(
        "SELECT project, kind, count(*) FROM reviews WHERE resolved_at IS NULL "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    ).fetchall()


def reviewed_before(conn: Conn, item_ids: Sequence[str], model_version: str) -> set[str]:
    """Items already sent to relabel review on this model version's evidence."""
    rows = conn.execute(
        "SELECT DISTINCT item_id FROM reviews WHERE item_id = ANY(%s) AND kind = 'relabel' "
        "AND (model_version = %s OR resolved_at IS NULL)",
        (list(item_ids), model_version),
    )
    return {r[0] for r in rows}


# -- model signals ------------------------------------------------------------------------


def save_predictions(conn: Conn, predictions: Sequence[common_pb2.Prediction]) -> None:
    """Keep the newest prediction per item."""
    if not predictions:
        return
    newest: dict[str, common_pb2.Prediction] = {}
    for p in predictions:
        seen = newest.get(p.item_id)
        if seen is None or seen.predicted_at.ToDatetime(tzinfo=UTC) <= p.predicted_at.ToDatetime(
            tzinfo=UTC
        ):
            newest[p.item_id] = p
    ids = sorted(newest)
    conn.execute(
        "INSERT INTO predictions (item_id, project, model_version, classes, probabilities, "
        "predicted_at, routed, predicted_class) SELECT u.i, u.p, u.v, "
        "string_to_array(u.c, chr(31)), string_to_array(u.pr, ',')::float8[], u.t, u.r, u.pc "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
        "%s::timestamptz[], %s::text[], %s::text[]) AS u(i, p, v, c, pr, t, r, pc) "
        "ON CONFLICT (item_id) DO UPDATE SET model_version = EXCLUDED.model_version, "
        "classes = EXCLUDED.classes, probabilities = EXCLUDED.probabilities, "
        "predicted_at = EXCLUDED.predicted_at, routed = EXCLUDED.routed, "
        "predicted_class = EXCLUDED.predicted_class "
        "WHERE predictions.predicted_at <= EXCLUDED.predicted_at",
        (
            ids,
            [newest[i].project for i in ids],
            [newest[i].model_version for i in ids],
            [chr(31).join(newest[i].classes) for i in ids],
            [",".join(repr(float(x)) for x in newest[i].probabilities) for i in ids],
            [newest[i].predicted_at.ToDatetime(tzinfo=UTC) for i in ids],
            [_route(newest[i]) for i in ids],
            [newest[i].predicted_class or None for i in ids],
        ),
    )


def _route(p: common_pb2.Prediction) -> str | None:
    if p.auto_accept:
        return "auto_accept"
    return "spot_check" if p.spot_check else None


def lock_existing(conn: Conn, item_ids: Iterable[str]) -> dict[str, ItemState]:
    """Those of `item_ids` quality has a row for, locked (sorted: no deadlocks)."""
    ids = sorted(set(item_ids))
    found = conn.execute(
        f"SELECT {_ITEM_COLUMNS} FROM items WHERE item_id = ANY(%s) ORDER BY item_id FOR UPDATE",
        (ids,),
    ).fetchall()
    return {r[0]: ItemState(*r) for r in found}


@dataclass(frozen=True)
class ModelLabel:
    item_id: str
    project: str
    ontology_version: str
    value: str
    score: float
    model_version: str
    consensus: bytes


def save_model_labels(conn: Conn, labels: Sequence[ModelLabel]) -> None:
    """Accept items on the model's word (new items, or a newer model's auto label)."""
    if not labels:
        return
    conn.execute(
        "INSERT INTO items (item_id, project, ontology_version, state, value, consensus_score, "
        "method, decided_by, consensus, decided_at) "
        "SELECT u.i, u.p, u.o, 'accepted', u.v, u.s, %s, u.d, u.c, now() FROM unnest("
        "%s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::bytea[]) "
        "AS u(i, p, o, v, s, d, c) ORDER BY u.i "
        "ON CONFLICT (item_id) DO UPDATE SET value = EXCLUDED.value, "
        "consensus_score = EXCLUDED.consensus_score, decided_by = EXCLUDED.decided_by, "
        "consensus = EXCLUDED.consensus, decided_at = now(), updated_at = now() "
        "WHERE items.state = 'accepted' AND items.method = EXCLUDED.method",
        (
            MODEL_AUTO_ACCEPT,
            [m.item_id for m in labels],
            [m.project for m in labels],
            [m.ontology_version for m in labels],
            [m.value for m in labels],
            [m.score for m in labels],
            [f"model:{m.model_version}" for m in labels],
            [m.consensus for m in labels],
        ),
    )


def save_memorization_flags(
    conn: Conn, project: str, run_id: str, model_version: str, flags: Sequence[Any]
) -> list[Any]:
    """Store flags; returns the ones not seen before."""
    fresh = []
    for f in flags:
        cur = conn.execute(
            "INSERT INTO memorization_flags (run_id, label_id, item_id, project, model_version, "
            "reason, score) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (run_id, f.label_id or f.item_id, f.item_id, project, model_version, f.reason, f.score),
        )
        if cur.rowcount:
            fresh.append(f)
    return fresh


def accepted_with_predictions(
    conn: Conn, project: str
) -> list[tuple[str, str, list[str], list[float], str, list[str]]]:
    """(item, consensus value, prediction classes, probabilities, model version, label ids)."""
    return conn.execute(
        "SELECT i.item_id, i.value, p.classes, p.probabilities, p.model_version, "
        "coalesce((SELECT array_agg(v.label_id) FROM votes v WHERE v.item_id = i.item_id), "
        "'{}') FROM items i JOIN predictions p ON p.item_id = i.item_id "
        "WHERE i.project = %s AND i.state = 'accepted' AND i.gold_answer IS NULL "
        "AND i.method IS DISTINCT FROM %s",  # the model does not audit its own labels
        (project, MODEL_AUTO_ACCEPT),
    ).fetchall()


def flags_to_act_on(conn: Conn, project: str) -> list[tuple[str, str, str, str, float, str]]:
    """Memorization flags on accepted items not yet sent to review on their version's
    evidence: (item, label, model version, reason, score, run)."""
    return conn.execute(
        "SELECT f.item_id, f.label_id, f.model_version, f.reason, f.score, f.run_id "
        "FROM memorization_flags f JOIN items i ON i.item_id = f.item_id "
        "WHERE f.project = %s AND i.state = 'accepted' AND NOT EXISTS ("
        "  SELECT 1 FROM reviews r WHERE r.item_id = f.item_id AND r.kind = 'relabel' "
        "  AND (r.model_version = f.model_version OR r.resolved_at IS NULL)) "
        "ORDER BY f.score DESC, f.item_id",
        (project,),
    ).fetchall()


def gold_predictions(conn: Conn, project: str, model_version: str) -> list[tuple[str, str]]:
    """(gold answer, predicted class) for the project's gold items this version scored."""
    rows = conn.execute(
        "SELECT i.gold_answer, p.classes, p.probabilities FROM items i "
        "JOIN predictions p ON p.item_id = i.item_id "
        "WHERE i.project = %s AND i.gold_answer IS NOT NULL AND p.model_version = %s",
        (project, model_version),
    ).fetchall()
    return [
        (answer, classes[max(range(len(probs)), key=probs.__getitem__)])
        for answer, classes, probs in rows
        if classes and len(classes) == len(probs)
    ]


# -- reports and export -------------------------------------------------------------------


def gauge_data(conn: Conn, contract: common_pb2.LabelingContract, recent_votes: int) -> ProjectData:
    """What the metric gauges need, bounded whatever the project's size: its newest
    `recent_votes` human votes (agreement now), and each annotator's gold record. The
    rest of ProjectData is left empty (the report reads `project_data`)."""
    project = contract.project
    votes = conn.execute(
        "SELECT item_id, annotator_id, value, extract(epoch FROM submitted_at)::float8 "
        "FROM votes WHERE project = %s AND source = 'human' "
        "ORDER BY submitted_at DESC, label_id DESC LIMIT %s",
        (project, recent_votes),
    ).fetchall()[::-1]
    annotators = conn.execute(
        "SELECT annotator_id, gold_answered, gold_correct FROM annotators "
        "WHERE project = %s AND gold_answered > 0",
        (project,),
    ).fetchall()
    return ProjectData(
        project=project,
        classes=[c.name for c in contract.classes],
        agreement_metric=contract.agreement.metric or "krippendorff_alpha",
        agreement_threshold=contract.agreement.threshold,
        gold_threshold=contract.gold_accuracy_threshold,
        vote_item=[v[0] for v in votes],
        vote_annotator=[v[1] for v in votes],
        vote_value=[v[2] for v in votes],
        vote_time=[float(v[3]) for v in votes],
        vote_duration_ms=[0] * len(votes),
        vote_gold_answer=[None] * len(votes),
        item_state={},
        item_value={},
        gold={a[0]: (a[1], a[2]) for a in annotators},
        status={},
        confusions={},
        class_priors=None,
        open_reviews={},
        review_items=[],
        predictions=0,
        model_labels=0,
        spot_checks=[],
        anchoring={},
    )


def project_data(conn: Conn, contract: common_pb2.LabelingContract) -> ProjectData:
    """Everything the dataset report is computed from."""
    project = contract.project
    votes = conn.execute(
        "SELECT item_id, annotator_id, value, extract(epoch FROM submitted_at)::float8, "
        "duration_ms, gold_answer FROM votes WHERE project = %s AND source = 'human' "
        "ORDER BY submitted_at, label_id",
        (project,),
    ).fetchall()
    items = conn.execute(
        "SELECT item_id, state, value FROM items WHERE project = %s AND gold_answer IS NULL",
        (project,),
    ).fetchall()
    annotators = conn.execute(
        "SELECT annotator_id, gold_answered, gold_correct, status, wrong_prelabels_followed, "
        "wrong_prelabels_shown FROM annotators WHERE project = %s",
        (project,),
    ).fetchall()
    reviews = conn.execute(
        "SELECT kind, item_id FROM reviews WHERE project = %s AND resolved_at IS NULL "
        "ORDER BY opened_at",
        (project,),
    ).fetchall()
    predictions = conn.execute(
        "SELECT count(*) FROM predictions WHERE project = %s", (project,)
    ).fetchone()
    model_labels = conn.execute(
        "SELECT count(*) FROM items WHERE project = %s AND state = 'accepted' AND method = %s",
        (project, MODEL_AUTO_ACCEPT),
    ).fetchone()
    spot_checks = conn.execute(
        "SELECT p.predicted_class, i.value FROM predictions p JOIN items i USING (item_id) "
        "WHERE p.project = %s AND p.routed = 'spot_check' AND i.state IN ('accepted', 'expert') "
        "AND i.method IS DISTINCT FROM %s AND p.predicted_class IS NOT NULL",
        (project, MODEL_AUTO_ACCEPT),
    ).fetchall()
    estimate = load_estimate(conn, project)
    classes = [c.name for c in contract.classes]
    usable = estimate is not None and estimate.classes == classes
    open_reviews: dict[str, int] = {}
    for kind, _ in reviews:
        open_reviews[kind] = open_reviews.get(kind, 0) + 1
    return ProjectData(
        project=project,
        classes=classes,
        agreement_metric=contract.agreement.metric or "krippendorff_alpha",
        agreement_threshold=contract.agreement.threshold,
        gold_threshold=contract.gold_accuracy_threshold,
        vote_item=[v[0] for v in votes],
        vote_annotator=[v[1] for v in votes],
        vote_value=[v[2] for v in votes],
        vote_time=[float(v[3]) for v in votes],
        vote_duration_ms=[int(v[4]) for v in votes],
        vote_gold_answer=[v[5] for v in votes],
        item_state={i[0]: i[1] for i in items},
        item_value={i[0]: i[2] for i in items},
        gold={a[0]: (a[1], a[2]) for a in annotators if a[1]},
        status={a[0]: a[3] for a in annotators},
        confusions=estimate.confusions if estimate is not None and usable else {},
        class_priors=estimate.class_priors if estimate is not None and usable else None,
        open_reviews=open_reviews,
        review_items=[r[1] for r in reviews],
        predictions=int(predictions[0]) if predictions else 0,
        model_labels=int(model_labels[0]) if model_labels else 0,
        spot_checks=[(str(r[0]), str(r[1])) for r in spot_checks],
        anchoring={a[0]: (a[4], a[5]) for a in annotators if a[5]},
    )


@dataclass(frozen=True)
class ExportVote:
    label_id: str
    annotator_id: str
    value: str
    source: str
    submitted_at: datetime
    duration_ms: int
    active_ms: int = 0
    prelabel_value: str | None = None
    prelabel_confidence: float | None = None
    prelabel_model: str | None = None


@dataclass(frozen=True)
class Decided:
    item_id: str
    consensus: bytes
    decided_at: datetime
    votes: list[ExportVote]
    external_id: str = ""
    content: bytes | None = None
    metadata: dict[str, str] | None = None


def decided_items(conn: Conn, project: str, after: str, limit: int) -> list[Decided]:
    """Accepted and expert-decided items after item id `after`, with their votes and what
    the item is (content, external id, metadata) when quality saw it imported."""
    rows = conn.execute(
        "SELECT i.item_id, i.consensus, i.decided_at, coalesce(array_agg(ARRAY[v.label_id, "
        "v.annotator_id, v.value, v.source, extract(epoch FROM v.submitted_at)::text, "
        "v.duration_ms::text, v.active_ms::text, v.prelabel_value, "
        "v.prelabel_confidence::text, v.prelabel_model] "
        "ORDER BY v.submitted_at, v.label_id) FILTER (WHERE v.label_id IS NOT NULL), '{}'), "
        "d.external_id, d.content, d.metadata "
        # `item_id > after` on the joined tables too: Postgres does not carry it over the
        # join, so their merge-join scans would start at the first item, every page.
        "FROM items i LEFT JOIN votes v ON v.item_id = i.item_id AND v.item_id > %(after)s "
        "LEFT JOIN item_data d ON d.item_id = i.item_id AND d.item_id > %(after)s "
        "WHERE i.project = %(project)s AND i.state IN ('accepted', 'expert') "
        "AND i.gold_answer IS NULL AND i.consensus IS NOT NULL AND i.item_id > %(after)s "
        "GROUP BY i.item_id, d.item_id ORDER BY i.item_id LIMIT %(limit)s",
        {"project": project, "after": after, "limit": limit},
    ).fetchall()
    return [
        Decided(
            r[0],
            bytes(r[1]),
            r[2],
            [
                ExportVote(
                    v[0],
                    v[1],
                    v[2],
                    v[3],
                    datetime.fromtimestamp(float(v[4]), UTC),
                    int(v[5]),
                    int(v[6]),
                    v[7],
                    float(v[8]) if v[8] is not None else None,
                    v[9],
                )
                for v in r[3]
            ],
            r[4] or "",
            bytes(r[5]) if r[5] is not None else None,
            r[6],
        )
        for r in rows
    ]
