"""A kit-built service as a real process: health, metrics, SIGTERM, config errors."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from strata.common.embedded import EmbeddedPostgres, free_port
from strata.common.grpcserver import LIVENESS, check_health

from tests.pki import client_channel

from .conftest import KIT_SERVICE_CMD, kit_service_env, wait_until


def _status(port: int, service: str = "") -> str:
    with client_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


@pytest.fixture
def own_postgres(tmp_path: Path):
    pg = EmbeddedPostgres(tmp_path / "pgdata", free_port())
    pg.start()
    yield pg
    pg.stop()


def _start_service(
    pg_dsn: str, bootstrap: str, grace: str = "3", **extra: str
) -> tuple[subprocess.Popen, int, int]:
    grpc_port, metrics_port = free_port(), free_port()
    env = kit_service_env(
        pg_dsn,
        bootstrap,
        STRATA_KITCHECK_GRPC_PORT=str(grpc_port),
        STRATA_KITCHECK_METRICS_PORT=str(metrics_port),
        STRATA_SHUTDOWN_GRACE_S=grace,
        **extra,
    )
    proc = subprocess.Popen(
        KIT_SERVICE_CMD, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    return proc, grpc_port, metrics_port


def test_health_follows_postgres_down_and_back(own_postgres, infra) -> None:
    proc, port, _ = _start_service(own_postgres.dsn, infra.bootstrap)
    try:
        wait_until(lambda: _status(port) == "SERVING", 30, "SERVING at start")
        own_postgres.stop()
        wait_until(lambda: _status(port) == "NOT_SERVING", 15, "NOT_SERVING without Postgres")
        # Unready, not dead: the Kubernetes liveness probe must not restart it for this.
        assert _status(port, LIVENESS) == "SERVING"
        own_postgres.start()
        wait_until(lambda: _status(port) == "SERVING", 30, "SERVING once Postgres is back")
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_exits_cleanly_within_the_grace_period_and_metrics_count_rpcs(infra) -> None:
    proc, port, metrics_port = _start_service(infra.pg_dsn, infra.bootstrap, grace="3")
    try:
        wait_until(lambda: _status(port) == "SERVING", 30, "SERVING")
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
        assert 'strata_kitcheck_grpc_requests_total{code="OK",method="Health/Check"}' in body
        assert "strata_kitcheck_serving 1.0" in body
        assert 'strata_kitcheck_dependency_up{dependency="postgres"} 1.0' in body
        with client_channel(f"127.0.0.1:{port}") as channel:
            watcher = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
            assert next(watcher).status == health_pb2.HealthCheckResponse.SERVING
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # Health goes NOT_SERVING before the server stops.
            assert next(watcher).status == health_pb2.HealthCheckResponse.NOT_SERVING
        code = proc.wait(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
    output = proc.stdout.read().decode() if proc.stdout else ""
    assert code == 0, output
    assert elapsed < 3 + 2, f"took {elapsed:.1f}s for a 3 s grace period"
    assert "received SIGTERM" in output and "kitcheck stopped" in output


@pytest.mark.parametrize(
    ("drop", "extra", "named"),
    [
        ("STRATA_PG_DSN", {}, "STRATA_PG_DSN is not set"),
        ("", {"STRATA_KITCHECK_GRPC_PORT": "fifty"}, "STRATA_KITCHECK_GRPC_PORT is not a whole"),
        ("", {"STRATA_KAFKA_BOOTSTRAP": "nohostport"}, "STRATA_KAFKA_BOOTSTRAP must be host:port"),
        # TLS is on unless asked off: without its files a service names what is missing.
        ("STRATA_TLS_CERT", {}, "STRATA_TLS_CERT is not set"),
        ("", {"STRATA_TLS_MODE": "plaintext"}, "STRATA_SERVICE_SECRET is not set"),
    ],
)
def test_bad_config_exits_non_zero_naming_the_variable(drop: str, extra: dict, named: str) -> None:
    env = kit_service_env("postgresql://u@127.0.0.1:1/x", "127.0.0.1:1", **extra)
    env.pop(drop, None)
    result = subprocess.run(KIT_SERVICE_CMD, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert named in result.stderr


def test_health_check_reports_serving_through_the_cli_helper(infra) -> None:
    health_port = free_port()
    proc, port, _ = _start_service(
        infra.pg_dsn, infra.bootstrap, STRATA_KITCHECK_HEALTH_PORT=str(health_port)
    )
    try:
        with client_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            wait_until(lambda: check_health(stub), 30, "SERVING")
            assert check_health(stub, "strata.v1.NoSuchService") is False
        # Kubernetes' probes: plaintext, on the health port, and only there.
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as probe:
            assert check_health(health_pb2_grpc.HealthStub(probe))
            assert check_health(health_pb2_grpc.HealthStub(probe), LIVENESS)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            assert not check_health(health_pb2_grpc.HealthStub(plain))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
