"""gRPC server bootstrap: health that reflects real dependencies, reflection, metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from strata.common.metrics import MetricsInterceptor, ServiceMetrics

log = logging.getLogger(__name__)

# The health service name a Kubernetes liveness probe asks for (readiness asks for "").
LIVENESS = "liveness"

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    """End the call with `code` and a message a person can act on."""
    context.abort(code, message)
    raise AssertionError("unreachable")  # context.abort raises


@dataclass(frozen=True)
class ServicerBinding:
    """A servicer and the generated `add_..._to_server` function that mounts it."""

    add_to_server: Callable[[Any, grpc.Server], None]
    servicer: Any
    full_name: str  # e.g. "strata.v1.Sampler"


def create_server(
    bindings: Sequence[ServicerBinding],
    metrics: ServiceMetrics,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = 16,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Build (not start) a server with health, reflection and metrics; returns its port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=[MetricsInterceptor(metrics)],
        options=[("grpc.so_reuseport", 0)],
    )
    for b in bindings:
        b.add_to_server(b.servicer, server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.full_name for b in bindings]
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"cannot bind gRPC to {host}:{port}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}: the port is in use")
    for name in ["", *names]:
        health_servicer.set(name, NOT_SERVING)
    # Liveness says only that the process answers: a lost dependency makes a replica
    # unready (the "" service), never restarts it.
    health_servicer.set(LIVENESS, SERVING)
    return server, bound, health_servicer


class HealthMonitor:
    """Sets SERVING only while every dependency check passes; re-checks periodically."""

    def __init__(
        self,
        health_servicer: health.HealthServicer,
        service_names: Sequence[str],
        checks: Mapping[str, Callable[[], bool]],
        metrics: ServiceMetrics,
        interval_s: float = 1.0,
    ) -> None:
        self.health_servicer = health_servicer
        self.service_names = ["", *service_names]
        self.checks = dict(checks)
        self.metrics = metrics
        self.interval_s = interval_s
        self.serving = False
        self._shutting_down = False
        self._lock = threading.Lock()

    def check_once(self) -> dict[str, bool]:
        """Run every check; set the health status from the results."""
        results = {}
        for name, check in self.checks.items():
            try:
                ok = bool(check())
            except Exception as exc:
                log.debug("health check %s failed: %s", name, exc)
                ok = False
            results[name] = ok
            self.metrics.dependency_up.labels(dependency=name).set(1 if ok else 0)
        with self._lock:
            if self._shutting_down:
                return results
            serving = all(results.values())
            if serving != self.serving:
                failing = [n for n, ok in results.items() if not ok]
                if serving:
                    log.info("health: SERVING")
                else:
                    log.warning("health: NOT_SERVING (down: %s)", ", ".join(failing))
            self.serving = serving
            status = SERVING if serving else NOT_SERVING
            for name in self.service_names:
                self.health_servicer.set(name, status)
            self.metrics.serving.set(1 if serving else 0)
        return results

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.check_once()
            stop.wait(self.interval_s)

    def shutting_down(self) -> None:
        """Report NOT_SERVING from now on, whatever the checks say."""
        with self._lock:
            self._shutting_down = True
            self.serving = False
            self.health_servicer.enter_graceful_shutdown()
            self.metrics.serving.set(0)
