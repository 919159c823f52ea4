"""The gateway's SQL. Every function runs inside the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from strata.common import outbox
from strata.common.events import OutgoingEvent
from strata.common.topics import ANNOTATORS_STATUS, CONTRACTS
from strata.gateway.contract import contract_digest
from strata.gateway.policy import Candidate, ShownProfile, TaskSnapshot
from strata.v1 import common_pb2, events_pb2

Conn = psycopg.Connection[Any]


class ContractConflict(Exception):
    """The version is already loaded with different content."""


# -- contracts ---------------------------------------------------------------


def save_contract(
    conn: Conn, contract: common_pb2.LabelingContract, document: str, actor: str
) -> bool:
    """Store a new version; False when the same content was already loaded."""
    digest = contract_digest(contract)
    row = conn.execute(
        "SELECT digest FROM contracts WHERE project = %s AND version = %s",
        (contract.project, contract.version),
    ).fetchone()
    if row is not None:
        if row[0] == digest:
            return False
        raise ContractConflict(
            f"version {contract.version!r} of project {contract.project!r} is already "
            "loaded with different content; versions never change, so load this one "
            "under a new version"
        )
    loaded_at = conn.execute(
        "INSERT INTO contracts (project, version, document, contract, digest, loaded_by) "
        "VALUES (%s, %s, %s, %s, %s, %s) RETURNING loaded_at",
        (contract.project, contract.version, document, contract.SerializeToString(), digest, actor),
    ).fetchone()
    assert loaded_at is not None
    # Every service that applies the contract learns of the new version from this event.
    event = events_pb2.ContractLoaded(
        routing=common_pb2.RoutingMetadata(
            source_service="gateway",
            project=contract.project,
            ontology_version=contract.version,
            trace_id=uuid.uuid4().hex,
        ),
        contract=contract,
        loaded_by=actor,
    )
    event.contract.loaded_at.FromDatetime(loaded_at[0])
    outbox.publish(conn, CONTRACTS.name, contract.project, event)
    return True


def _contract_from_row(row: Sequence[Any]) -> common_pb2.LabelingContract:
    contract = common_pb2.LabelingContract.FromString(bytes(row[0]))
    contract.loaded_at.FromDatetime(row[1])
    return contract


def load_contract(
    conn: Conn, project: str, version: str | None = None
) -> common_pb2.LabelingContract | None:
    """A contract version, or the project's latest when `version` is None."""
    if version:
        row = conn.execute(
            "SELECT contract, loaded_at FROM contracts WHERE project = %s AND version = %s",
            (project, version),
        ).fetchone()
    else:
        row = conn.execute(
            "SELECT contract, loaded_at FROM contracts WHERE project = %s "
            "ORDER BY loaded_at DESC, version DESC LIMIT 1",
            (project,),
        ).fetchone()
    return _contract_from_row(row) if row else None


def projects(conn: Conn) -> list[str]:
    """Projects that have a contract."""
    return [r[0] for r in conn.execute("SELECT DISTINCT project FROM contracts ORDER BY 1")]


# -- leases --------------------------------------------------------------------


def release_leases(conn: Conn, annotator_id: str, project: str) -> int:
    """Return every task of `project` that `annotator_id` holds to the queue."""
    rows = conn.execute(
        "UPDATE tasks SET state = 'released', finished_at = now() "
        "WHERE annotator_id = %s AND project = %s AND state = 'leased' RETURNING unit_id, kind",
        (annotator_id, project),
    ).fetchall()
    _return_slots(conn, [r[0] for r in rows if r[1] != "gold"])
    return len(rows)


def _lock_units(conn: Conn, unit_ids: list[int]) -> None:
    # In id order, so transactions touching several units never deadlock; NO KEY
    # UPDATE so new tasks (a foreign key to the unit) are not blocked meanwhile.
    conn.execute(
        "SELECT 1 FROM units WHERE unit_id = ANY(%s) ORDER BY unit_id FOR NO KEY UPDATE",
        (unit_ids,),
    )


def _return_slots(conn: Conn, unit_ids: Iterable[int]) -> None:
    counts: dict[int, int] = {}
    for unit_id in unit_ids:
        counts[unit_id] = counts.get(unit_id, 0) + 1
    if not counts:
        return
    ids = sorted(counts)
    _lock_units(conn, ids)
    conn.execute(
        "UPDATE units u SET slots_open = u.slots_open + c.n, updated_at = now() "
        "FROM unnest(%s::bigint[], %s::int[]) AS c(unit_id, n) "
        "WHERE u.unit_id = c.unit_id AND u.state = 'open'",
        (ids, [counts[i] for i in ids]),
    )


