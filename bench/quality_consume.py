"""Quality consume throughput: labels from the broker into votes and consensus decisions.

Starts its own embedded Postgres and broker, publishes a labeling contract on
`strata.contracts` and `--labels` label events on `strata.labels.submitted`
(items get `--overlap` votes from a crowd of mixed skill, as the gateway would
publish them), then starts the quality service as its own process
(`python -m strata.quality`) and times how fast it turns the backlog into
stored votes and consensus decisions (accepted, more votes requested, review).
A label counts once its vote row is committed together with the decision it
triggered and the events that decision publishes (outbox).
Prints the figures and writes bench/results/quality_consume.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psycopg  # noqa: E402
from strata.cli.progress import ProgressBar  # noqa: E402
from strata.common.bus import EventProducer, KafkaSettings, create_topics  # noqa: E402
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port  # noqa: E402
from strata.common.events import make_event  # noqa: E402
from strata.common.topics import CONTRACTS, LABELS_SUBMITTED  # noqa: E402
from strata.v1 import common_pb2, events_pb2  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "quality_consume.json"
PROJECT = "bench"
CLASSES = [f"c{i}" for i in range(10)]


def contract() -> events_pb2.ContractLoaded:
    c = common_pb2.LabelingContract(
        project=PROJECT,
        version="v1",
        classes=[common_pb2.ClassDefinition(name=n) for n in CLASSES],
        overlap=common_pb2.OverlapPolicy(min=3, max=5),
        consensus_threshold=0.9,
        gold_accuracy_threshold=0.7,
        agreement=common_pb2.AgreementPolicy(metric="krippendorff_alpha", threshold=0.6),
    )
    c.loaded_at.GetCurrentTime()
    return events_pb2.ContractLoaded(contract=c, loaded_by="bench")


def label_events(n_labels: int, overlap: int, annotators: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    n_items = n_labels // overlap
    truth = rng.integers(0, len(CLASSES), n_items)
    skill = rng.choice([0.95, 0.85, 0.7, 0.1], annotators, p=[0.3, 0.4, 0.25, 0.05])
    events = []
    now = time.time()
    for i in range(n_items):
        chosen = rng.choice(annotators, overlap, replace=False)
        for a in chosen:
            right = rng.random() < skill[a]
            value = truth[i] if right else rng.integers(0, len(CLASSES))
            msg = events_pb2.LabelSubmitted(
                routing=common_pb2.RoutingMetadata(project=PROJECT, ontology_version="v1"),
                label=common_pb2.Label(
                    label_id=uuid.uuid4().hex,
                    task_id=uuid.uuid4().hex,
                    item_id=f"item-{i:07d}",
                    annotator_id=f"ann-{a:03d}",
                    value=CLASSES[int(value)],
                    ontology_version="v1",
                    duration_ms=int(rng.integers(500, 5000)),
                    source=common_pb2.LABEL_SOURCE_HUMAN,
                    project=PROJECT,
                ),
            )
            msg.label.submitted_at.FromSeconds(int(now))
            events.append(make_event(LABELS_SUBMITTED, msg.label.item_id, msg))
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labels", type=int, default=60_000)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--annotators", type=int, default=200)
    parser.add_argument("--replicas", type=int, default=1, help="quality processes")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        pg = EmbeddedPostgres(Path(home) / "pgdata", free_port())
        broker = EmbeddedBroker(free_port(), log_path=Path(home) / "broker.log")
        pg.start()
        broker.start()
        settings = KafkaSettings(broker.bootstrap, client_id="bench")
        create_topics(settings)
        events = label_events(args.labels, args.overlap, args.annotators)
        total = len(events)
        producer = EventProducer(settings)
        producer.send_all([make_event(CONTRACTS, PROJECT, contract())])
        bar = ProgressBar("publishing", total)
        for start in range(0, total, 5000):
            producer.send_all(events[start : start + 5000])
            bar.update(min(total, start + 5000))
        bar.close()
        producer.close()

        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update(
            STRATA_PG_DSN=pg.dsn,
            STRATA_KAFKA_BOOTSTRAP=broker.bootstrap,
            STRATA_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            STRATA_QUALITY_ESTIMATE_INTERVAL_S="2",
        )
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "strata.quality"],
                env=env,
            )
            for _ in range(args.replicas)
        ]
        try:
            figures = measure(pg.dsn, total)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)
            broker.stop()
            pg.stop()
    figures.update(
        labels=total,
        overlap=args.overlap,
        annotators=args.annotators,
        replicas=args.replicas,
        machine=f"{platform.machine()} {os.cpu_count()} cores",
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<28}{value}")
    print(f"written to {RESULTS}")


def measure(dsn: str, total: int) -> dict:  # type: ignore[type-arg]
    """Wait for the schema, then time votes from the first one stored to the last."""
    bar = ProgressBar("consuming", total)
    first_at: float | None = None
    deadline = time.monotonic() + 900
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                row = conn.execute("SELECT count(*) FROM quality.votes").fetchone()
            except psycopg.errors.UndefinedTable:
                time.sleep(0.2)
                continue
            done = int(row[0]) if row else 0
            if done and first_at is None:
                first_at = time.monotonic()
            bar.update(done)
            if done >= total:
                break
            time.sleep(0.2)
        else:
            raise SystemExit(f"quality stored only {done} of {total} votes in time")
        took = time.monotonic() - (first_at or time.monotonic())
        states = dict(
            conn.execute("SELECT state, count(*) FROM quality.items GROUP BY 1").fetchall()
        )
        outbox = conn.execute("SELECT count(*) FROM quality.outbox").fetchone()
    bar.close()
    return {
        "seconds": round(took, 2),
        "labels_per_s": round(total / took) if took else None,
        "items_by_state": states,
        "events_emitted": int(outbox[0]) if outbox else 0,
    }


if __name__ == "__main__":
    main()
