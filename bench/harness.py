"""What every benchmark shares: an embedded Postgres and broker, a gateway that checks
tokens, mutual TLS (the tests' local CA), and the results file."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from strata.common.bus import KafkaSettings, create_topics  # noqa: E402
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port  # noqa: E402
from strata.gateway.auth import new_token  # noqa: E402

from tests import pki  # noqa: E402
from tests.pki import client_channel  # noqa: E402

__all__ = ["client_channel", "embedded_stack", "gateway_process", "report", "service_env"]


@contextmanager
def embedded_stack(home: Path) -> Iterator[tuple[EmbeddedPostgres, KafkaSettings]]:
    """A fresh Postgres and broker under `home` with every topic created; stopped after."""
    pg = EmbeddedPostgres(home / "pgdata", free_port())
    broker = EmbeddedBroker(free_port(), log_path=home / "broker.log")
    pg.start()
    broker.start()
    try:
        kafka = KafkaSettings(broker.bootstrap, client_id="bench")
        create_topics(kafka)
        yield pg, kafka
    finally:
        broker.stop()
        pg.stop()


def service_env(
    pg: EmbeddedPostgres, kafka: KafkaSettings, service: str, **extra: str
) -> dict[str, str]:
    """The environment a `python -m strata.<service>` process needs (its certificate
    among them), and nothing stray."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update(
        STRATA_PG_DSN=pg.dsn,
        STRATA_KAFKA_BOOTSTRAP=kafka.bootstrap,
        STRATA_LOG_LEVEL="WARNING",
        **pki.environ(service),
        **extra,
    )
    return env


@contextmanager
def gateway_process(
    pg: EmbeddedPostgres, kafka: KafkaSettings, **extra: str
) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """A gateway process: (its address, call metadata of its bootstrap admin)."""
    port, token = free_port(), new_token()
    env = service_env(
        pg,
        kafka,
        "gateway",
        STRATA_GATEWAY_GRPC_PORT=str(port),
        STRATA_GATEWAY_ADMIN_TOKEN=token,
        **extra,
    )
    proc = subprocess.Popen([sys.executable, "-m", "strata.gateway"], env=env)
    address = f"127.0.0.1:{port}"
    try:
        with client_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
        yield address, [("authorization", f"Bearer {token}")]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def report(name: str, figures: dict[str, object]) -> Path:
    """Print the figures and write them to bench/results/<name>.json."""
    figures["machine"] = f"{platform.machine()} {os.cpu_count()} cores"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<36}{value}")
    print(f"written to {path}")
    return path