# -- items and units -----------------------------------------------------------


def add_pool_items(
    conn: Conn,
    project: str,
    items: Sequence[tuple[str, bytes, bytes, int]],
    overlap: int,
) -> int:
    """Queue sampler items (item_id, content, routing, reason) in the order given.

    An item already queued is left alone, unless the sampler sends it back for
    relabeling: then its unit reopens for `overlap` more annotators. Three statements
    whatever the batch's size (a refill under demand brings hundreds of items, and a
    statement each would have the refill wait on the round trips).
    """
    if not items:
        return 0
    ids = [i[0] for i in items]
    conn.execute(
        "INSERT INTO items (item_id, project, content) "
        "SELECT u.i, %s, u.c FROM unnest(%s::text[], %s::bytea[]) AS u(i, c) "
        "ON CONFLICT (item_id) DO NOTHING",
        (project, ids, [i[1] for i in items]),
    )
    # In the given order, so the units' seq (the hand-out order) is the sampler's ranking.
    queued = {
        r[0]
        for r in conn.execute(
            "INSERT INTO units (item_id, project, kind, target, slots_open, routing) "
            "SELECT u.i, %s, 'label', %s, %s, u.r "
            "FROM unnest(%s::text[], %s::bytea[]) WITH ORDINALITY AS u(i, r, n) "
            "ORDER BY u.n ON CONFLICT DO NOTHING RETURNING item_id",
            (project, overlap, overlap, ids, [i[2] for i in items]),
        ).fetchall()
    }
    relabel = [
        (item_id, routing)
        for item_id, _, routing, reason in items
        if item_id not in queued and reason == common_pb2.ROUTING_REASON_RELABEL
    ]
    reopened = 0
    if relabel:
        reopened = conn.execute(
            "UPDATE units SET state = 'open', target = target + %s, "
            "slots_open = slots_open + %s, routing = u.r, updated_at = now(), "
            "seq = nextval(pg_get_serial_sequence('units', 'seq')) "
            "FROM unnest(%s::text[], %s::bytea[]) AS u(i, r) "
            "WHERE units.item_id = u.i AND units.kind = 'label' AND units.state <> 'open'",
            (overlap, overlap, [r[0] for r in relabel], [r[1] for r in relabel]),
        ).rowcount
    return len(queued) + reopened


def add_gold_item(
    conn: Conn, project: str, item_id: str, content: bytes, answer: str, routing: bytes
) -> bool:
    conn.execute(
        "INSERT INTO items (item_id, project, content, gold_answer) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (item_id) DO UPDATE SET gold_answer = EXCLUDED.gold_answer",
        (item_id, project, content, answer),
    )
    cur = conn.execute(
        "INSERT INTO units (item_id, project, kind, target, slots_open, routing) "
        "VALUES (%s, %s, 'gold', 0, 0, %s) ON CONFLICT DO NOTHING",
        (item_id, project, routing),
    )
    return cur.rowcount > 0


def open_slots(conn: Conn, project: str) -> int:
    """Label slots not yet leased: the ready queue depth."""
    row = conn.execute(
        "SELECT coalesce(sum(slots_open), 0) FROM units "
        "WHERE project = %s AND kind = 'label' AND state = 'open' AND slots_open > 0",
        (project,),
    ).fetchone()
    return int(row[0]) if row else 0


def label_demand(conn: Conn, project: str, window_s: float) -> tuple[int, float]:
    """Label tasks handed out over the last `window_s` seconds by every replica, and how
    long ago the oldest of them was, in seconds (the tasks_recent_pool index: reads the
    window's tasks, not the project's)."""
    row = conn.execute(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(leased_at)), 0) "
        "FROM tasks WHERE project = %s AND kind = 'label' "
        "AND leased_at > now() - make_interval(secs => %s)",
        (project, window_s),
    ).fetchone()
    return (int(row[0]), float(row[1])) if row else (0, 0.0)


_NOT_SEEN = "NOT EXISTS (SELECT 1 FROM tasks t WHERE t.item_id = u.item_id AND t.annotator_id = %s)"


