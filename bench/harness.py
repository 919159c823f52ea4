"""What every benchmark shares: an embedded Postgres and broker, and the results file."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from strata.common.bus import KafkaSettings, create_topics  # noqa: E402
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port  # noqa: E402


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


def service_env(pg: EmbeddedPostgres, kafka: KafkaSettings, **extra: str) -> dict[str, str]:
    """The environment a `python -m strata.<service>` process needs, and nothing stray."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
    env.update(
        STRATA_PG_DSN=pg.dsn,
        STRATA_KAFKA_BOOTSTRAP=kafka.bootstrap,
        STRATA_LOG_LEVEL="WARNING",
        **extra,
    )
    return env


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
