"""Real Postgres and the real broker, started once per test run."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from strata.common.bus import BrokerIncarnation, EventProducer, KafkaSettings
from strata.common.config import ServiceConfig
from strata.common.db import Migration
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from strata.common.service import ServiceRuntime

from tests import pki

KIT_SERVICE = Path(__file__).with_name("kit_service.py")


@dataclass
class Infra:
    postgres: EmbeddedPostgres
    broker: EmbeddedBroker

    @property
    def pg_dsn(self) -> str:
        return self.postgres.dsn

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap


def start_broker(home: Path) -> EmbeddedBroker:
    """A fresh embedded broker with every topic and the incarnation marker in place."""
    broker = EmbeddedBroker(free_port(), log_path=home / "broker.log")
    broker.start()
    settings = KafkaSettings(broker.bootstrap, client_id="tests")
    producer = EventProducer(settings)
    incarnation = BrokerIncarnation(settings, producer)
    incarnation.ensure()
    incarnation.close()
    producer.close()
    return broker


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("postgres") / "pgdata", free_port())
    pg.start()
    yield pg
    pg.stop()


@pytest.fixture(scope="module")
def infra(postgres: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """Postgres for the whole run; a broker per test module. Services' consumer groups are
    new in every test and read their topics from the start, so a broker shared by the
    whole run would have each later test wade through every earlier module's events (the
    gateway scale test alone leaves thousands)."""
    broker = start_broker(tmp_path_factory.mktemp("broker"))
    yield Infra(postgres, broker)
    broker.stop()


def unique_service(prefix: str) -> str:
    """A fresh service (schema) name, so tests never share state."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def service_config(
    infra: Infra, prefix: str, bootstrap: str | None = None, **overrides: object
) -> ServiceConfig:
    """A service of kind `prefix` in a schema of its own, speaking mutual TLS as `prefix`."""
    base: dict[str, object] = {
        "service": unique_service(prefix),
        "pg_dsn": infra.pg_dsn,
        "kafka_bootstrap": bootstrap or infra.bootstrap,
        "shutdown_grace_s": 2.0,
        "health_interval_s": 0.3,
        "tls": pki.service_tls(prefix),
        "identity": prefix,
    }
    base.update(overrides)
    return ServiceConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def runtime_factory(infra: Infra) -> Iterator[Callable[..., ServiceRuntime]]:
    """Builds ServiceRuntimes against the shared infra and stops them after the test."""
    made: list[ServiceRuntime] = []

    def make(
        prefix: str,
        migrations: list[Migration] = (),
        bootstrap: str | None = None,
        **overrides: object,
    ) -> ServiceRuntime:
        config = service_config(infra, prefix, bootstrap, **overrides)
        rt = ServiceRuntime(config, list(migrations))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        if rt.endpoints is not None:
            rt.stop(grace_s=1.0)


APPLIED_TABLE = Migration(
    "test",
    1,
    "applied",
    "CREATE TABLE applied (event_key text PRIMARY KEY, times integer NOT NULL);",
)


def record_applied(conn, key: str) -> None:
    """A handler's visible effect, counted in its own transaction."""
    conn.execute(
        "INSERT INTO applied (event_key, times) VALUES (%s, 1) "
        "ON CONFLICT (event_key) DO UPDATE SET times = applied.times + 1",
        (key,),
    )


def applied_counts(rt: ServiceRuntime) -> dict[str, int]:
    with rt.db.transaction() as conn:
        return dict(conn.execute("SELECT event_key, times FROM applied").fetchall())


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def kit_service_env(pg_dsn: str, bootstrap: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update(
        {
            "STRATA_PG_DSN": pg_dsn,
            "STRATA_KAFKA_BOOTSTRAP": bootstrap,
            "STRATA_HEALTH_INTERVAL_S": "0.3",
            **pki.environ("kitcheck"),
            **extra,
        }
    )
    return env


KIT_SERVICE_CMD = [sys.executable, str(KIT_SERVICE)]


def read_topic(
    bootstrap: str,
    spec,  # TopicSpec
    keep: Callable[[object], bool],
    expect: int,
    timeout_s: float = 30.0,
) -> list:
    """Decoded messages of `spec` (all partitions, from the start) that `keep` selects;
    messages that carry many come one by one: an import's items (each `ItemImported`),
    a model's predictions (each a `PredictionMade` with its message's routing).

    Reads until `expect` are found or `timeout_s` passes, then a short while more
    so that duplicates beyond `expect` would be seen too. Topics are shared by the
    whole session and some tests put poison records on them on purpose; records
    that do not decode are not anyone's message and are passed over.
    """
    from kafka import KafkaConsumer, TopicPartition
    from strata.common.events import EventDecodeError, decode
    from strata.v1 import events_pb2

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = [TopicPartition(spec.name, p) for p in consumer.partitions_for_topic(spec.name) or ()]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    found: list = []
    deadline = time.monotonic() + timeout_s
    settle: float | None = None
    while time.monotonic() < (settle or deadline):
        for records in consumer.poll(timeout_ms=300).values():
            for r in records:
                try:
                    msg = decode(r.topic, r.partition, r.offset, r.key, r.value, r.headers).message
                except EventDecodeError:
                    continue
                parts: list = [msg]
                if isinstance(msg, events_pb2.ItemsImported):
                    parts = list(msg.items)
                elif isinstance(msg, events_pb2.PredictionsMade):
                    parts = [
                        events_pb2.PredictionMade(routing=msg.routing, prediction=p)
                        for p in msg.predictions
                    ]
                found.extend(m for m in parts if keep(m))
        if settle is None and len(found) >= expect:
            settle = time.monotonic() + 1.0
    consumer.close()
    return found


def produce(bootstrap: str, events: list) -> None:
    """Send OutgoingEvents straight to the broker, as another service would."""
    producer = EventProducer(KafkaSettings(bootstrap, client_id="tests-produce"))
    try:
        producer.send_all(events)
    finally:
        producer.close()
