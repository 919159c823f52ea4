"""Kafka transport over kafka-python: producer, topics, broker incarnation, consumer.

Delivery is at-least-once; consumers are idempotent through the inbox table.
The embedded broker keeps its log in memory, so a restart loses what was not
consumed yet. A one-message marker topic holds the broker's *incarnation* (a
uuid written when the topics are created); when it changes, outbox relays
publish their retained events again and consumers rewind (the inbox drops
what they had already applied).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from strata.common.events import OutgoingEvent
from strata.common.topics import ALL_TOPICS, TopicSpec

log = logging.getLogger(__name__)

INCARNATION_TOPIC = "strata._incarnation"


@dataclass(frozen=True)
class KafkaSettings:
    """Connection settings shared by every client a service opens."""

    bootstrap: str
    client_id: str
    max_poll_interval_ms: int = 6000
    request_timeout_ms: int = 5000
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""

    @property
    def servers(self) -> list[str]:
        return self.bootstrap.split(",")

    def connection(self) -> dict[str, Any]:
        """The kafka-python arguments that say where the brokers are and how to log in."""
        args: dict[str, Any] = {
            "bootstrap_servers": self.servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL_"):
            if not self.sasl_username or not self.sasl_password:
                raise ValueError(
                    f"security protocol {self.security_protocol} needs "
                    "STRATA_KAFKA_SASL_USERNAME and STRATA_KAFKA_SASL_PASSWORD"
                )
            args.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.ssl_cafile and self.security_protocol.endswith("SSL"):
            args["ssl_cafile"] = self.ssl_cafile
        return args


class EventProducer:
    """An idempotent producer that is rebuilt after any send failure.

    A restarted broker answers the old producer id with UnknownProducerId and
    then fails InitProducerId until the client is recreated, so a failed send
    throws the client away; the caller retries (the outbox keeps the events).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer: KafkaProducer | None = None
        self._lock = threading.Lock()
        self.recreated = 0

    def _client(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                **self.settings.connection(),
                client_id=f"{self.settings.client_id}-producer",
                enable_idempotence=True,
                allow_auto_create_topics=False,
                acks="all",
                linger_ms=5,
                retries=3,
                request_timeout_ms=self.settings.request_timeout_ms,
                max_block_ms=self.settings.request_timeout_ms,
                delivery_timeout_ms=self.settings.request_timeout_ms * 2,
            )
        return self._producer

    def send_all(self, events: Sequence[OutgoingEvent], timeout_s: float = 15.0) -> list[Any]:
        """Send `events` and wait for every ack; raises KafkaError if any failed."""
        with self._lock:
            try:
                producer = self._client()
                futures = [
                    producer.send(
                        e.topic,
                        key=e.key,
                        value=e.payload,
                        headers=e.headers(),
                        partition=e.partition,
                    )
                    for e in events
                ]
                producer.flush(timeout=timeout_s)
                return [f.get(timeout=timeout_s) for f in futures]
            except Exception:
                self._discard()
                raise

    def _discard(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=0)
            except Exception as exc:
                log.debug("closing failed producer: %s", exc)
            self._producer = None
            self.recreated += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Flush what is buffered and close."""
        with self._lock:
            if self._producer is not None:
                try:
                    self._producer.flush(timeout=timeout_s)
                finally:
                    self._producer.close(timeout=timeout_s)
                    self._producer = None


def create_topics(settings: KafkaSettings, specs: Iterable[TopicSpec] = ALL_TOPICS) -> list[str]:
    """Create the topics that do not exist yet; returns the names it created."""
    admin = KafkaAdminClient(
        **settings.connection(),
        client_id=f"{settings.client_id}-admin",
        request_timeout_ms=settings.request_timeout_ms,
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(s.name, num_partitions=s.partitions, replication_factor=1)
            for s in specs
            if s.name not in existing
        ]
        if INCARNATION_TOPIC not in existing:
            wanted.append(NewTopic(INCARNATION_TOPIC, num_partitions=1, replication_factor=1))
        created = []
        for new in wanted:
            try:
                admin.create_topics([new])
                created.append(new.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race
        return created
    finally:
        admin.close()


def describe_topics(settings: KafkaSettings) -> dict[str, int]:
    """Partition count of every topic on the broker."""
    consumer = KafkaConsumer(
        **settings.connection(),
        client_id=f"{settings.client_id}-describe",
        allow_auto_create_topics=False,
    )
    try:
        return {t: len(consumer.partitions_for_topic(t) or ()) for t in consumer.topics()}
    finally:
        consumer.close()


class BrokerIncarnation:
    """Reads (and on a fresh broker, writes) the broker's incarnation marker."""

    def __init__(self, settings: KafkaSettings, producer: EventProducer) -> None:
        self.settings = settings
        self.producer = producer
        self._consumer: KafkaConsumer | None = None
        self._lock = threading.Lock()
        self._cached: str | None = None
        self._checked_at = 0.0

    def _reader(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                **self.settings.connection(),
                client_id=f"{self.settings.client_id}-incarnation",
                enable_auto_commit=False,
                allow_auto_create_topics=False,
                request_timeout_ms=self.settings.request_timeout_ms,
                fetch_max_wait_ms=100,
            )
        return self._consumer

    def read(self) -> str | None:
        """The first marker on the broker, or None when the topic is missing or empty."""
        consumer = self._reader()
        if INCARNATION_TOPIC not in consumer.topics():
            return None
        tp = TopicPartition(INCARNATION_TOPIC, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    return bytes(record.value).decode()
        return None

    def ensure(self) -> str:
        """The current incarnation; on a fresh (or wiped) broker, create topics and one."""
        with self._lock:
            try:
                marker = self.read()
                if marker is None:
                    create_topics(self.settings)
                    candidate = OutgoingEvent(
                        topic=INCARNATION_TOPIC,
                        key=b"incarnation",
                        payload=uuid.uuid4().hex.encode(),
                        event_id=str(uuid.uuid4()),
                        event_type="broker.incarnation",
                        trace_id="",
                        schema="text/plain",
                        partition=0,
                    )
                    self.producer.send_all([candidate])
                    # Several processes may race to write one; the first record wins.
                    marker = self.read()
                    if marker is None:
                        raise KafkaError("incarnation marker written but not readable")
                    log.info("broker incarnation %s", marker)
            except Exception:
                self._close_reader()
                raise
            self._cached = marker
            self._checked_at = time.monotonic()
            return marker

    def current(self, max_age_s: float = 1.0) -> str:
        """`ensure()`, at most once per `max_age_s` seconds."""
        if self._cached is not None and time.monotonic() - self._checked_at < max_age_s:
            return self._cached
        return self.ensure()

    def _close_reader(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception as exc:
                log.debug("closing incarnation reader: %s", exc)
            self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._close_reader()


def new_group_consumer(
    settings: KafkaSettings, group: str, topics: Sequence[str], **overrides: Any
) -> KafkaConsumer:
    """A group consumer that joins in seconds and never auto-commits."""
    config: dict[str, Any] = {
        **settings.connection(),
        "client_id": f"{settings.client_id}-{group}",
        "group_id": group,
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
        "auto_offset_reset": "earliest",
        "max_poll_interval_ms": settings.max_poll_interval_ms,
        "session_timeout_ms": max(6000, settings.max_poll_interval_ms),
        "heartbeat_interval_ms": 1000,
        "request_timeout_ms": max(
            settings.request_timeout_ms, settings.max_poll_interval_ms + 1000
        ),
        "max_poll_records": 200,
    }
    config.update(overrides)
    consumer = KafkaConsumer(**config)
    consumer.subscribe(list(topics))
    return consumer


def wait_for_broker(settings: KafkaSettings, timeout_s: float = 30.0) -> None:
    """Block until the broker answers metadata requests; raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            consumer = KafkaConsumer(
                **settings.connection(),
                client_id=f"{settings.client_id}-probe",
                allow_auto_create_topics=False,
                request_timeout_ms=2000,
            )
            try:
                consumer.topics()
                return
            finally:
                consumer.close()
        except Exception as exc:
            last = exc
            time.sleep(0.2)
    raise TimeoutError(f"Kafka at {settings.bootstrap} did not answer in {timeout_s:.0f}s: {last}")
