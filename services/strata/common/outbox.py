"""Transactional outbox: state change and event in one transaction; a relay publishes."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from google.protobuf.message import Message
from psycopg import pq

from strata.common import pgcopy
from strata.common.bus import BrokerIncarnation, EventProducer
from strata.common.db import Database
from strata.common.events import OutgoingEvent, make_event
from strata.common.metrics import ServiceMetrics

log = logging.getLogger(__name__)


def enqueue(conn: psycopg.Connection[Any], event: OutgoingEvent) -> str:
    """Write `event` to the outbox inside the caller's transaction; returns its id."""
    enqueue_many(conn, [event])
    return event.event_id


def enqueue_many(
    conn: psycopg.Connection[Any], events: list[OutgoingEvent], *, bulk: bool = False
) -> None:
    """Write many events to the outbox in the caller's transaction: a binary COPY (an
    import of tens of thousands of items announces them without per-row cost), or one
    INSERT where COPY cannot run (a connection in pipeline mode). `bulk`: on the relay's
    bulk lane (a topic's events all go in one lane, see `OutboxRelay`)."""
    if not events:
        return
    if conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
        conn.execute(
            "INSERT INTO outbox (event_id, topic, key, event_type, schema_name, trace_id, "
            "payload, bulk) SELECT *, %s FROM unnest(%s::uuid[], %s::text[], %s::bytea[], "
            "%s::text[], %s::text[], %s::text[], %s::bytea[])",
            (
                bulk,
                [uuid.UUID(e.event_id) for e in events],
                [e.topic for e in events],
                [e.key for e in events],
                [e.event_type for e in events],
                [e.schema for e in events],
                [e.trace_id for e in events],
                [e.payload for e in events],
            ),
        )
        return
    enqueue_encoded(conn, [encode(e, bulk=bulk) for e in events])


_OUTBOX_COLUMNS = (
    "event_id",
    "topic",
    "key",
    "event_type",
    "schema_name",
    "trace_id",
    "payload",
    "bulk",
)


def encode(event: OutgoingEvent, *, bulk: bool = False) -> bytes:
    """The event as an outbox row for `enqueue_encoded` (bulk writers encode ahead;
    `bulk`: published after every other event waiting, see `OutboxRelay`)."""
    return encode_row(
        (
            pgcopy.uuid(event.event_id),
            pgcopy.text(event.topic),
            pgcopy.bytea(event.key),
            pgcopy.text(event.event_type),
            pgcopy.text(event.schema),
            pgcopy.text(event.trace_id),
            pgcopy.bytea(event.payload),
        ),
        bulk=bulk,
    )


def encode_row(
    fields: tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes], *, bulk: bool = False
) -> bytes:
    """An outbox row from its `pgcopy`-encoded fields: event id, topic, key, event type,
    schema, trace id, payload (a bulk writer encodes the constant ones once)."""
    return pgcopy.row((*fields, pgcopy.boolean(bulk)))


def enqueue_encoded(conn: psycopg.Connection[Any], rows: list[bytes]) -> None:
    """Write events already through `encode` (binary COPY; not in pipeline mode)."""
    if rows:
        pgcopy.copy_rows(conn, "outbox", _OUTBOX_COLUMNS, rows)


def publish(
    conn: psycopg.Connection[Any],
    topic: str,
    key: str | bytes | None,
    message: Message,
    *,
    trace_id: str | None = None,
    event_id: str | None = None,
) -> str:
    """Envelope `message` and enqueue it in the caller's transaction; returns the event id."""
    return enqueue(conn, make_event(topic, key, message, trace_id=trace_id, event_id=event_id))


