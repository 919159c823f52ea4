"""Event pipe throughput: outbox -> relay -> broker -> consumer group -> inbox.

Starts its own embedded Postgres and broker, publishes N events through the
outbox, and measures how fast a consumer applies them (each in its own
transaction with the inbox). Prints the figures and writes
bench/results/bus_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import threading
import time
from pathlib import Path

from strata.cli.progress import ProgressBar
from strata.common import outbox
from strata.common.config import ServiceConfig
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from strata.common.service import ServiceRuntime, configure_logging
from strata.common.tls import TlsConfig
from strata.common.topics import PROBE
from strata.v1 import events_pb2

RESULTS = Path(__file__).parent / "results" / "bus_throughput.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as home:
        pg = EmbeddedPostgres(Path(home) / "pgdata", free_port())
        broker = EmbeddedBroker(free_port())
        pg.start()
        broker.start()
        try:
            figures = run(pg.dsn, broker.bootstrap, args.events)
        finally:
            broker.stop()
            pg.stop()
    figures["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<28}{value}")
    print(f"written to {RESULTS}")


def run(pg_dsn: str, bootstrap: str, events: int) -> dict[str, float | int | str]:
    def cfg(name: str) -> ServiceConfig:
        return ServiceConfig(
            service=name, pg_dsn=pg_dsn, kafka_bootstrap=bootstrap, tls=TlsConfig("plaintext")
        )

    source, sink = ServiceRuntime(cfg("bench_src")), ServiceRuntime(cfg("bench_dst"))
    applied = 0
    lock = threading.Lock()

    def handle(ctx, event) -> None:  # type: ignore[no-untyped-def]
        nonlocal applied
        with lock:
            applied += 1

    sink.add_consumer({PROBE.name: handle})
    source.start()
    sink.start()
    sink.consumers[0].joined.wait(30)
    t0 = time.perf_counter()
    batch = 500
    for start in range(0, events, batch):
        with source.db.transaction() as conn:
            for i in range(start, min(events, start + batch)):
                outbox.publish(conn, PROBE.name, f"p{i}", events_pb2.Probe(probe_id=f"p{i}"))
    enqueued_s = time.perf_counter() - t0
    bar = ProgressBar("applied", events)
    while True:
        with lock:
            done = applied
        bar.update(done)
        if done >= events:
            break
        time.sleep(0.2)
    bar.close()
    total_s = time.perf_counter() - t0
    source.stop()
    sink.stop()
    return {
        "events": events,
        "outbox_enqueue_per_s": round(events / enqueued_s),
        "end_to_end_per_s": round(events / total_s),
        "end_to_end_seconds": round(total_s, 2),
    }


if __name__ == "__main__":
    main()
