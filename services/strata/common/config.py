"""Configuration: frozen dataclasses read from `STRATA_*` environment variables.

Every field names its variable; `load()` parses and validates all of them at
start-up and raises `ConfigError` naming the first variable that is missing or
malformed, so a service exits before it touches anything.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

_REQUIRED = object()


class ConfigError(Exception):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str, hint: str = "") -> None:
        self.variable = variable
        self.problem = problem
        self.hint = hint
        message = f"{variable} {problem}"
        if hint:
            message += f" ({hint})"
        super().__init__(message)


def setting(
    env: str,
    parse: Callable[[str], Any] = str,
    default: Any = _REQUIRED,
    help: str = "",
) -> Any:
    """Declare a config field read from environment variable `env` (may contain {SERVICE})."""
    metadata = {"env": env, "parse": parse, "help": help, "required": default is _REQUIRED}
    if default is _REQUIRED:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


def parse_int(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """An integer parser with inclusive bounds."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"is not a whole number: {raw!r}") from None
        if low is not None and value < low:
            raise ValueError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}, got {value}")
        return value

    return parse


def parse_float(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """A float parser with inclusive bounds."""

    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"is not a number: {raw!r}") from None
        if low is not None and value < low:
            raise ValueError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise ValueError(f"must be at most {high}, got {value}")
        return value

    return parse


def parse_port(raw: str) -> int:
    """A TCP port; 0 asks the OS for a free one."""
    return parse_int(0, 65535)(raw)


def parse_address(raw: str) -> str:
    """A gRPC target host:port."""
    host, sep, port = raw.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"must be host:port, got {raw!r}")
    return raw.strip()


def parse_dsn(raw: str) -> str:
    """A libpq connection string: a postgres(ql):// URI or key=value pairs."""
    value = raw.strip()
    if value.startswith(("postgresql://", "postgres://")) or re.search(r"\w+=\S", value):
        return value
    raise ValueError(f"is not a Postgres connection string: {raw!r}")


_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def parse_bootstrap(raw: str) -> str:
    """A comma-separated list of host:port Kafka bootstrap servers."""
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or not all(_HOSTPORT.match(p) for p in parts):
        raise ValueError(f"must be host:port[,host:port...], got {raw!r}")
    return ",".join(parts)


def parse_log_level(raw: str) -> str:
    """A logging level name."""
    value = raw.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {raw!r}")
    return value