def backlog(conn: psycopg.Connection[Any]) -> int:
    """Events written but not yet published."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL AND NOT bulk) "
        "     + (SELECT count(*) FROM outbox WHERE published_at IS NULL AND bulk)"
    ).fetchone()
    return int(row[0]) if row else 0


class Activity:
    """Counts foreground work in progress (e.g. bulk imports) that the relay gives way to."""

    def __init__(self) -> None:
        self._running = 0
        self._lock = threading.Lock()

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1

    def __bool__(self) -> bool:
        return self._running > 0


class OutboxRelay:
    """Publishes the outbox of one schema; several replicas may run at once.

    Bulk events (an import's item announcements, a model's predictions: messages of
    hundreds of items each) wait behind every other event of their service: a training
    request or a decision is published next, not after the million items imported
    before it; and they go a few to a batch. Order holds within each lane, and a
    topic's events all go in one lane, so every key's events keep their order.

    While `give_way_to` activity runs, the relay pauses `busy_pause_s` after each
    batch: a bulk import then keeps the process (and its GIL) and is acknowledged
    sooner, and its announcements follow at a reduced rate and catch up after it.
    """

    def __init__(
        self,
        db: Database,
        producer: EventProducer,
        incarnation: BrokerIncarnation,
        metrics: ServiceMetrics,
        *,
        batch_size: int = 500,
        bulk_batch_size: int = 16,
        idle_sleep_s: float = 0.05,
        retention_s: int = 86_400,
    ) -> None:
        self.db = db
        self.producer = producer
        self.incarnation = incarnation
        self.metrics = metrics
        self.batch_size = batch_size
        # Bulk events carry up to a few hundred items each (256 KiB): fewer a batch.
        self.bulk_batch_size = bulk_batch_size
        self.idle_sleep_s = idle_sleep_s
        self.retention_s = retention_s
        self.give_way_to = Activity()
        self.busy_pause_s = 0.5
        self._seen_incarnation: str | None = None
        self._last_cleanup = 0.0
        self._last_backlog = 0.0
        self._backlog_every = 1.0

    def _republish_if_broker_was_reset(self, conn: psycopg.Connection[Any], current: str) -> None:
        if current == self._seen_incarnation:
            return
        # Anything still retained that went to another incarnation may be lost:
        # publish it again; consumers drop what they already applied.
        cur = conn.execute(
            "UPDATE outbox SET published_at = NULL "
            "WHERE published_at IS NOT NULL AND published_incarnation IS DISTINCT FROM %s "
            "AND published_at > now() - make_interval(secs => %s)",
            (current, self.retention_s),
        )
        if cur.rowcount:
            log.warning(
                "broker incarnation changed to %s: re-publishing %d retained events",
                current,
                cur.rowcount,
            )
            self.metrics.outbox_republished.inc(cur.rowcount)
        self._seen_incarnation = current

    def run_once(self) -> int:
        """Publish one batch; returns how many events it published."""
        current = self.incarnation.current()
        with self.db.transaction() as conn:
            self._republish_if_broker_was_reset(conn, current)
            rows: list[tuple[Any, ...]] = []
            # While an import runs, one bulk event a batch: the import keeps the cores.
            bulk = 1 if self.give_way_to else self.bulk_batch_size
            for lane, most in (("NOT bulk", self.batch_size), ("bulk", bulk)):
                # each lane from its own partial index
                rows += conn.execute(
                    "SELECT id, event_id, topic, key, event_type, schema_name, trace_id, "
                    f"payload FROM outbox WHERE published_at IS NULL AND {lane} "
                    "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
                    (min(most, self.batch_size - len(rows)),),
                ).fetchall()
                if len(rows) >= self.batch_size:
                    break
            if not rows:
                return 0
            events = [
                OutgoingEvent(
                    topic=r[2],
                    key=bytes(r[3]) if r[3] is not None else None,
                    payload=bytes(r[7]),
                    event_id=str(r[1]),
                    event_type=r[4],
                    trace_id=r[6],
                    schema=r[5],
                )
                for r in rows
            ]
            self.producer.send_all(events)
            conn.execute(
                "UPDATE outbox SET published_at = now(), published_incarnation = %s, "
                "publish_count = publish_count + 1 WHERE id = ANY(%s)",
                (current, [r[0] for r in rows]),
            )
        for e in events:
            self.metrics.events_published.labels(topic=e.topic).inc()
        return len(events)

    def housekeeping(self) -> None:
        """Refresh the backlog gauge and drop events past retention."""
        now = time.monotonic()
        if now - self._last_backlog >= self._backlog_every:
            with self.db.transaction() as conn:
                self.metrics.outbox_backlog.set(backlog(conn))
            # Counting a backlog of millions takes a while: count it less often then.
            took = time.monotonic() - now
            self._backlog_every = min(30.0, max(1.0, 100 * took))
            self._last_backlog = now
        if now - self._last_cleanup >= 60.0:
            with self.db.transaction() as conn:
                conn.execute(
                    "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => %s)",
                    (self.retention_s,),
                )
            self._last_cleanup = now

    def run(self, stop: threading.Event) -> None:
        """Publish until `stop` is set, backing off while the broker or Postgres is down."""
        backoff = 0.1
        while not stop.is_set():
            try:
                published = self.run_once()
                self.housekeeping()
                backoff = 0.1
                if published == 0:
                    stop.wait(self.idle_sleep_s)
                elif self.give_way_to:
                    stop.wait(self.busy_pause_s)
            except Exception as exc:
                self.metrics.outbox_errors.inc()
                log.warning("outbox relay: %s (retrying in %.1fs)", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def drain(self, timeout_s: float) -> None:
        """Publish what is pending, for at most `timeout_s` seconds (used at shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.run_once() == 0:
                    return
            except Exception as exc:
                log.warning("outbox drain: %s", exc)
                return
