"""Prometheus metrics every service exposes (`strata_<service>_...`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    """The kit's metrics for one service, in the service's own registry."""

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry or CollectorRegistry()
        p = f"strata_{service}"
        r = self.registry
        self.events_consumed = Counter(
            f"{p}_events_consumed_total",
            "Events read from Kafka, by topic and outcome",
            ["topic", "outcome"],
            registry=r,
        )
        self.events_published = Counter(
            f"{p}_events_published_total",
            "Events published to Kafka, by topic",
            ["topic"],
            registry=r,
        )
        self.handler_seconds = Histogram(
            f"{p}_handler_seconds",
            "Event handler time, by topic",
            ["topic"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            f"{p}_consumer_lag_messages",
            "Messages behind the log end, by topic and partition",
            ["topic", "partition"],
            registry=r,
        )
        self.outbox_backlog = Gauge(
            f"{p}_outbox_backlog_events", "Outbox events not yet published", registry=r
        )
        self.outbox_republished = Counter(
            f"{p}_outbox_republished_total",
            "Events published again after the broker lost its log",
            registry=r,
        )
        self.outbox_errors = Counter(
            f"{p}_outbox_errors_total", "Failed outbox relay rounds", registry=r
        )
        self.grpc_requests = Counter(
            f"{p}_grpc_requests_total",
            "gRPC requests, by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.grpc_seconds = Histogram(
            f"{p}_grpc_request_seconds",
            "gRPC request time, by method",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.dependency_up = Gauge(
            f"{p}_dependency_up",
            "1 when a dependency answers its health check",
            ["dependency"],
            registry=r,
        )
        self.serving = Gauge(f"{p}_serving", "1 while the service reports SERVING", registry=r)

    def serve(self, port: int, host: str = "127.0.0.1") -> tuple[Any, int]:
        """Serve /metrics on `port` (0: any free); returns (server, bound port)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server, int(server.server_port)


def _method_name(full: str) -> str:
    # "/strata.v1.Sampler/NextBatch" -> "Sampler/NextBatch": small, fixed label set.
    return full.rsplit(".", 1)[-1] if full else "unknown"


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every gRPC request by method and status code and times it."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def _record(
        self, method: str, context: grpc.ServicerContext, started: float, failed: bool
    ) -> None:
        code = context.code() if hasattr(context, "code") else None
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        self.metrics.grpc_requests.labels(method=method, code=code.name).inc()
        self.metrics.grpc_seconds.labels(method=method).observe(time.perf_counter() - started)

    def _unary(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(request_or_iterator: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            failed = True
            try:
                response = behavior(request_or_iterator, context)
                failed = False
                return response
            finally:
                self._record(method, context, started, failed)

        return wrapper

    def _streaming(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(request_or_iterator: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            failed = True
            try:
                yield from behavior(request_or_iterator, context)
                failed = False
            finally:
                self._record(method, context, started, failed)

        return wrapper

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = _method_name(handler_call_details.method)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, handler.stream_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )
