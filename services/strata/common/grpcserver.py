"""gRPC server bootstrap: health that reflects real dependencies, reflection, metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from strata.common.authz import Guard, GuardInterceptor
from strata.common.matrix import missing_rules
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


def check_rules(bindings: Sequence[ServicerBinding]) -> None:
    """Every RPC a server mounts has a rule in the access matrix; ValueError names those
    that have none."""
    missing = []
    for b in bindings:
        service = descriptor_pool.Default().FindServiceByName(b.full_name)
        missing += missing_rules(b.full_name, [m.name for m in service.methods])
    if missing:
        raise ValueError(
            "RPCs without an access rule (add them to strata.common.matrix.MATRIX): "
            + ", ".join(missing)
        )


@dataclass
class Servers:
    """A service's gRPC server, and the plaintext health-only one when configured."""

    server: grpc.Server
    port: int
    health: health.HealthServicer
    health_server: grpc.Server | None = None
    health_port: int | None = None

    def start(self) -> None:
        self.server.start()
        if self.health_server is not None:
            self.health_server.start()

    def stop(self, grace: float) -> Any:
        if self.health_server is not None:
            self.health_server.stop(grace)
        return self.server.stop(grace)


def _bind(
    server: grpc.Server, host: str, port: int, credentials: grpc.ServerCredentials | None
) -> int:
    try:
        if credentials is None:
            bound = server.add_insecure_port(f"{host}:{port}")
        else:
            bound = server.add_secure_port(f"{host}:{port}", credentials)
    except RuntimeError as exc:
        raise OSError(f"cannot bind gRPC to {host}:{port}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot bind gRPC to {host}:{port}: the port is in use")
    return bound


def create_server(
    bindings: Sequence[ServicerBinding],
    metrics: ServiceMetrics,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_workers: int = 16,
    credentials: grpc.ServerCredentials | None = None,
    guard: Guard | None = None,
    health_port: int | None = None,
) -> Servers:
    """Build (not start) a server with health, reflection, metrics and, with a guard, the
    access matrix on every call; `credentials` None serves plaintext. With `health_port`,
    a second plaintext server answers only health (Kubernetes' gRPC probes cannot speak
    TLS)."""
    interceptors: list[grpc.ServerInterceptor] = [MetricsInterceptor(metrics)]
    if guard is not None:
        check_rules(bindings)
        interceptors.append(GuardInterceptor(guard))
    elif bindings:
        raise ValueError("a server with RPCs needs a guard: every RPC authenticates its caller")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        interceptors=interceptors,
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
    bound = _bind(server, host, port, credentials)
    servers = Servers(server, bound, health_servicer)
    if health_port is not None:
        probe = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="grpc-health"),
            options=[("grpc.so_reuseport", 0)],
        )
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probe)
        servers.health_server = probe
        servers.health_port = _bind(probe, host, health_port, None)
    for name in ["", *names]:
        health_servicer.set(name, NOT_SERVING)
    # Liveness says only that the process answers: a lost dependency makes a replica
    # unready (the "" service), never restarts it.
    health_servicer.set(LIVENESS, SERVING)
    return servers


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


def check_health(stub: health_pb2_grpc.HealthStub, service: str = "") -> bool:
    """True when the server answers SERVING for `service`."""
    try:
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
    except grpc.RpcError:
        return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
