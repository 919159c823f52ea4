"""The embedded stack (`strata up`): infrastructure, topics, migrations, service processes."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from strata.cli.prometheus import EmbeddedPrometheus
from strata.common.bus import BrokerIncarnation, EventProducer, KafkaSettings, wait_for_broker
from strata.common.config import (
    load,
    parse_bootstrap,
    parse_dsn,
    parse_int,
    parse_port,
    setting,
)
from strata.common.db import Migration, kit_migrations, load_migrations, migrate, package_migrations
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, PortInUseError, port_is_free
from strata.common.grpcserver import check_health
from strata.common.tls import TlsConfig, TlsFiles, ensure_local_pki, open_channel
from strata.gateway.auth import new_token

log = logging.getLogger(__name__)

# In the order they are started: producers of what others consume come first.
SERVICES = ("sampler", "inference", "gateway", "quality", "training")
# The browser's service: HTTP, no gRPC port; it calls the others as the signed-in person.
WEB = "web"


def implemented_services() -> list[str]:
    """The services of SERVICES whose package exists in this build."""
    return [s for s in SERVICES if _runnable(s)]


def _runnable(service: str) -> bool:
    # A package can exist (its pure logic landing first) before it can run.
    if importlib.util.find_spec(f"strata.{service}") is None:
        return False
    return importlib.util.find_spec(f"strata.{service}.__main__") is not None


def service_migrations(service: str) -> list[Migration]:
    """The kit's migrations plus the service's own, if it has any."""
    folder = package_migrations(f"strata.{service}")
    own = load_migrations(service, folder) if folder.is_dir() else []
    return [*kit_migrations(), *own]


def _parse_path(raw: str) -> Path:
    return Path(raw).expanduser()


@dataclass(frozen=True)
class StackConfig:
    """`strata up` settings; external Postgres/Kafka replace the embedded ones."""

    home: Path = setting(
        "STRATA_HOME",
        _parse_path,
        Path(".strata"),
        "where the embedded stack keeps its data and logs",
    )
    pg_dsn: str = setting(
        "STRATA_PG_DSN", parse_dsn, "", "use this Postgres instead of starting the embedded one"
    )
    kafka_bootstrap: str = setting(
        "STRATA_KAFKA_BOOTSTRAP",
        parse_bootstrap,
        "",
        "use this Kafka instead of starting the embedded broker",
    )
    # Every default port lies below 32768, where Linux's ephemeral range (32768-60999)
    # starts: an outgoing connection's local port there can hold a listening port at
    # the moment the stack starts (`make demo` once failed on 50052 that way).
    pg_port: int = setting("STRATA_PG_PORT", parse_port, 15432, "embedded Postgres port")
    kafka_port: int = setting("STRATA_KAFKA_PORT", parse_port, 19092, "embedded broker port")
    grpc_base_port: int = setting(
        "STRATA_GRPC_BASE_PORT",
        parse_port,
        15051,
        "first service gRPC port; each service gets the next one",
    )
    metrics_base_port: int = setting(
        "STRATA_METRICS_BASE_PORT",
        parse_port,
        9464,
        "first /metrics port; each service gets the next one",
    )
    host: str = setting("STRATA_GRPC_HOST", default="127.0.0.1", help="bind address")
    web_port: int = setting(
        "STRATA_WEB_PORT", parse_port, 8080, "the browser's port: the UI and /api (web service)"
    )
    prometheus_port: int = setting(
        "STRATA_PROMETHEUS_PORT", parse_port, 9090, "Prometheus port (`strata up --prometheus`)"
    )
    prometheus_bin: str = setting(
        "STRATA_PROMETHEUS_BIN", default="", help="the prometheus binary (default: on PATH)"
    )
    prometheus_scrape_s: int = setting(
        "STRATA_PROMETHEUS_SCRAPE_S",
        parse_int(1, 3600),
        15,
        "scrape and rule evaluation interval of the stack's Prometheus",
    )


def load_stack_config(environ: Mapping[str, str]) -> StackConfig:
    return load(StackConfig, environ)


# The bootstrap admin token lives STRATA_GATEWAY_ADMIN_TOKEN_TTL_DAYS (30) from its first use;
# `strata up` replaces its own a few days before, and the gateway revokes the old one.
ADMIN_TOKEN_ROTATE_S = 25 * 86_400


@dataclass
class ServiceProcess:
    name: str
    grpc_port: int
    metrics_port: int
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Stack:
    """Starts and stops the whole stack; `report` is told of every step."""

    config: StackConfig
    report: Callable[[str, str, float], None] = lambda part, detail, secs: None
    services: list[str] = field(default_factory=implemented_services)
    postgres: EmbeddedPostgres | None = None
    broker: EmbeddedBroker | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    pg_dsn: str = ""
    kafka_bootstrap: str = ""
    with_prometheus: bool = False
    prometheus: EmbeddedPrometheus | None = None
    tls: dict[str, TlsFiles] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.config.home / "stack.json"

    @property
    def admin_token_file(self) -> Path:
        return self.config.home / "admin.token"

    def ports(self, name: str) -> tuple[int, int]:
        """(gRPC, metrics) port of a service: fixed by its place in SERVICES."""
        i = SERVICES.index(name)
        return self.config.grpc_base_port + i, self.config.metrics_base_port + i

    def address(self, name: str) -> str:
        return f"{self.config.host}:{self.ports(name)[0]}"

    @property
    def tls_dir(self) -> Path:
        return self.config.home / "tls"

    @property
    def plaintext(self) -> bool:
        """Only when asked for explicitly (STRATA_TLS_MODE=plaintext)."""
        return os.environ.get("STRATA_TLS_MODE", "").strip().lower() == "plaintext"

    def client_tls(self) -> TlsConfig:
        """How the CLI, the demo and health checks reach this stack's services."""
        if self.plaintext:
            return TlsConfig("plaintext")
        if not self.tls:
            self.tls = self._make_pki()
        return self.tls["cli"].config()

    def channel(self, name: str) -> grpc.Channel:
        """A channel to service `name` as a person's tool (the `cli` certificate)."""
        return open_channel(self.address(name), self.client_tls())

    def _make_pki(self) -> dict[str, TlsFiles]:
        hosts = sorted({"localhost", "127.0.0.1", self.config.host} - {"0.0.0.0", ""})
        return ensure_local_pki(self.tls_dir, (*SERVICES, WEB), hosts, clients=("cli",))

    @property
    def with_web(self) -> bool:
        """The browser comes up with a stack that has every service it calls."""
        return set(SERVICES) <= set(self.services) and _runnable(WEB)

    @property
    def web_url(self) -> str:
        return f"http://{self.config.host}:{self.config.web_port}"

    @property
    def web_metrics_port(self) -> int:
        return self.config.metrics_base_port + len(SERVICES)

    def admin_token(self) -> str:
        """The bootstrap admin token of this stack (mode 0600), replaced when it nears the
        end of its lifetime; the gateway then revokes the old one."""
        path = self.admin_token_file
        if path.exists() and time.time() - path.stat().st_mtime < ADMIN_TOKEN_ROTATE_S:
            return path.read_text().strip()
        token = new_token()
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        path.write_text(token + "\n")
        return token

    def _service_secret(self) -> str:
        """The shared secret of a plaintext stack's service identities, made once."""
        path = self.config.home / "service.secret"
        if not path.exists():
            path.touch(mode=0o600)
            path.write_text(new_token() + "\n")
        return path.read_text().strip()

    def _check_ports(self) -> None:
        cfg = self.config
        wanted = []
        if not cfg.pg_dsn:
            wanted.append(("Postgres", cfg.pg_port, "STRATA_PG_PORT"))
        if not cfg.kafka_bootstrap:
            wanted.append(("the Kafka broker", cfg.kafka_port, "STRATA_KAFKA_PORT"))
        for name in self.services:
            grpc_port, metrics_port = self.ports(name)
            wanted.append((f"{name} gRPC", grpc_port, "STRATA_GRPC_BASE_PORT"))
            wanted.append((f"{name} metrics", metrics_port, "STRATA_METRICS_BASE_PORT"))
        if self.with_web:
            wanted.append(("the web UI", cfg.web_port, "STRATA_WEB_PORT"))
            wanted.append(("web metrics", self.web_metrics_port, "STRATA_METRICS_BASE_PORT"))
        if self.with_prometheus:
            wanted.append(("Prometheus", cfg.prometheus_port, "STRATA_PROMETHEUS_PORT"))
        for what, port, variable in wanted:
            if not port_is_free(cfg.host, port):
                raise PortInUseError(what, cfg.host, port, variable)

    def start(self) -> None:
        """Bring everything up and wait until every service reports SERVING."""
        cfg = self.config
        self._check_ports()
        cfg.home.mkdir(parents=True, exist_ok=True)
        logs = cfg.home / "logs"
        logs.mkdir(exist_ok=True)

        t = time.monotonic()
        if cfg.pg_dsn:
            self.pg_dsn = cfg.pg_dsn
            self.report("postgres", f"external {_redact(cfg.pg_dsn)}", 0.0)
        else:
            self.postgres = EmbeddedPostgres(cfg.home / "pgdata", cfg.pg_port, cfg.host)
            self.postgres.log_path = logs / "postgres.log"
            self.postgres.start()
            self.pg_dsn = self.postgres.dsn
            self.report("postgres", f"{cfg.host}:{cfg.pg_port}", time.monotonic() - t)

        t = time.monotonic()
        if cfg.kafka_bootstrap:
            self.kafka_bootstrap = cfg.kafka_bootstrap
        else:
            self.broker = EmbeddedBroker(cfg.kafka_port, cfg.host, logs / "broker.log")
            self.broker.start()
            self.kafka_bootstrap = self.broker.bootstrap
        settings = KafkaSettings(self.kafka_bootstrap, client_id="strata-up")
        wait_for_broker(settings)
        producer = EventProducer(settings)
        incarnation = BrokerIncarnation(settings, producer)
        try:
            marker = incarnation.ensure()
        finally:
            incarnation.close()
            producer.close()
        where = "external " if cfg.kafka_bootstrap else ""
        self.report(
            "kafka",
            f"{where}{self.kafka_bootstrap} (topics ready, incarnation {marker[:8]})",
            time.monotonic() - t,
        )

        t = time.monotonic()
        if not self.plaintext:
            self.tls = self._make_pki()
            self.report(
                "tls", f"mutual, CA and certificates in {self.tls_dir}", time.monotonic() - t
            )
        else:
            self.report("tls", "OFF: plaintext, as STRATA_TLS_MODE asks", 0.0)

        t = time.monotonic()
        for name in self.services:
            migrate(self.pg_dsn, name, service_migrations(name))
        if self.services:
            self.report("migrations", f"{len(self.services)} schemas", time.monotonic() - t)

        for name in self.services:
            self._spawn(name, *self.ports(name), logs)
        for sp in self.processes:
            t = time.monotonic()
            self._wait_serving(sp)
            self.report(
                sp.name,
                f"grpc {cfg.host}:{sp.grpc_port}  metrics "
                f"http://{cfg.host}:{sp.metrics_port}/metrics",
                time.monotonic() - t,
            )
        if self.with_web:
            t = time.monotonic()
            self.processes.append(self._start_web(logs))
            self.report("web", self.web_url, time.monotonic() - t)
        if self.with_prometheus:
            t = time.monotonic()
            targets = {sp.name: f"{cfg.host}:{sp.metrics_port}" for sp in self.processes}
            self.prometheus = EmbeddedPrometheus(
                cfg.home / "prometheus",
                cfg.host,
                cfg.prometheus_port,
                targets,
                cfg.prometheus_scrape_s,
                cfg.prometheus_bin,
            )
            self.prometheus.start()
            n = self.prometheus.rules_copied
            rules = f"{n} rule files" if n else "no rule files found: alerts off"
            self.report("prometheus", f"{self.prometheus.url} ({rules})", time.monotonic() - t)
        self._write_state()

    def _environ(self, name: str) -> dict[str, str]:
        """What every process of the stack is started with: its identity, the others'
        addresses."""
        env = dict(os.environ)
        if self.plaintext:
            env.setdefault("STRATA_SERVICE_SECRET", self._service_secret())
        else:
            env.update(self.tls[name].environ())
        for other in SERVICES:
            env.setdefault(f"STRATA_{other.upper()}_ADDRESS", self.address(other))
        return env

    def _popen(self, name: str, env: dict[str, str], logs: Path) -> tuple[Any, Path]:
        log_path = logs / f"{name}.log"
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", f"strata.{name}"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return proc, log_path

    def _spawn(self, name: str, grpc_port: int, metrics_port: int, logs: Path) -> None:
        env = self._environ(name)
        env.update(
            {
                "STRATA_PG_DSN": self.pg_dsn,
                "STRATA_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
                "STRATA_GRPC_HOST": self.config.host,
                f"STRATA_{name.upper()}_GRPC_PORT": str(grpc_port),
                f"STRATA_{name.upper()}_METRICS_PORT": str(metrics_port),
                "STRATA_GATEWAY_ADMIN_TOKEN": self.admin_token(),
            }
        )
        # Model artifacts on a path training writes and inference reads; Ray runs beside them.
        home = self.config.home.resolve()
        env.setdefault("STRATA_TRAINING_ARTIFACT_ROOT", f"file://{home / 'artifacts'}")
        env.setdefault("STRATA_TRAINING_RAY_STORAGE", str(home / "ray"))
        proc, log_path = self._popen(name, env, logs)
        self.processes.append(ServiceProcess(name, grpc_port, metrics_port, proc, log_path))

    def _start_web(self, logs: Path, timeout_s: float = 60.0) -> ServiceProcess:
        """The web service, once it answers ready (the gateway SERVING behind it)."""
        env = self._environ(WEB)
        env.update(
            {
                "STRATA_WEB_HOST": self.config.host,
                "STRATA_WEB_PORT": str(self.config.web_port),
                "STRATA_WEB_METRICS_PORT": str(self.web_metrics_port),
            }
        )
        proc, log_path = self._popen(WEB, env, logs)
        sp = ServiceProcess(WEB, 0, self.web_metrics_port, proc, log_path)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"web exited with code {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(f"{self.web_url}/readyz", timeout=1.0) as reply:
                    if reply.status == 200:
                        return sp
            except OSError:
                pass
            time.sleep(0.2)
        proc.kill()
        raise TimeoutError(f"web was not ready within {timeout_s:.0f}s; see {log_path}")

    def _wait_serving(self, sp: ServiceProcess, timeout_s: float = 120.0) -> None:
        target = f"{self.config.host}:{sp.grpc_port}"
        deadline = time.monotonic() + timeout_s
        with open_channel(target, self.client_tls()) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline:
                if sp.proc.poll() is not None:
                    raise RuntimeError(
                        f"{sp.name} exited with code {sp.proc.returncode}; see {sp.log_path}"
                    )
                if check_health(stub):
                    return
                time.sleep(0.2)
        raise TimeoutError(f"{sp.name} was not SERVING within {timeout_s:.0f}s; see {sp.log_path}")

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "pg_dsn": self.pg_dsn,
            "kafka_bootstrap": self.kafka_bootstrap,
            "admin_token_file": str(self.admin_token_file),
            "tls_dir": None if self.plaintext else str(self.tls_dir),
            "prometheus": self.prometheus.url if self.prometheus else None,
            "web": self.web_url if self.with_web else None,
            # The gRPC services; the web (HTTP) is above, its process under "processes".
            "services": {
                sp.name: {
                    "grpc": f"{self.config.host}:{sp.grpc_port}",
                    "metrics": f"http://{self.config.host}:{sp.metrics_port}/metrics",
                    "pid": sp.proc.pid,
                }
                for sp in self.processes
                if sp.name != WEB
            },
            "processes": {
                sp.name: {
                    "metrics": f"http://{self.config.host}:{sp.metrics_port}/metrics",
                    "pid": sp.proc.pid,
                }
                for sp in self.processes
            },
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def failed_processes(self) -> list[ServiceProcess]:
        return [sp for sp in self.processes if sp.proc.poll() is not None]

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop Prometheus, SIGTERM every service, then the broker and Postgres."""
        if self.prometheus is not None:
            self.prometheus.stop()
        for sp in self.processes:
            if sp.proc.poll() is None:
                sp.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for sp in self.processes:
            try:
                sp.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                sp.proc.kill()
                sp.proc.wait(timeout=5)
        self.processes.clear()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self.state_file.unlink(missing_ok=True)


def _redact(dsn: str) -> str:
    """A DSN without its password, for printing."""
    if "@" in dsn and "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return dsn