def tasks_taken(conn: Conn, project: str, annotator_id: str, limit: int) -> int:
    """Tasks of `project` the annotator has been given so far, counted up to `limit`."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM tasks WHERE annotator_id = %s AND project = %s "
        "LIMIT %s) t",
        (annotator_id, project, limit),
    ).fetchone()
    return int(row[0]) if row else 0


def publish_status(
    conn: Conn,
    project: str,
    annotator_id: str,
    status: int,
    reason: str,
    by: str,
) -> None:
    """A person set `annotator_id`'s standing in `project`: tell the services that keep
    their own view of it (quality). The gateway, which applied it already, skips it."""
    outbox.publish(
        conn,
        ANNOTATORS_STATUS.name,
        annotator_id,
        events_pb2.AnnotatorStatusChanged(
            routing=common_pb2.RoutingMetadata(
                trace_id=uuid.uuid4().hex, source_service="gateway", project=project
            ),
            annotator_id=annotator_id,
            project=project,
            status=status,  # type: ignore[arg-type]
            reason=f"set by {by}: {reason}" if reason else f"set by {by}",
        ),
    )


def find_candidates(
    conn: Conn, project: str, annotator_id: str, reviews: bool
) -> tuple[Candidate | None, Candidate | None, Candidate | None]:
    """(regular, gold, review) candidates; regular and review rows are locked.

    The same queries run whichever is chosen, so gold costs no extra time.
    """
    row = conn.execute(
        "SELECT u.unit_id, u.item_id FROM units u WHERE u.project = %s AND u.kind = 'label' "
        f"AND u.state = 'open' AND u.slots_open > 0 AND {_NOT_SEEN} "
        "ORDER BY u.seq LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED",
        (project, annotator_id),
    ).fetchone()
    regular = Candidate(row[0], row[1], "label") if row else None
    row = conn.execute(
        "SELECT u.unit_id, u.item_id FROM units u WHERE u.project = %s AND u.kind = 'gold' "
        f"AND {_NOT_SEEN} ORDER BY random() LIMIT 1",
        (project, annotator_id),
    ).fetchone()
    gold = Candidate(row[0], row[1], "gold") if row else None
    review = None
    if reviews:
        row = conn.execute(
            "SELECT u.unit_id, u.item_id FROM units u WHERE u.project = %s "
            "AND u.kind = 'review' AND u.state = 'open' AND u.slots_open > 0 "
            f"AND {_NOT_SEEN} ORDER BY u.seq LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED",
            (project, annotator_id),
        ).fetchone()
        review = Candidate(row[0], row[1], "review") if row else None
    return regular, gold, review


@dataclass(frozen=True)
class LeasedTask:
    task_id: str
    item_id: str
    content: bytes
    prelabel: common_pb2.PreLabel | None
    lease_expires_at: datetime
    honeypot: bool = False


@dataclass(frozen=True)
class ItemPrelabel:
    """What the gateway knows as it leases an item: its gold answer, the model's newest
    prediction of it, and what the pool task it may take the place of would show."""

    gold_answer: str | None
    prelabel: common_pb2.PreLabel | None
    runner_up: str | None
    replaced: common_pb2.PreLabel | None


# Decides the pre-label a task shows, and whether it is a honeypot.
ShowPrelabel = Callable[[Candidate, ItemPrelabel], tuple[common_pb2.PreLabel | None, bool]]


def _prelabel(row: Sequence[Any] | None) -> common_pb2.PreLabel | None:
    if row is None or row[0] is None:
        return None
    return common_pb2.PreLabel(
        value=row[0], confidence=row[1], model_version=row[2], calibrated=row[3]
    )


def lease(
    conn: Conn,
    candidate: Candidate,
    regular: Candidate | None,
    project: str,
    annotator_id: str,
    ontology_version: str,
    lease_seconds: int,
    show: ShowPrelabel,
) -> LeasedTask:
    """Lease `candidate` (in place of `regular`, the pool task it may replace); records
    the pre-label shown, if any. Gold and pool tasks run the same statements, so neither
    is quicker to serve."""
    row = conn.execute(
        "SELECT i.content, p.value, p.confidence, p.model_version, p.calibrated, "
        "i.gold_answer, p.runner_up "
        "FROM items i LEFT JOIN prelabels p USING (item_id) WHERE i.item_id = %s",
        (candidate.item_id,),
    ).fetchone()
    assert row is not None, "a unit always has its item"
    replaced = conn.execute(
        "SELECT value, confidence, model_version, calibrated FROM prelabels WHERE item_id = %s",
        ((regular or candidate).item_id,),
    ).fetchone()
    item = ItemPrelabel(row[5], _prelabel(row[1:5]), row[6], _prelabel(replaced))
    prelabel, honeypot = show(candidate, item)
    task_id = uuid.uuid4()
    expires = conn.execute(
        "INSERT INTO tasks (task_id, unit_id, item_id, project, annotator_id, kind, "
        "ontology_version, lease_expires_at, shown_prelabel, honeypot) VALUES "
        "(%s, %s, %s, %s, %s, %s, %s, now() + make_interval(secs => %s), %s, %s) "
        "RETURNING lease_expires_at",
        (
            task_id,
            candidate.unit_id,
            candidate.item_id,
            project,
            annotator_id,
            candidate.kind,
            ontology_version,
            lease_seconds,
            prelabel.SerializeToString() if prelabel else None,
            honeypot,
        ),
    ).fetchone()
    assert expires is not None
    # A gold unit has no slots: the same statement leaves it alone (without locking it,
    # which would let a NextTask and a submission wait on each other).
    conn.execute(
        "UPDATE units SET slots_open = slots_open - 1, updated_at = now() "
        "WHERE unit_id = %s AND kind <> 'gold'",
        (candidate.unit_id,),
    )
    return LeasedTask(
        str(task_id), candidate.item_id, bytes(row[0]), prelabel, expires[0], honeypot
    )


def decided_profiles(conn: Conn, project: str, limit: int) -> list[ShownProfile]:
    """The pre-labels the project's newest decided pool tasks showed, each with whether it
    matched its item's decision: how often pool pre-labels are right."""
    rows = conn.execute(
        "SELECT t.shown_prelabel, u.decided_value FROM tasks t JOIN units u USING (unit_id) "
        "WHERE t.project = %s AND t.kind = 'label' AND t.shown_prelabel IS NOT NULL "
        "AND u.decided_value IS NOT NULL ORDER BY t.leased_at DESC LIMIT %s",
        (project, limit),
    ).fetchall()
    out = []
    for shown, decided in rows:
        p = common_pb2.PreLabel.FromString(bytes(shown))
        out.append(ShownProfile(p.confidence, p.value == decided))
    return out


