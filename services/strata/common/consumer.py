"""The consumer loop: decode, handle in one Postgres transaction, then commit offsets.

- The inbox row (group, event id) is written in the handler's transaction, so
  an event delivered twice is applied once.
- A record that cannot be decoded, or whose handler fails `max_attempts`
  times, goes to `strata.deadletter` (through the outbox, in the same
  transaction as its inbox row) and the partition keeps flowing.
- When Postgres itself is unreachable nothing is dead-lettered: the loop
  waits and retries the same record, and commits nothing past it.
- A handler that raises `Deferred` (what the event refers to has not arrived
  yet) rewinds its partition to that event and retries after a backoff, while other
  partitions and topics keep flowing; past `defer_limit_s` the event is
  dead-lettered like any other failure.
- A `Batched` handler takes a poll's worth of one partition's events in one
  transaction (inbox claims set-based). If the batch fails, its events are
  applied one by one, so one poison event is isolated and dead-lettered and
  the rest still go through.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from kafka import TopicPartition
from kafka.structs import MemberState, OffsetAndMetadata
from psycopg_pool import PoolTimeout

from strata.common import outbox
from strata.common.bus import BrokerIncarnation, KafkaSettings, new_group_consumer
from strata.common.db import Database
from strata.common.events import (
    Event,
    EventDecodeError,
    OutgoingEvent,
    decode,
    header_map,
    make_event,
)
from strata.common.metrics import ServiceMetrics
from strata.common.topics import DEADLETTER
from strata.v1 import events_pb2

log = logging.getLogger(__name__)

# Errors that mean "Postgres is not reachable", not "this event is bad".
INFRA_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    PoolTimeout,
)


@dataclass
class HandlerContext:
    """What a handler gets besides the event: its transaction, and a way to emit events."""

    conn: psycopg.Connection[Any]
    event: Event

    def publish(self, topic: str, key: str | bytes | None, message: Message) -> str:
        """Emit an event in this transaction (via the outbox), continuing the trace."""
        return outbox.publish(self.conn, topic, key, message, trace_id=self.event.trace_id)


Handler = Callable[[HandlerContext, Event], None]


@dataclass
class BatchContext:
    """A batch handler's transaction, and a way to emit events set-based."""

    conn: psycopg.Connection[Any]
    events: list[Event]
    _pending: list[OutgoingEvent] = field(default_factory=list)
    # (event, why, the part dead-lettered: None for the whole event)
    rejected: list[tuple[Event, str, Message | None]] = field(default_factory=list)

    def publish(self, topic: str, key: str | bytes | None, message: Message, trace_id: str) -> str:
        """Queue an event for the outbox; all are written in one statement at the end."""
        event = make_event(topic, key, message, trace_id=trace_id or None)
        self._pending.append(event)
        return event.event_id

    def reject(self, event: Event, reason: str, part: Message | None = None) -> None:
        """Dead-letter `event` with `reason` in this transaction; the rest of the batch goes
        on. `part`: only that part of an event that carries many (one item of an import's
        message, as a message of the topic's type) is dead-lettered; the rest applies."""
        self.rejected.append((event, reason, part))

    @property
    def rejected_whole(self) -> int:
        """Events rejected whole (not just a part of one)."""
        return sum(1 for _, _, part in self.rejected if part is None)

    def flush(self) -> None:
        outbox.enqueue_many(self.conn, self._pending)
        self._pending.clear()


BatchHandler = Callable[[BatchContext, list[Event]], None]


@dataclass(frozen=True)
class Batched:
    """Marks a handler that takes many events of one partition in one transaction."""

    handler: BatchHandler


TopicHandler = Handler | Batched


class Deferred(Exception):
    """Raised by a handler when an event cannot be applied *yet*; its partition waits."""


