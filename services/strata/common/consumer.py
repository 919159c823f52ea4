"""The consumer loop: decode, handle in one Postgres transaction, then commit offsets.

- The inbox row (group, event id) is written in the handler's transaction, so
  an event delivered twice is applied once.
- A record that cannot be decoded, or whose handler fails `max_attempts`
  times, goes to `strata.deadletter` (through the outbox, in the same
  transaction as its inbox row) and the partition keeps flowing.
- When Postgres itself is unreachable nothing is dead-lettered: the loop
  waits and retries the same record, and commits nothing past it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
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
from strata.common.events import Event, EventDecodeError, decode, header_map
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


class _Stopped(Exception):
    """The loop was asked to stop while waiting for Postgres."""


class EventConsumer:
    """Consumes `handlers`' topics in consumer group `group` until stopped."""

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        group: str,
        handlers: Mapping[str, Handler],
        db: Database,
        incarnation: BrokerIncarnation,
        metrics: ServiceMetrics,
        service: str,
        max_attempts: int = 3,
        retry_backoff_s: float = 0.1,
    ) -> None:
        if not handlers:
            raise ValueError("a consumer needs at least one topic handler")
        self.settings = settings
        self.group = group
        self.handlers = dict(handlers)
        self.db = db
        self.incarnation = incarnation
        self.metrics = metrics
        self.service = service
        self.max_attempts = max_attempts
        self.retry_backoff_s = retry_backoff_s
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
                    for tp, records in batch.items():
                        for record in records:
                            self._process(record)
                            offsets[tp] = OffsetAndMetadata(record.offset + 1, "", -1)
                except _Stopped:
                    pass
                self._commit(consumer, offsets)
                self._report_lag(consumer)
        finally:
            self.joined.clear()
            self._close(consumer)

    def _new_consumer(self) -> Any:
        self._unstable_since = time.monotonic()
        return new_group_consumer(self.settings, self.kafka_group(), list(self.handlers))

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
            ends = consumer.end_offsets(assigned)
            for tp in assigned:
                lag = max(0, ends.get(tp, 0) - consumer.position(tp))
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    lag
                )
        except Exception as exc:
            log.debug("%s: lag report failed: %s", self.group, exc)

    # -- one record -------------------------------------------------------

    def _process(self, record: Any) -> None:
        try:
            event = decode(
                record.topic,
                record.partition,
                record.offset,
                record.key,
                record.value,
                record.headers,
            )
        except EventDecodeError as exc:
            self._dead_letter(record, _fallback_event_id(record), f"undecodable: {exc}", 0)
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

    def _apply(self, handler: Handler, event: Event) -> str:
        with self.db.transaction() as conn:
            if not self._claim(
                conn, event.event_id, event.topic, event.partition, event.offset, "processed", None
            ):
                return "duplicate"
            handler(HandlerContext(conn, event), event)
        return "processed"

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

    def _dead_letter(self, record: Any, event_id: str, reason: str, attempts: int) -> None:
        failed_at = Timestamp()
        failed_at.GetCurrentTime()
        letter = events_pb2.DeadLetter(
            original_topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key or b"",
            payload=record.value or b"",
            headers=header_map(record.headers),
            reason=reason[:2000],
            consumer_group=self.group,
            attempts=attempts,
            failed_at=failed_at,
            service=self.service,
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
