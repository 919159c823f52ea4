"""The runtime every service process runs in: one place that starts and stops the kit.

A service's `__main__` loads its config, builds a `ServiceRuntime`, mounts its
servicers and handlers on it, and calls `run()`.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc

from strata.common.audit import OutboxAudit
from strata.common.authz import (
    Directory,
    DirectoryUnavailable,
    Guard,
    Metadata,
    Standing,
)
from strata.common.bus import BrokerIncarnation, EventProducer, KafkaSettings
from strata.common.channels import CallMetadata, RenewingChannel
from strata.common.config import ConfigError, ServiceConfig
from strata.common.consumer import EventConsumer, TopicHandler
from strata.common.db import Database, Migration, kit_migrations, migrate
from strata.common.grpcserver import HealthMonitor, Servers, ServicerBinding, create_server
from strata.common.identity import SERVICE_HEADER, FailureLimiter, ServiceKeys
from strata.common.metrics import ServiceMetrics
from strata.common.outbox import OutboxRelay
from strata.common.tls import (
    TlsConfig,
    files_stamp,
    open_channel,
    peer_of,
    server_credentials,
)

log = logging.getLogger(__name__)

EXIT_CONFIG = 2


@dataclass(frozen=True)
class Endpoints:
    """Where a started service listens."""

    grpc_port: int
    metrics_port: int
    health_port: int | None = None


class _NoDirectory:
    """Until a service says how it resolves people, nobody can sign in."""

    def standing(self, metadata: Metadata, project: str) -> Standing:
        raise DirectoryUnavailable("this service resolves no people")


def service_channel(target: str, config: ServiceConfig) -> grpc.Channel:
    """A channel on which this service calls another as itself: its certificate on a
    TLS stack, its signed identity on a plaintext one."""
    return identity_channel(
        target, config.tls, config.identity or config.service, config.service_secret
    )


def identity_channel(target: str, tls: TlsConfig, name: str, service_secret: str) -> grpc.Channel:
    """A channel to `target` that proves this process is service `name`."""
    channel: grpc.Channel
    if tls.enabled:
        # cert-manager renews the files in place; calls follow them.
        channel = RenewingChannel(lambda: open_channel(target, tls), lambda: files_stamp(tls))
    else:
        channel = open_channel(target, tls)
    if not tls.enabled and service_secret:
        keys = ServiceKeys(service_secret)
        channel = grpc.intercept_channel(
            channel, CallMetadata(lambda: [(SERVICE_HEADER, keys.sign(name))])
        )
    return channel


def configure_logging(level: str) -> None:
    """One line per record, to stderr, with the process's service name."""
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python logs every lost connection as ERROR; the kit reports what matters.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)


def kafka_settings(config: ServiceConfig) -> KafkaSettings:
    """The Kafka connection every client of this service uses; a SASL protocol without its
    login is a ConfigError now, not a failing client later."""
    settings = KafkaSettings(
        bootstrap=config.kafka_bootstrap,
        client_id=f"strata-{config.service}",
        max_poll_interval_ms=config.max_poll_interval_ms,
        security_protocol=config.kafka_security_protocol,
        sasl_mechanism=config.kafka_sasl_mechanism,
        sasl_username=config.kafka_sasl_username,
        sasl_password=config.kafka_sasl_password,
        ssl_cafile=config.kafka_ssl_cafile,
    )
    try:
        settings.connection()
    except ValueError as exc:
        raise ConfigError("STRATA_KAFKA_SASL_USERNAME", str(exc)) from exc
    return settings