class _Defer(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(offset)
        self.offset = offset


class _Stopped(Exception):
    """The loop was asked to stop while waiting for Postgres."""


class EventConsumer:
    """Consumes `handlers`' topics in consumer group `group` until stopped."""

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        group: str,
        handlers: Mapping[str, TopicHandler],
        db: Database,
        incarnation: BrokerIncarnation,
        metrics: ServiceMetrics,
        service: str,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.1,
        max_poll_records: int = 200,
        defer_backoff_s: float = 0.5,
        defer_limit_s: float = 60.0,
    ) -> None:
        if not handlers:
            raise ValueError("a consumer needs at least one topic handler")
        self.settings = settings
        self.group = group
        self.handlers = dict(handlers)
        self._order = {name: i for i, name in enumerate(self.handlers)}
        self.db = db
        self.incarnation = incarnation
        self.metrics = metrics
        self.service = service
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
        self.max_poll_records = max_poll_records
        self.defer_backoff_s = defer_backoff_s
        self.defer_limit_s = defer_limit_s
        self._waiting: dict[TopicPartition, tuple[float, int]] = {}
        self._deferred_since: dict[TopicPartition, float] = {}
        self.joined = threading.Event()
        self._stop = threading.Event()
        self._incarnation: str | None = None
        self._rewind_pending = False
        self._unstable_since: float | None = None
        self._last_incarnation_check = 0.0
        self._last_lag = 0.0

    # -- the loop ---------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Consume until `stop` (or `self.stop()`) is set."""
        stop = stop or self._stop
        self._stop = stop
        consumer = self._new_consumer()
        try:
            while not stop.is_set():
                if self._watch_incarnation(consumer) or self._stuck(consumer):
                    self._close(consumer)
                    consumer = self._new_consumer()
                try:
                    batch = consumer.poll(timeout_ms=200)
                except Exception as exc:  # broker gone mid-poll: the client reconnects
                    log.warning("%s: poll failed: %s", self.group, exc)
                    stop.wait(0.5)
                    continue
                self._note_group_state(consumer)
                offsets: dict[TopicPartition, OffsetAndMetadata] = {}
                try:
                    # Topics in the order the handlers were given (e.g. contracts first).
                    for tp, records in sorted(batch.items(), key=self._topic_order):
                        self._run_partition(consumer, tp, records, offsets)
                except _Stopped:
                    pass
                self._commit(consumer, offsets)
                self._report_lag(consumer)
        finally:
            self.joined.clear()
            self._close(consumer)

    def _process_partition(
        self,
        tp: TopicPartition,
        records: list[Any],
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        handler = self.handlers[tp.topic]
        since = self._deferred_since.get(tp)
        may_defer = since is None or time.monotonic() - since < self.defer_limit_s
        if isinstance(handler, Batched) and len(records) > 1:
            self._process_batch(handler, records, may_defer)
            offsets[tp] = OffsetAndMetadata(records[-1].offset + 1, "", -1)
            return
        for record in records:
            self._process(record, may_defer)
            offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)

    def _run_partition(
        self,
        consumer: Any,
        tp: TopicPartition,
        records: list[Any],
        offsets: dict[TopicPartition, OffsetAndMetadata],
    ) -> None:
        """Process one partition's records, or rewind it while its first event waits.

        A waiting partition is sought back to the waiting event on every poll until
        its backoff is over (kafka-python's pause/resume can leave a partition
        silent after resume, so it is not used).
        """
        waiting = self._waiting.get(tp)
        if waiting is not None:
            due_at, offset = waiting
            if time.monotonic() < due_at or records[0].offset != offset:
                consumer.seek(tp, offset)
                return
            del self._waiting[tp]
        try:
            self._process_partition(tp, records, offsets)
        except _Defer as wait:
            consumer.seek(tp, wait.offset)
            self._deferred_since.setdefault(tp, time.monotonic())
            self._waiting[tp] = (time.monotonic() + self.defer_backoff_s, wait.offset)
            self.metrics.events_consumed.labels(topic=tp.topic, outcome="deferred").inc()
            return
        self._deferred_since.pop(tp, None)

    def _topic_order(self, item: tuple[TopicPartition, Any]) -> tuple[int, int]:
        return (self._order[item[0].topic], item[0].partition)

    def _new_consumer(self) -> Any:
        self._unstable_since = time.monotonic()
        self._waiting.clear()
        self._deferred_since.clear()
        return new_group_consumer(
            self.settings,
            self.kafka_group(),
            list(self.handlers),
            max_poll_records=self.max_poll_records,
        )

    def kafka_group(self) -> str:
        """The Kafka group id: the group name plus the broker incarnation.

        A broker that lost its log lost the group's offsets too, and rejoining a
        group name the restarted broker half-remembers can hang; so each
        incarnation gets a fresh group. On a real Kafka the incarnation never
        changes and neither does the id. The inbox keys on `group`, not this,
        so deduplication spans incarnations.
        """
        try:
            self._incarnation = self.incarnation.current()
        except Exception as exc:
            log.debug("%s: incarnation unknown (%s)", self.group, exc)
        return f"{self.group}.{self._incarnation[:8]}" if self._incarnation else self.group

    def _close(self, consumer: Any) -> None:
        try:
            consumer.close(autocommit=False)
        except Exception as exc:
            log.debug("closing consumer: %s", exc)

    def _note_group_state(self, consumer: Any) -> None:
        if _group_is_stable(consumer):
            self.joined.set()
            self._unstable_since = None
            if self._rewind_pending and consumer.assignment():
                # A fresh member starts from committed offsets; after a broker reset
                # those may point past the new log's events. The inbox drops repeats.
                consumer.seek_to_beginning(*consumer.assignment())
                self._rewind_pending = False
        else:
            self.joined.clear()
            if self._unstable_since is None:
                self._unstable_since = time.monotonic()

    def _stuck(self, consumer: Any) -> bool:
        """True when the group has not settled for far longer than a rebalance takes."""
        if self._unstable_since is None:
            return False
        limit = max(20.0, 4 * self.settings.max_poll_interval_ms / 1000)
        if time.monotonic() - self._unstable_since < limit:
            return False
        log.warning(
            "%s: group not stable for %.0fs; rejoining with a new consumer", self.group, limit
        )
        return True

    def stop(self) -> None:
        self._stop.set()

    def _commit(self, consumer: Any, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        if not offsets:
            return
        try:
            consumer.commit(offsets)
        except Exception as exc:
            # Harmless: the events are in the inbox, a redelivery is dropped.
            log.warning("%s: offset commit failed (%s); events may be redelivered", self.group, exc)

    def _watch_incarnation(self, consumer: Any) -> bool:
        """True when the broker was reset since the last check (the consumer must rejoin)."""
        now = time.monotonic()
        if now - self._last_incarnation_check < 1.0:
            return False
        self._last_incarnation_check = now
        try:
            current = self.incarnation.current()
        except Exception as exc:
            log.debug("%s: incarnation check failed: %s", self.group, exc)
            return False
        changed = self._incarnation is not None and current != self._incarnation
        if changed:
            log.warning(
                "%s: broker incarnation changed (%s -> %s): rejoining and rewinding",
                self.group,
                self._incarnation,
                current,
            )
            self._rewind_pending = True
        self._incarnation = current
        return changed

    def _report_lag(self, consumer: Any) -> None:
        now = time.monotonic()
        if now - self._last_lag < 2.0:
            return
        self._last_lag = now
        try:
            assigned = list(consumer.assignment())
            if not assigned:
                return
            # The high watermark every fetch response carries: no extra request, so
            # a slow ListOffsets answer can never hold the poll loop up.
            for tp in assigned:
                end = consumer.highwater(tp)
                if end is None:
                    continue
                lag = max(0, end - consumer.position(tp))
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    lag
                )
        except Exception as exc:
            log.debug("%s: lag report failed: %s", self.group, exc)

    # -- one record -------------------------------------------------------

    def _decode(self, record: Any) -> Event | None:
        """The record's event; None (and dead-lettered) when it cannot be decoded."""
        try:
            return decode(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                record.headers,
            )
        except EventDecodeError as exc:
            self._dead_letter(record, _fallback_event_id(record), f"undecodable: {exc}", 0)
            return None

    def _process(self, record: Any, may_defer: bool = False) -> None:
        event = self._decode(record)
        if event is None:
            return
        handler = self.handlers[event.topic]
        attempts = 0
        while True:
            attempts += 1
            started = time.perf_counter()
            try:
                outcome = self._apply(handler, event)
            except INFRA_ERRORS as exc:
                attempts -= 1  # not the event's fault
                self._wait_for_postgres(exc)
                continue
            except Deferred as exc:
                if may_defer:
                    log.info("%s: %s waits: %s", self.group, event.event_id, exc)
                    raise _Defer(record.offset) from None
                attempts = self.max_attempts  # it waited long enough already
                reason = f"still not applicable after {self.defer_limit_s:.0f}s: {exc}"
                self._dead_letter(record, event.event_id, reason, attempts)
                return
            except Exception as exc:
                log.warning(
                    "%s: handler failed on %s %s (attempt %d/%d): %s",
                    self.group,
                    event.topic,
                    event.event_id,
                    attempts,
                    self.max_attempts,
                    exc,
                )
                if attempts >= self.max_attempts:
                    reason = f"handler failed {attempts} times: {type(exc).__name__}: {exc}"
                    self._dead_letter(record, event.event_id, reason, attempts)
                    return
                self.metrics.events_consumed.labels(topic=event.topic, outcome="retried").inc()
                if self._stop.wait(self.retry_backoff_s * attempts):
                    raise _Stopped() from None
                continue
            self.metrics.handler_seconds.labels(topic=event.topic).observe(
                time.perf_counter() - started
            )
            self.metrics.events_consumed.labels(topic=event.topic, outcome=outcome).inc()
            return

    def _apply(self, handler: TopicHandler, event: Event) -> str:
        with self.db.transaction() as conn:
            if not self._claim(
                conn, event.event_id, event.topic, event.partition, event.offset, "processed", None
            ):
                return "duplicate"
            if isinstance(handler, Batched):
                ctx = BatchContext(conn, [event])
                handler.handler(ctx, [event])
                self._finish(ctx)
                if ctx.rejected_whole:
                    return "deadlettered"
                if ctx.rejected:
                    self.metrics.events_consumed.labels(
                        topic=event.topic, outcome="deadlettered"
                    ).inc(len(ctx.rejected))
            else:
                handler(HandlerContext(conn, event), event)
        return "processed"

    # -- a batch of one partition's records -------------------------------

    def _process_batch(self, handler: Batched, records: list[Any], may_defer: bool) -> None:
        events: list[tuple[Any, Event]] = []
        for record in records:
            event = self._decode(record)
            if event is not None:
                events.append((record, event))
        if not events:
            return
        topic = events[0][1].topic
        while True:
            started = time.perf_counter()
            try:
                fresh = self._apply_batch(handler, [e for _, e in events])
            except INFRA_ERRORS as exc:
                self._wait_for_postgres(exc)
                continue
            except Deferred as exc:
                if may_defer:
                    log.info("%s: a batch of %s waits: %s", self.group, topic, exc)
                    raise _Defer(records[0].offset) from None
                for record, _ in events:
                    self._process(record, may_defer=False)
                return
            except Exception as exc:
                log.warning(
                    "%s: batch of %d %s events failed (%s); applying them one by one",
                    self.group,
                    len(events),
                    topic,
                    exc,
                )
                for record, _ in events:
                    self._process(record, may_defer)
                return
            break
        self.metrics.handler_seconds.labels(topic=topic).observe(time.perf_counter() - started)
        self.metrics.events_consumed.labels(topic=topic, outcome="processed").inc(fresh)
        if len(events) > fresh:
            self.metrics.events_consumed.labels(topic=topic, outcome="duplicate").inc(
                len(events) - fresh
            )

    def _apply_batch(self, handler: Batched, events: list[Event]) -> int:
        """Claim every event in the inbox at once; the handler sees only the new ones."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                'INSERT INTO inbox (consumer_group, event_id, topic, partition, "offset", '
                "outcome) SELECT %s, * FROM unnest(%s::text[], %s::text[], %s::int[], "
                "%s::bigint[], %s::text[]) ON CONFLICT DO NOTHING RETURNING event_id",
                (
                    self.group,
                    [e.event_id for e in events],
                    [e.topic for e in events],
                    [e.partition for e in events],
                    [e.offset for e in events],
                    ["processed"] * len(events),
                ),
            ).fetchall()
            claimed = {r[0] for r in rows}
            fresh: list[Event] = []
            for event in events:
                if event.event_id in claimed:
                    claimed.discard(event.event_id)  # a repeat inside the batch counts once
                    fresh.append(event)
            rejected = whole = 0
            if fresh:
                ctx = BatchContext(conn, fresh)
                handler.handler(ctx, fresh)
                self._finish(ctx)
                rejected, whole = len(ctx.rejected), ctx.rejected_whole
        if rejected:
            self.metrics.events_consumed.labels(topic=fresh[0].topic, outcome="deadlettered").inc(
                rejected
            )
        return len(fresh) - whole

    def _finish(self, ctx: BatchContext) -> None:
        """Write the batch's events, and dead-letter what the handler rejected."""
        for event, reason, part in ctx.rejected:
            if part is None:
                ctx.conn.execute(
                    "UPDATE inbox SET outcome = 'deadlettered', reason = %s "
                    "WHERE consumer_group = %s AND event_id = %s",
                    (reason[:2000], self.group, event.event_id),
                )
            letter = self._letter(
                event.topic,
                event.partition,
                event.offset,
                event.key,
                (event.message if part is None else part).SerializeToString(),
                event.headers,
                reason,
                1,
            )
            ctx.publish(DEADLETTER.name, event.key, letter, event.trace_id)
            log.error(
                "%s: dead-lettered %s@%s/%s: %s",
                self.group,
                event.topic,
                event.partition,
                event.offset,
                reason,
            )
        ctx.flush()

    def _claim(
        self,
        conn: psycopg.Connection[Any],
        event_id: str,
        topic: str,
        partition: int,
        offset: int,
        outcome: str,
        reason: str | None,
    ) -> bool:
        cur = conn.execute(
            'INSERT INTO inbox (consumer_group, event_id, topic, partition, "offset", outcome, '
            "reason) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (self.group, event_id, topic, partition, offset, outcome, reason),
        )
        return cur.rowcount == 1

    def _letter(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        payload: bytes,
        headers: Mapping[str, str],
        reason: str,
        attempts: int,
    ) -> events_pb2.DeadLetter:
        failed_at = Timestamp()
        failed_at.GetCurrentTime()
        return events_pb2.DeadLetter(
            original_topic=topic,
            partition=partition,
            offset=offset,
            key=key or b"",
            payload=payload,
            headers=dict(headers),
            reason=reason[:2000],
            consumer_group=self.group,
            attempts=attempts,
            failed_at=failed_at,
            service=self.service,
        )

    def _dead_letter(self, record: Any, event_id: str, reason: str, attempts: int) -> None:
        letter = self._letter(
            record.topic,
            record.partition,
            record.offset,
            record.key,
            record.value or b"",
            header_map(record.headers),
            reason,
            attempts,
        )
        while True:
            try:
                with self.db.transaction() as conn:
                    if self._claim(
                        conn,
                        event_id,
                        record.topic,
                        record.partition,
                        record.offset,
                        "deadlettered",
                        reason[:2000],
                    ):
                        outbox.publish(
                            conn,
                            DEADLETTER.name,
                            record.key,
                            letter,
                            trace_id=header_map(record.headers).get("trace-id") or None,
                        )
                break
            except INFRA_ERRORS as exc:
                self._wait_for_postgres(exc)
        log.error(
            "%s: dead-lettered %s@%s/%s: %s",
            self.group,
            record.topic,
            record.partition,
            record.offset,
            reason,
        )
        self.metrics.events_consumed.labels(topic=record.topic, outcome="deadlettered").inc()

    def _wait_for_postgres(self, exc: BaseException) -> None:
        log.warning("%s: Postgres unreachable (%s); waiting", self.group, exc)
        if self._stop.wait(1.0):
            raise _Stopped() from None


def _group_is_stable(consumer: Any) -> bool:
    """True once the consumer has joined its group and the group is not rebalancing."""
    return bool(consumer.group_metadata().state == MemberState.STABLE)


def _fallback_event_id(record: Any) -> str:
    """A stable id for a record too broken to carry one."""
    digest = hashlib.sha256(record.value or b"").hexdigest()[:16]
    return f"undecodable:{record.topic}:{record.partition}:{record.offset}:{digest}"
