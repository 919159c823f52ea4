"""`python -m strata.web`: wire the web service and run it."""

from __future__ import annotations

import logging
import os
import sys

import grpc
import uvicorn
from grpc_health.v1 import health_pb2_grpc

from strata.common.config import ConfigError
from strata.common.grpcserver import check_health
from strata.common.service import EXIT_CONFIG, configure_logging, identity_channel
from strata.web.app import create_app
from strata.web.backends import Backends
from strata.web.config import WebConfig, load_web_config
from strata.web.metrics import WebMetrics

log = logging.getLogger("strata.web")

SERVICES = ("gateway", "quality", "sampler", "inference", "training")


def build(config: WebConfig) -> tuple[uvicorn.Server, Backends, WebMetrics]:
    """The web process: channels to every service as the web identity, the app, its server."""
    channels: dict[str, grpc.Channel] = {
        name: identity_channel(
            getattr(config, f"{name}_address"), config.tls, "web", config.service_secret
        )
        for name in SERVICES
    }
    backends = Backends(channels)
    metrics = WebMetrics()
    gateway_health = health_pb2_grpc.HealthStub(channels["gateway"])
    app = create_app(
        backends,
        metrics,
        session_ttl_s=config.session_ttl_s,
        secure_always=config.secure_cookies == "always",
        ready=lambda: check_health(gateway_health),
        threads=config.threads,
    )

    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="warning",
            access_log=False,  # request lines would carry ids; metrics count requests
            proxy_headers=True,
            forwarded_allow_ips=config.forwarded_allow_ips,
            server_header=False,
        )
    )
    return server, backends, metrics


def main() -> int:
    try:
        config = load_web_config(os.environ)
    except ConfigError as exc:
        print(f"strata web: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(config.log_level)
    server, backends, metrics = build(config)
    _, metrics_port = metrics.serve(config.metrics_port, config.host)
    # uvicorn stops on SIGTERM by itself: in-flight requests finish, then it exits.
    log.info("web on http://%s:%d, metrics on %d", config.host, config.port, metrics_port)
    try:
        server.run()
    finally:
        backends.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