def expire_leases(conn: Conn, limit: int = 1000) -> list[str]:
    """Return expired leases to the queue; the projects of the expired tasks."""
    rows = conn.execute(
        "UPDATE tasks SET state = 'expired', finished_at = now() WHERE task_id IN ("
        "SELECT task_id FROM tasks WHERE state = 'leased' AND lease_expires_at < now() "
        "ORDER BY lease_expires_at LIMIT %s FOR NO KEY UPDATE SKIP LOCKED) "
        "RETURNING unit_id, kind, project",
        (limit,),
    ).fetchall()
    _return_slots(conn, [r[0] for r in rows if r[1] != "gold"])
    return [r[2] for r in rows]


def skip_task(conn: Conn, task_id: str, annotator_id: str, reason: str) -> tuple[str, str] | None:
    """Skip a leased task; None when it is not this annotator's, else (previous state, project)."""
    row = conn.execute(
        "SELECT state, unit_id, kind, project FROM tasks WHERE task_id = %s AND annotator_id = %s "
        "FOR NO KEY UPDATE",
        (task_id, annotator_id),
    ).fetchone()
    if row is None:
        return None
    state, unit_id, kind, project = row
    if state == "leased":
        conn.execute(
            "UPDATE tasks SET state = 'skipped', skip_reason = %s, finished_at = now() "
            "WHERE task_id = %s",
            (reason[:500], task_id),
        )
        if kind != "gold":
            _return_slots(conn, [unit_id])
    return str(state), str(project)


# -- submissions -----------------------------------------------------------------


@dataclass(frozen=True)
class TaskContext:
    """A locked task with what its label event needs."""

    snapshot: TaskSnapshot
    unit_id: int
    item_id: str
    project: str
    routing: bytes
    gold_answer: str | None
    shown_prelabel: bytes | None
    honeypot: bool = False


_LOCK_TASKS = (
    "SELECT t.task_id, t.annotator_id, t.state, t.kind, t.lease_expires_at, "
    "t.ontology_version, u.state, u.slots_open, t.unit_id, t.item_id, t.project, "
    "u.routing, i.gold_answer, t.shown_prelabel, t.honeypot "
    "FROM tasks t JOIN units u USING (unit_id) JOIN items i ON i.item_id = t.item_id "
    "WHERE t.task_id = ANY(%s::uuid[]) ORDER BY t.task_id FOR NO KEY UPDATE OF t"
)
_EXISTING_LABELS = (
    "SELECT l.annotator_id, l.client_label_id, l.label_id, l.task_id FROM labels l "
    "JOIN unnest(%s::text[], %s::text[]) AS k(a, c) "
    "ON l.annotator_id = k.a AND l.client_label_id = k.c"
)


