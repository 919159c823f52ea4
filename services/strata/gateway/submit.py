"""Durable label submission with group commit.

Concurrent `SubmitLabel` calls are queued and committed together: one
transaction locks the batch's tasks, decides each label with the pure policy,
writes the accepted labels and their `labels.submitted` events (outbox), and
commits once. A call returns only after its label is durable. A rejected label
writes nothing; it never fails the others in its batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
import psycopg

from strata.common.consumer import INFRA_ERRORS
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.events import OutgoingEvent, make_event
from strata.common.topics import LABELS_SUBMITTED
from strata.gateway import store
from strata.gateway.contract import class_names
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.policy import Accept, Principal, Reject, TaskSnapshot, check_submission
from strata.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A submission refused with a gRPC status code and a message a person can act on."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Submission:
    principal: Principal
    task_id: str
    value: str
    duration_ms: int
    client_label_id: str
    active_ms: int = 0


@dataclass(frozen=True)
class Submitted:
    label_id: str
    duplicate: bool
    project: str


@dataclass
class _Pending:
    submission: Submission
    future: Future[Submitted] = field(default_factory=Future)


SOURCE_BY_KIND = {"review": common_pb2.LABEL_SOURCE_EXPERT}
REASON_BY_KIND = {
    "gold": common_pb2.ROUTING_REASON_GOLD,
    "review": common_pb2.ROUTING_REASON_REVIEW,
}


def label_event(
    ctx: store.TaskContext, label: store.NewLabel, submitted_at: Any, revision: int = 0
) -> OutgoingEvent:
    """The `labels.submitted` event of an accepted label (revision n: its n-th change)."""
    routing = common_pb2.RoutingMetadata.FromString(ctx.routing)
    routing.source_service = "gateway"
    routing.project = label.project
    routing.ontology_version = label.ontology_version
    if ctx.snapshot.kind in REASON_BY_KIND:
        routing.reason = REASON_BY_KIND[ctx.snapshot.kind]
    if not routing.trace_id:
        routing.trace_id = uuid.uuid4().hex
    message = events_pb2.LabelSubmitted(
        routing=routing,
        label=common_pb2.Label(
            label_id=label.label_id,
            task_id=label.task_id,
            item_id=label.item_id,
            annotator_id=label.annotator_id,
            value=label.value,
            ontology_version=label.ontology_version,
            duration_ms=label.duration_ms,
            active_ms=label.active_ms,
            source=label.source,
            project=label.project,
        ),
        gold=label.gold,
        gold_answer=ctx.gold_answer or "",
        prelabel_honeypot=ctx.honeypot,
        revision=revision,
    )
    message.label.submitted_at.FromDatetime(submitted_at)
    if ctx.shown_prelabel:
        message.label.shown_prelabel.ParseFromString(ctx.shown_prelabel)
    return make_event(LABELS_SUBMITTED, label.item_id, message, trace_id=routing.trace_id)


def _conflict() -> Rejected:
    return Rejected(
        grpc.StatusCode.ABORTED,
        "a concurrent change to this task won; retry with the same client_label_id",
    )


class SubmitBatcher:
    """Queues submissions and commits them in batches from `writers` threads."""

    def __init__(
        self,
        db: Database,
        contracts: ContractCache,
        metrics: GatewayMetrics,
        *,
        max_batch: int = 128,
        timeout_s: float = 30.0,
    ) -> None:
        self.db = db
        self.contracts = contracts
        self.metrics = metrics
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._local = threading.local()

    def submit(self, submission: Submission) -> Submitted:
        """Block until the label is durable; raises Rejected."""
        pending = _Pending(submission)
        self._queue.put(pending)
        try:
            return pending.future.result(timeout=self.timeout_s)
        except TimeoutError:
            raise Rejected(
                grpc.StatusCode.UNAVAILABLE,
                "the label could not be committed in time; retry with the same client_label_id",
            ) from None

    def run(self, stop: threading.Event) -> None:
        """A writer loop: take what is queued (up to max_batch), commit it, repeat."""
        self._local.conn = self.db.dedicated()
        try:
            self._write_until(stop)
        finally:
            self._local.conn.close()

    def _write_until(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Pending], attempts: int = 3) -> None:
        try:
            self._commit_once(batch)
            self.metrics.submit_batch_size.observe(len(batch))
            return
        except psycopg.errors.TransactionRollback as exc:
            # Deadlock or serialization failure: nothing was written; run it again.
            if attempts > 1:
                log.info("label batch of %d rolled back (%s); retrying", len(batch), exc)
                self._commit(batch, attempts - 1)
                return
            log.warning("label batch of %d kept rolling back: %s", len(batch), exc)
            if len(batch) == 1:
                self._fail(batch, _conflict())
                return
        except INFRA_ERRORS as exc:
            log.warning("label batch of %d not committed: %s", len(batch), exc)
            self._fail(
                batch,
                Rejected(
                    grpc.StatusCode.UNAVAILABLE,
                    "the label store is unavailable; retry with the same client_label_id",
                ),
            )
            return
        except psycopg.Error as exc:
            if len(batch) == 1:
                log.warning("label not committed: %s", exc)
                self._fail(batch, _conflict())
                return
            log.info("label batch of %d conflicted (%s): committing one by one", len(batch), exc)
        for pending in batch:
            self._commit([pending])

    @staticmethod
    def _fail(batch: list[_Pending], error: Rejected) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)

    def _commit_once(self, batch: list[_Pending]) -> None:
        outcomes: list[Submitted | Rejected] = []
        accepted: list[tuple[store.NewLabel, store.TaskContext]] = []
        # Two round trips per batch: BEGIN + reads, then writes + COMMIT.
        conn = self._local.conn.get()
        with conn.pipeline(), conn.transaction():
            keys = [
                (p.submission.principal.annotator_id, p.submission.client_label_id) for p in batch
            ]
            view = store.read_for_submit(conn, sorted({p.submission.task_id for p in batch}), keys)
            now, tasks, existing = view.now, view.tasks, view.existing
            slots_left = {ctx.unit_id: ctx.snapshot.unit_slots_open for ctx in tasks.values()}
            labeled_here: set[str] = set()
            for pending, key in zip(batch, keys, strict=True):
                sub = pending.submission
                if key in existing:
                    outcomes.append(self._replay(sub, *existing[key], tasks))
                    continue
                ctx = tasks.get(sub.task_id)
                snapshot: TaskSnapshot | None = ctx.snapshot if ctx else None
                if ctx is not None and snapshot is not None and sub.task_id in labeled_here:
                    snapshot = replace(snapshot, state="labeled")
                classes: list[str] = []
                if ctx is not None and snapshot is not None:
                    contract = self.contracts.version(ctx.project, snapshot.ontology_version)
                    classes = class_names(contract) if contract else []
                    if snapshot.state == "expired":
                        snapshot = replace(snapshot, unit_slots_open=slots_left.get(ctx.unit_id, 0))
                decision = check_submission(
                    snapshot, sub.principal, sub.value, classes, now, task_id=sub.task_id
                )
                if isinstance(decision, Reject):
                    outcomes.append(Rejected(decision.code, decision.message))
                    continue
                assert ctx is not None and isinstance(decision, Accept)
                if decision.reclaim_slot:
                    slots_left[ctx.unit_id] -= 1
                label = store.NewLabel(
                    label_id=str(uuid.uuid4()),
                    task_id=sub.task_id,
                    item_id=ctx.item_id,
                    project=ctx.project,
                    annotator_id=sub.principal.annotator_id,
                    client_label_id=sub.client_label_id,
                    value=sub.value,
                    ontology_version=ctx.snapshot.ontology_version,
                    duration_ms=sub.duration_ms,
                    active_ms=sub.active_ms,
                    source=SOURCE_BY_KIND.get(ctx.snapshot.kind, common_pb2.LABEL_SOURCE_HUMAN),
                    gold=ctx.snapshot.kind == "gold",
                    unit_id=ctx.unit_id,
                    reclaim_slot=decision.reclaim_slot,
                )
                labeled_here.add(sub.task_id)
                existing[key] = (label.label_id, sub.task_id)
                accepted.append((label, ctx))
                outcomes.append(Submitted(label.label_id, False, ctx.project))
            if accepted:
                store.insert_labels(
                    conn,
                    [label for label, _ in accepted],
                    [label_event(ctx, label, now) for label, ctx in accepted],
                )
        # Committed: only now may the callers hear that their labels are safe.
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Rejected):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    @staticmethod
    def _replay(
        sub: Submission, label_id: str, task_id: str, tasks: dict[str, store.TaskContext]
    ) -> Submitted | Rejected:
        if task_id != sub.task_id:
            return Rejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"client_label_id {sub.client_label_id!r} was already used for another task; "
                "use a fresh id for each label",
            )
        ctx = tasks.get(task_id)
        return Submitted(label_id, True, ctx.project if ctx else "")