class ServiceRuntime:
    """Owns a service's Postgres pool, Kafka clients, gRPC server, metrics and threads."""

    def __init__(
        self,
        config: ServiceConfig,
        migrations: Sequence[Migration] = (),
        *,
        grpc_workers: int = 16,
    ) -> None:
        self.config = config
        self.grpc_workers = grpc_workers
        self.migrations = [*kit_migrations(), *migrations]
        self.metrics = ServiceMetrics(config.service)
        self.db = Database(config.pg_dsn, config.schema, max_size=config.pg_pool_max)
        self.kafka = kafka_settings(config)
        self.producer = EventProducer(self.kafka)
        self.incarnation = BrokerIncarnation(self.kafka, self.producer)
        self.relay = OutboxRelay(
            self.db,
            self.producer,
            self.incarnation,
            self.metrics,
            retention_s=config.outbox_retention_s,
        )
        self.consumers: list[EventConsumer] = []
        self._bindings: list[ServicerBinding] = []
        self._checks: dict[str, Callable[[], bool]] = {
            "postgres": self.db.ping,
            "kafka": self._broker_reachable,
        }
        self._background: list[tuple[str, Callable[[threading.Event], None]]] = []
        self._startup: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: Servers | None = None
        self._metrics_server: Any = None
        if config.tls is None:
            raise ValueError("ServiceConfig.tls is not set: build it with load_service_config")
        tls: TlsConfig = config.tls
        self.guard = Guard(
            config.identity or config.service,
            _NoDirectory(),
            OutboxAudit(self.db.transaction),
            FailureLimiter(config.auth_failure_limit),
            peer_of=peer_of,
            service_keys=(
                ServiceKeys(config.service_secret)
                if not tls.enabled and config.service_secret
                else None
            ),
        )
        self.health: HealthMonitor | None = None
        self.endpoints: Endpoints | None = None

    # -- wiring -----------------------------------------------------------

    def add_servicer(self, binding: ServicerBinding) -> None:
        self._bindings.append(binding)

    def set_directory(self, directory: Directory) -> None:
        """How this service resolves people's tokens (the gateway's WhoAmI, or its own)."""
        self.guard.directory = directory

    def channel(self, target: str) -> grpc.Channel:
        """A channel to another service, on which this one calls as itself."""
        return service_channel(target, self.config)

    def add_consumer(
        self,
        handlers: Mapping[str, TopicHandler],
        group: str | None = None,
        *,
        max_poll_records: int = 200,
        defer_limit_s: float = 60.0,
    ) -> EventConsumer:
        """Consume `handlers`' topics; the group defaults to `strata-<service>`."""
        consumer = EventConsumer(
            settings=self.kafka,
            group=group or f"strata-{self.config.service}",
            handlers=handlers,
            db=self.db,
            incarnation=self.incarnation,
            metrics=self.metrics,
            service=self.config.service,
            max_attempts=self.config.consumer_max_attempts,
            max_poll_records=max_poll_records,
            defer_limit_s=defer_limit_s,
        )
        self.consumers.append(consumer)
        self._checks[f"consumer:{consumer.group}"] = consumer.joined.is_set
        return consumer

    def add_check(self, name: str, check: Callable[[], bool]) -> None:
        """A further dependency that must be up for the service to be SERVING."""
        self._checks[name] = check

    def add_startup(self, step: Callable[[], None]) -> None:
        """Run `step` once at start, after migrations and before serving."""
        self._startup.append(step)

    def add_background(self, name: str, loop: Callable[[threading.Event], None]) -> None:
        """A loop run in its own thread until the stop event is set."""
        self._background.append((name, loop))

    # -- lifecycle --------------------------------------------------------

    def _broker_reachable(self) -> bool:
        self.incarnation.current(max_age_s=self.config.health_interval_s)
        return True

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> Endpoints:
        """Migrate, then start metrics, gRPC, health, relay, consumers; returns endpoints."""
        cfg = self.config
        migrate(cfg.pg_dsn, cfg.schema, self.migrations)
        self.db.open()
        for step in self._startup:
            step()
        self._metrics_server, metrics_port = self.metrics.serve(cfg.metrics_port, cfg.grpc_host)
        self._server = create_server(
            self._bindings,
            self.metrics,
            host=cfg.grpc_host,
            port=cfg.grpc_port,
            max_workers=self.grpc_workers,
            credentials=server_credentials(cfg.tls),
            guard=self.guard if self._bindings else None,
            health_port=cfg.health_port,
        )
        grpc_port = self._server.port
        self.health = HealthMonitor(
            self._server.health,
            [b.full_name for b in self._bindings],
            self._checks,
            self.metrics,
            interval_s=cfg.health_interval_s,
        )
        self._server.start()
        self._spawn("health", self.health.run)
        self._spawn("outbox-relay", self.relay.run)
        for consumer in self.consumers:
            self._spawn(f"consumer-{consumer.group}", consumer.run)
        for name, loop in self._background:
            self._spawn(name, loop)
        self.endpoints = Endpoints(
            grpc_port=grpc_port, metrics_port=metrics_port, health_port=self._server.health_port
        )
        log.info(
            "%s started: grpc %s:%d (%s), metrics %s:%d",
            cfg.service,
            cfg.grpc_host,
            grpc_port,
            "mutual TLS" if cfg.tls.enabled else "plaintext",
            cfg.grpc_host,
            metrics_port,
        )
        return self.endpoints

    def stop(self, grace_s: float | None = None) -> None:
        """Graceful shutdown: NOT_SERVING, drain RPCs, stop loops, flush the outbox."""
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        if self.health is not None:
            self.health.shutting_down()
        if self._server is not None:
            self._server.stop(grace).wait(grace)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self.relay.drain(timeout_s=max(0.0, deadline - time.monotonic()))
        self.incarnation.close()
        self.producer.close(timeout_s=max(0.1, deadline - time.monotonic()))
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
        self.db.close()
        log.info("%s stopped", self.config.service)

    def run(self) -> None:
        """Start, then block until SIGTERM or SIGINT, then stop gracefully."""
        signalled = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            signalled.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while not signalled.wait(1.0):
            pass
        self.stop()


def main_guard(service: str, build: Callable[[ServiceConfig], ServiceRuntime]) -> int:
    """Entry point shared by every `python -m strata.<service>`: config errors exit 2."""
    import os

    from strata.common.config import load_service_config

    try:
        config = load_service_config(service, os.environ)
    except ConfigError as exc:
        print(f"strata.{service}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level)
    try:
        runtime = build(config)
    except ConfigError as exc:
        print(f"strata.{service}: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        runtime.run()
    except ConfigError as exc:
        # Raised by a startup step (e.g. a contract file the gateway is told to load).
        print(f"strata.{service}: configuration error: {exc}", file=sys.stderr)
        runtime.db.close()
        return EXIT_CONFIG
    except OSError as exc:
        print(f"strata.{service}: {exc}", file=sys.stderr)
        return 1
    return 0
