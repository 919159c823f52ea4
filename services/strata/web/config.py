"""The web service's settings (STRATA_WEB_*), read and checked at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from strata.common.config import (
    load,
    load_identity,
    parse_address,
    parse_choice,
    parse_int,
    parse_log_level,
    parse_port,
    setting,
)


@dataclass(frozen=True)
class WebConfig:
    """Where the web service listens, which services it calls, how sessions behave."""

    gateway_address: str = setting(
        "STRATA_GATEWAY_ADDRESS", parse_address, help="the annotation gateway, host:port"
    )
    quality_address: str = setting(
        "STRATA_QUALITY_ADDRESS", parse_address, help="the quality service, host:port"
    )
    sampler_address: str = setting(
        "STRATA_SAMPLER_ADDRESS", parse_address, help="the sampler, host:port"
    )
    inference_address: str = setting(
        "STRATA_INFERENCE_ADDRESS", parse_address, help="the inference service, host:port"
    )
    training_address: str = setting(
        "STRATA_TRAINING_ADDRESS", parse_address, help="the training service, host:port"
    )
    host: str = setting("STRATA_WEB_HOST", default="127.0.0.1", help="HTTP bind address")
    port: int = setting("STRATA_WEB_PORT", parse_port, 8080, "HTTP port of the UI and /api")
    metrics_port: int = setting(
        "STRATA_WEB_METRICS_PORT", parse_port, 0, "Prometheus /metrics port (0: any free)"
    )
    session_ttl_s: int = setting(
        "STRATA_WEB_SESSION_TTL_S",
        parse_int(60, 86_400),
        12 * 3600,
        "how long a browser session lasts (never longer than the token that started it)",
    )
    secure_cookies: str = setting(
        "STRATA_WEB_SECURE_COOKIES",
        parse_choice("auto", "always"),
        "auto",
        "auto: Secure cookies when the request came over HTTPS (directly or through a TLS "
        "Ingress); always: Secure on every response",
    )
    forwarded_allow_ips: str = setting(
        "STRATA_WEB_FORWARDED_ALLOW_IPS",
        default="127.0.0.1",
        help="proxies (the Ingress) whose X-Forwarded-For/-Proto headers are believed",
    )
    threads: int = setting(
        "STRATA_WEB_THREADS",
        parse_int(4, 1000),
        64,
        "requests served at once (each waits on a gRPC call)",
    )
    log_level: str = setting("STRATA_LOG_LEVEL", parse_log_level, "INFO", "log level")
    service_secret: str = setting(
        "STRATA_SERVICE_SECRET",
        default="",
        help="plaintext stacks only: the secret every service signs its identity with",
    )
    # How this process speaks gRPC (STRATA_TLS_*; strata.common.tls).
    tls: Any = None


def load_web_config(environ: Mapping[str, str]) -> WebConfig:
    """The `WebConfig` in `environ`; raises ConfigError."""
    config = load(WebConfig, environ)
    return replace(config, tls=load_identity(environ, config.service_secret))