def parse_choice(*choices: str) -> Callable[[str], str]:
    """One of a fixed set of names (case-insensitive; given back as spelled in `choices`)."""
    by_upper = {c.upper(): c for c in choices}

    def parse(raw: str) -> str:
        value = by_upper.get(raw.strip().upper())
        if value is None:
            raise ValueError(f"must be one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


C = TypeVar("C")


def load(cls: type[C], environ: Mapping[str, str], **names: str) -> C:
    """Build `cls` from `environ`; `names` fill placeholders such as {SERVICE}."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if "env" not in f.metadata:
            if f.name in names:
                values[f.name] = names[f.name]
            continue
        variable = f.metadata["env"].format(**{k.upper(): v.upper() for k, v in names.items()})
        raw = environ.get(variable)
        if raw is None or raw.strip() == "":
            if f.metadata["required"]:
                raise ConfigError(variable, "is not set", f.metadata["help"])
            continue
        try:
            values[f.name] = f.metadata["parse"](raw)
        except ValueError as exc:
            raise ConfigError(variable, str(exc), f.metadata["help"]) from None
    return cls(**values)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(variable, default, help) for every field, for docs and `strata config`."""
    rows = []
    for f in dataclasses.fields(cls):
        if "env" not in f.metadata:
            continue
        default = "required" if f.metadata["required"] else str(f.default) or "(unset)"
        rows.append((f.metadata["env"], default, f.metadata["help"]))
    return rows


@dataclass(frozen=True)
class ServiceConfig:
    """What every Strata service process needs; {SERVICE} is e.g. GATEWAY."""

    service: str
    pg_dsn: str = setting(
        "STRATA_PG_DSN", parse_dsn, help="Postgres connection string, e.g. postgresql://host/strata"
    )
    kafka_bootstrap: str = setting(
        "STRATA_KAFKA_BOOTSTRAP", parse_bootstrap, help="Kafka bootstrap servers, host:port[,...]"
    )
    kafka_security_protocol: str = setting(
        "STRATA_KAFKA_SECURITY_PROTOCOL",
        parse_choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        "PLAINTEXT",
        "how clients talk to Kafka (Strimzi with per-service users: SASL_SSL)",
    )
    kafka_sasl_mechanism: str = setting(
        "STRATA_KAFKA_SASL_MECHANISM",
        parse_choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        "SCRAM-SHA-512",
        "SASL mechanism when the protocol is SASL_*",
    )
    kafka_sasl_username: str = setting(
        "STRATA_KAFKA_SASL_USERNAME", default="", help="this service's Kafka user (SASL_*)"
    )
    kafka_sasl_password: str = setting(
        "STRATA_KAFKA_SASL_PASSWORD", default="", help="its password (from a secret, SASL_*)"
    )
    kafka_ssl_cafile: str = setting(
        "STRATA_KAFKA_SSL_CAFILE", default="", help="CA bundle that signs the brokers (SSL)"
    )
    grpc_host: str = setting("STRATA_GRPC_HOST", default="127.0.0.1", help="gRPC bind address")
    grpc_port: int = setting(
        "STRATA_{SERVICE}_GRPC_PORT", parse_port, 0, "gRPC port of this service (0: any free)"
    )
    metrics_port: int = setting(
        "STRATA_{SERVICE}_METRICS_PORT", parse_port, 0, "Prometheus /metrics port (0: any free)"
    )
    pg_pool_max: int = setting(
        "STRATA_PG_POOL_MAX", parse_int(1, 200), 8, "Postgres connections per process"
    )
    shutdown_grace_s: float = setting(
        "STRATA_SHUTDOWN_GRACE_S", parse_float(0, 300), 5.0, "SIGTERM grace period, seconds"
    )
    consumer_max_attempts: int = setting(
        "STRATA_CONSUMER_MAX_ATTEMPTS",
        parse_int(1, 100),
        3,
        "handler attempts before an event goes to the dead-letter topic",
    )
    max_poll_interval_ms: int = setting(
        "STRATA_KAFKA_MAX_POLL_INTERVAL_MS",
        parse_int(1000, 600_000),
        6000,
        "consumer rebalance timeout; seconds, not kafka-python's 300 s, so groups join fast",
    )
    outbox_retention_s: int = setting(
        "STRATA_OUTBOX_RETENTION_S",
        parse_int(60),
        86_400,
        "how long published events are kept to re-publish after a broker loses its log",
    )
    health_interval_s: float = setting(
        "STRATA_HEALTH_INTERVAL_S", parse_float(0.1, 60), 1.0, "dependency check period, seconds"
    )
    log_level: str = setting("STRATA_LOG_LEVEL", parse_log_level, "INFO", "log level")
    health_port: int | None = setting(
        "STRATA_{SERVICE}_HEALTH_PORT",
        parse_port,
        None,
        "a plaintext port serving only gRPC health, for Kubernetes probes (which cannot "
        "speak TLS); unset: none",
    )
    auth_failure_limit: int = setting(
        "STRATA_AUTH_FAILURE_LIMIT",
        parse_int(1, 1_000_000),
        30,
        "failed sign-ins a minute from one source before it is refused for a while",
    )
    service_secret: str = setting(
        "STRATA_SERVICE_SECRET",
        default="",
        help="plaintext stacks only: the secret every service signs its identity with",
    )
    # How this process speaks gRPC (STRATA_TLS_*; strata.common.tls).
    tls: Any = None
    # The name this service calls others as (its certificate's, on a TLS stack).
    identity: str = ""

    @property
    def schema(self) -> str:
        """The Postgres schema this service owns."""
        return self.service


def load_identity(environ: Mapping[str, str], service_secret: str) -> Any:
    """How this process proves which service it is: its TLS settings (mutual by default),
    or, on a plaintext stack, the shared secret, which must then be set."""
    from strata.common.tls import load_tls_config

    tls = load_tls_config(environ)
    if not tls.enabled and not service_secret:
        raise ConfigError(
            "STRATA_SERVICE_SECRET",
            "is not set",
            "with STRATA_TLS_MODE=plaintext, services prove who they are with this shared "
            "secret; set the same random value for every service",
        )
    return tls


def load_service_config(service: str, environ: Mapping[str, str]) -> ServiceConfig:
    """The `ServiceConfig` of `service` from `environ`; raises ConfigError."""
    config = load(ServiceConfig, environ, service=service)
    tls = load_identity(environ, config.service_secret)
    return dataclasses.replace(config, tls=tls, identity=service)
