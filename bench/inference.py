"""Inference benchmarks: batch scoring of the digits model, and Predict latency.

1. Scoring core: the digits MLP (64 -> 128 -> 64 -> 10, trained here) scores
   `--items` pool items in the pool scorer's batches, with calibrated
   probabilities and embeddings; once as arrays only, once with the Prediction
   messages and events the pool scorer publishes.
2. Pool scoring end to end: an inference process (its own embedded Postgres and
   broker) holds `--pool` imported items; a model is published and the clock
   runs until every item is scored and every prediction is on the broker.
3. Predict: open-loop calls at `--rate` requests/s for `--seconds`, one inline
   digit each, against the same process; latency percentiles.

Prints the figures and writes bench/results/inference.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import psycopg
import torch
from harness import client_channel, embedded_stack, gateway_process, report, service_env
from sklearn.datasets import load_digits
from strata.cli.progress import ProgressBar
from strata.common.bus import EventProducer
from strata.common.channels import with_metadata
from strata.common.embedded import free_port
from strata.common.events import make_event
from strata.common.predictions import prediction_events
from strata.common.topics import ITEMS_IMPORTED, MODELS_PUBLISHED
from strata.inference.scoring import Served, predictions, score
from strata.models import artifact
from strata.models.families import ModelSpec
from strata.models.families import build as build_model
from strata.v1 import common_pb2, events_pb2, inference_pb2, inference_pb2_grpc

CLASSES = [str(d) for d in range(10)]
BATCH = 2048  # the pool scorer's default batch


def digits_model() -> tuple[bytes, np.ndarray]:  # type: ignore[type-arg]
    """A trained digits MLP artifact and the scaled digits features."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    spec = ModelSpec("mlp", CLASSES, input_dim=64)
    torch.manual_seed(0)
    model = build_model(spec)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    return artifact.dumps(spec, model, {"steps": 150}), x


def contents_of(x: np.ndarray, n: int) -> list[common_pb2.ItemContent]:  # type: ignore[type-arg]
    rows = [x[i % len(x)].tolist() for i in range(n)]
    return [common_pb2.ItemContent(features=common_pb2.FeatureVector(values=r)) for r in rows]


def bench_core(raw: bytes, x: np.ndarray, n: int) -> dict:  # type: ignore[type-arg]
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    served = Served("bench", "m1", 1, artifact.loads(raw), temperature=1.3, calibrated=True)
    contents = contents_of(x, n)
    ids = [f"item-{i}" for i in range(n)]
    score(served, contents[:BATCH])  # warm-up
    best_arrays = best_full = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for s in range(0, n, BATCH):
            score(served, contents[s : s + BATCH])
        best_arrays = min(best_arrays, time.perf_counter() - started)
        started = time.perf_counter()
        for s in range(0, n, BATCH):
            scores = score(served, contents[s : s + BATCH])
            prediction_events(
                common_pb2.RoutingMetadata(), predictions(served, ids[s : s + BATCH], scores)
            )
        best_full = min(best_full, time.perf_counter() - started)
    return {
        "core_items": n,
        "core_score_items_per_s": round(n / best_arrays),
        "core_score_and_events_items_per_s": round(n / best_full),
    }


def _unpublished(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM inference.outbox WHERE published_at IS NULL"
        ).fetchone()
    return int(row[0]) if row else 0


def _scored(dsn: str, generation_at_least: int = 1) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM inference.items WHERE scored_generation >= %s",
            (generation_at_least,),
        ).fetchone()
    return int(row[0]) if row else 0


def _stored(dsn: str) -> int:
    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM inference.items").fetchone()
        return int(row[0]) if row else 0
    except psycopg.errors.UndefinedTable:
        return 0