@dataclass(frozen=True)
class SubmitView:
    """What a batch of submissions is decided on, read in one round trip."""

    now: datetime
    tasks: dict[str, TaskContext]
    # (annotator_id, client_label_id) -> (label_id, task_id) for keys already used.
    existing: dict[tuple[str, str], tuple[str, str]]


def read_for_submit(
    conn: Conn, task_ids: Sequence[str], keys: Sequence[tuple[str, str]]
) -> SubmitView:
    """Lock the batch's tasks (in id order, so batches never deadlock) and find used keys."""
    with conn.pipeline():
        now_cur = conn.execute("SELECT now()")
        existing_cur = conn.execute(_EXISTING_LABELS, ([k[0] for k in keys], [k[1] for k in keys]))
        tasks_cur = conn.execute(_LOCK_TASKS, (list(task_ids),))
    now_row = now_cur.fetchone()
    assert now_row is not None
    tasks = {}
    for r in tasks_cur.fetchall():
        snap = TaskSnapshot(str(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[10])
        tasks[str(r[0])] = TaskContext(
            snap,
            r[8],
            r[9],
            r[10],
            bytes(r[11]),
            r[12],
            bytes(r[13]) if r[13] is not None else None,
            bool(r[14]),
        )
    existing = {(r[0], r[1]): (str(r[2]), str(r[3])) for r in existing_cur.fetchall()}
    return SubmitView(now_row[0], tasks, existing)


@dataclass(frozen=True)
class NewLabel:
    label_id: str
    task_id: str
    item_id: str
    project: str
    annotator_id: str
    client_label_id: str
    value: str
    ontology_version: str
    duration_ms: int
    source: common_pb2.LabelSource
    gold: bool
    unit_id: int
    reclaim_slot: bool
    active_ms: int = 0


def insert_labels(conn: Conn, labels: Sequence[NewLabel], events: Sequence[OutgoingEvent]) -> None:
    """Write labels and their events, close their tasks, count them on their units.

    Nothing is fetched, so in pipeline mode it all travels with the COMMIT. The
    units are locked in id order first (deadlock-free).
    """
    per_unit: dict[int, list[int]] = {}
    for lab in labels:
        entry = per_unit.setdefault(lab.unit_id, [0, 0])
        entry[0] += 1
        entry[1] += 1 if lab.reclaim_slot else 0
    ids = sorted(per_unit)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO labels (label_id, task_id, item_id, project, annotator_id, "
            "client_label_id, value, ontology_version, duration_ms, source, gold, active_ms) "
            "SELECT * FROM unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::text[], "
            "%s::text[], %s::text[], %s::text[], %s::bigint[], %s::int[], %s::bool[], "
            "%s::bigint[])",
            (
                [lab.label_id for lab in labels],
                [lab.task_id for lab in labels],
                [lab.item_id for lab in labels],
                [lab.project for lab in labels],
                [lab.annotator_id for lab in labels],
                [lab.client_label_id for lab in labels],
                [lab.value for lab in labels],
                [lab.ontology_version for lab in labels],
                [lab.duration_ms for lab in labels],
                [int(lab.source) for lab in labels],
                [lab.gold for lab in labels],
                [lab.active_ms for lab in labels],
            ),
        )
        cur.execute(
            "UPDATE tasks SET state = 'labeled', finished_at = now() "
            "WHERE task_id = ANY(%s::uuid[])",
            ([lab.task_id for lab in labels],),
        )
        cur.execute(
            "WITH locked AS (SELECT unit_id FROM units WHERE unit_id = ANY(%s) "
            "ORDER BY unit_id FOR NO KEY UPDATE) "
            "UPDATE units u SET labels = u.labels + c.n, slots_open = u.slots_open - c.reclaimed, "
            "updated_at = now() "
            "FROM unnest(%s::bigint[], %s::int[], %s::int[]) AS c(unit_id, n, reclaimed) "
            "JOIN locked USING (unit_id) WHERE u.unit_id = c.unit_id",
            (ids, ids, [per_unit[i][0] for i in ids], [per_unit[i][1] for i in ids]),
        )
        outbox.enqueue_many(conn, list(events))
