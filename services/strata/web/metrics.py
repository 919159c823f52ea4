"""The web service's Prometheus metrics (strata_web_*)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)


class WebMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "strata_web_http_requests_total",
            "HTTP requests, by route template, method and status class",
            ["route", "method", "status"],
            registry=r,
        )
        self.seconds = Histogram(
            "strata_web_http_request_seconds",
            "HTTP request time, by route template",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.sign_ins = Counter(
            "strata_web_sign_ins_total",
            "Sign-in attempts, by kind (token, link) and outcome (ok, refused)",
            ["kind", "outcome"],
            registry=r,
        )

    def serve(self, port: int, host: str) -> tuple[Any, int]:
        """Serve /metrics; returns (server, bound port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server, int(server.server_port)