def bench_service(
    raw: bytes,
    x: np.ndarray,  # type: ignore[type-arg]
    pool: int,
    rate: float,
    seconds: float,
) -> dict:  # type: ignore[type-arg]
    with (
        tempfile.TemporaryDirectory() as home,
        embedded_stack(Path(home)) as (pg, kafka),
        gateway_process(pg, kafka) as (gateway, admin),
    ):
        port = free_port()
        env = service_env(
            pg,
            kafka,
            "inference",
            STRATA_INFERENCE_GRPC_PORT=str(port),
            STRATA_GATEWAY_ADDRESS=gateway,
        )
        proc = subprocess.Popen([sys.executable, "-m", "strata.inference"], env=env)
        producer = EventProducer(kafka)
        try:
            channel = with_metadata(client_channel(f"127.0.0.1:{port}"), admin)
            grpc.channel_ready_future(channel).result(timeout=120)
            stub = inference_pb2_grpc.InferenceStub(channel)
            contents = contents_of(x, pool)
            bar = ProgressBar("importing items", pool)
            for s in range(0, pool, 5000):
                producer.send_all(
                    [
                        make_event(
                            ITEMS_IMPORTED,
                            f"item-{c}",
                            events_pb2.ItemsImported(
                                items=[
                                    events_pb2.ItemImported(
                                        item=common_pb2.Item(
                                            item_id=f"item-{i}",
                                            project="bench",
                                            content=contents[i],
                                        )
                                    )
                                    for i in range(c, min(pool, c + 500))
                                ]
                            ),
                        )
                        for c in range(s, min(pool, s + 5000), 500)
                    ]
                )
                bar.update(min(pool, s + 5000))
            bar.close()
            while _stored(pg.dsn) < pool:
                time.sleep(0.2)

            uri = f"file://{home}/m1.pt"
            artifact.write(uri, raw)
            published = events_pb2.ModelPublished(
                project="bench",
                model_version="m1",
                artifact_uri=uri,
                family="mlp",
                classes=CLASSES,
            )
            started = time.perf_counter()
            producer.send_all([make_event(MODELS_PUBLISHED, "bench", published)])
            bar = ProgressBar("scoring the pool", pool)
            scored_at = first_at = None
            while True:
                done = _scored(pg.dsn)
                bar.update(done)
                if done and first_at is None:
                    first_at = time.perf_counter() - started
                if done >= pool and scored_at is None:
                    scored_at = time.perf_counter() - started
                if scored_at is not None and _unpublished(pg.dsn) == 0:
                    break
                time.sleep(0.05)
            announced = time.perf_counter() - started
            bar.close()
            figures: dict[str, object] = {
                "pool_items": pool,
                "pool_scored_seconds": round(scored_at, 2),
                "pool_scored_items_per_s": round(pool / scored_at),
                # Loading the artifact and the registry noticing it, before any scoring.
                "pool_first_batch_seconds": round(first_at or 0.0, 2),
                "pool_scoring_items_per_s_after_load": round(pool / (scored_at - (first_at or 0))),
                "pool_all_published_seconds": round(announced, 2),
                "pool_published_items_per_s": round(pool / announced),
            }
            figures.update(_predict_latency(stub, x, rate, seconds))
        finally:
            producer.close()
            proc.terminate()
            proc.wait(timeout=30)
    return figures


def _predict_latency(stub, x: np.ndarray, rate: float, seconds: float) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Open loop: a call is started every 1/rate s whatever the earlier ones are doing."""
    requests = [
        inference_pb2.PredictRequest(
            project="bench",
            contents=[common_pb2.ItemContent(features=common_pb2.FeatureVector(values=row))],
        )
        for row in x[:200].tolist()
    ]
    for r in requests[:50]:  # warm-up
        stub.Predict(r, timeout=10)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    n = int(rate * seconds)
    pending = threading.Semaphore(0)

    def done(started: float, future: grpc.Future) -> None:
        took = time.perf_counter() - started
        with lock:
            if future.exception() is None:
                latencies.append(took)
            else:
                errors.append(str(future.exception()))
        pending.release()

    bar = ProgressBar(f"Predict at {rate:.0f}/s", n)
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        started = time.perf_counter()
        future = stub.Predict.future(requests[i % len(requests)], timeout=10)
        future.add_done_callback(lambda f, s=started: done(s, f))
        if i % 200 == 0:
            bar.update(i)
    for _ in range(n):
        pending.acquire()
    bar.update(n)
    bar.close()
    achieved = n / (time.perf_counter() - t0)
    ms = np.asarray(latencies) * 1000
    return {
        "predict_rate_target": rate,
        "predict_rate_achieved": round(achieved, 1),
        "predict_calls": n,
        "predict_errors": len(errors),
        "predict_p50_ms": round(float(np.percentile(ms, 50)), 2),
        "predict_p95_ms": round(float(np.percentile(ms, 95)), 2),
        "predict_p99_ms": round(float(np.percentile(ms, 99)), 2),
        "predict_max_ms": round(float(ms.max()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000, help="items for the scoring core")
    parser.add_argument("--pool", type=int, default=50_000, help="pool items end to end")
    parser.add_argument("--rate", type=float, default=200.0, help="Predict calls per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="Predict load duration")
    args = parser.parse_args()
    raw, x = digits_model()
    figures = bench_core(raw, x, args.items)
    figures.update(bench_service(raw, x, args.pool, args.rate, args.seconds))
    report("inference", figures)


if __name__ == "__main__":
    main()
