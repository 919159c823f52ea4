"""Changing an answer already given, while its task's lease holds (AmendLabel).

The label keeps its id; its value is replaced and `revision` counts the changes. The
change travels on `labels.submitted` keyed, like the label, by its item, so quality
always sees it after the label it changes, and replaces that vote instead of adding
one. A change is decided by `check_amendment` (pure) and written by `amend` in one
transaction with its event (outbox).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import grpc

from strata.common.outbox import enqueue_many
from strata.gateway import store
from strata.gateway.policy import Principal, Reject, refuse_stranger, unknown_class
from strata.gateway.submit import label_event
from strata.v1 import common_pb2


@dataclass(frozen=True)
class LabelRow:
    """A task's label as locked for a change."""

    label_id: str
    value: str
    revision: int
    client_label_id: str
    duration_ms: int
    active_ms: int
    source: int
    gold: bool


@dataclass(frozen=True)
class Change:
    """An accepted request: `duplicate` when it repeats the change that made the label
    what it is; `unchanged` when it asks for the value the label already has."""

    duplicate: bool = False
    unchanged: bool = False


def check_amendment(
    task: store.TaskContext | None,
    label: LabelRow | None,
    principal: Principal,
    value: str,
    revision: int,
    classes: list[str],
    now: datetime,
    *,
    task_id: str,
) -> Change | Reject:
    """May `principal` change their answer on `task` to `value` now?

    Gold and pool tasks are treated alike (gold stays indistinguishable); a review
    task's answer is the decision itself and is changed only by another review.
    """
    snap = task.snapshot if task is not None else None
    refused = refuse_stranger(snap, principal, task_id)
    if refused is not None:
        return refused
    assert snap is not None
    if label is None:
        return Reject(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"task {task_id} has no answer of yours to change; submit one first",
        )
    if snap.kind == "review":
        return Reject(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"task {task_id} was a review, and its answer decided the item; "
            "open the item's review again to change it",
        )
    if revision == label.revision - 1 and value == label.value:
        return Change(duplicate=True)
    if revision != label.revision:
        return Reject(
            grpc.StatusCode.ABORTED,
            f"your answer on task {task_id} is at revision {label.revision}, not {revision}: "
            "it was changed since; reload it and change it again",
        )
    if value not in classes:
        return unknown_class(value, classes, snap.ontology_version)
    if snap.lease_expires_at <= now:
        return Reject(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"the lease on task {task_id} ran out at {snap.lease_expires_at.isoformat()}; "
            "an answer can be changed only while its task's lease holds",
        )
    if value == label.value:
        return Change(unchanged=True)
    return Change()


_LOCK_LABEL = (
    "SELECT label_id, value, revision, client_label_id, duration_ms, active_ms, source, gold "
    "FROM labels WHERE task_id = %s FOR NO KEY UPDATE"
)


@dataclass(frozen=True)
class Amended:
    label_id: str
    revision: int
    duplicate: bool
    project: str


def read_for_amend(
    conn: store.Conn, task_id: str
) -> tuple[datetime, store.TaskContext | None, LabelRow | None]:
    """The task (locked, with what its event needs) and its label (locked)."""
    view = store.read_for_submit(conn, [task_id], [])
    row = conn.execute(_LOCK_LABEL, (task_id,)).fetchone()
    label = LabelRow(str(row[0]), *row[1:]) if row is not None else None
    return view.now, view.tasks.get(task_id), label


def amend(
    conn: store.Conn,
    ctx: store.TaskContext,
    label: LabelRow,
    principal: Principal,
    value: str,
    active_ms: int,
    now: datetime,
) -> int:
    """Replace the label's value and queue its change event; the new revision."""
    revision = label.revision + 1
    conn.execute(
        "UPDATE labels SET value = %s, revision = %s, amended_at = now(), "
        "active_ms = CASE WHEN %s > 0 THEN %s ELSE active_ms END WHERE label_id = %s",
        (value, revision, active_ms, active_ms, label.label_id),
    )
    changed = store.NewLabel(
        label_id=label.label_id,
        task_id=ctx.snapshot.task_id,
        item_id=ctx.item_id,
        project=ctx.project,
        annotator_id=principal.annotator_id,
        client_label_id=label.client_label_id,
        value=value,
        ontology_version=ctx.snapshot.ontology_version,
        duration_ms=label.duration_ms,
        source=common_pb2.LabelSource.ValueType(label.source),
        gold=label.gold,
        unit_id=ctx.unit_id,
        reclaim_slot=False,
        active_ms=active_ms or label.active_ms,
    )
    enqueue_many(conn, [label_event(ctx, changed, now, revision)])
    return revision
