"""Sampler benchmarks: ranking speed, import-with-dedup throughput, label efficiency.

1. Rank a 1,000,000-item pool (10-class probabilities plus 64-d embeddings) by
   margin and select a diverse (k-center) batch of 1,000.
2. Import `--import-items` text items (5% exact and 5% near duplicates mixed in)
   through `ImportItems` into a sampler process (its own embedded Postgres and
   broker), deduplicating as they come: the rate at which imports are stored and
   acknowledged, and how long until every ItemImported event is on the broker.
3. Label efficiency on scikit-learn's digits: learning curves of each strategy
   against random sampling (mean of seeds), labels needed to reach random's
   final accuracy; the curves go to bench/results/sampler_learning_curves.png.

Prints the figures and writes bench/results/sampler.json.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np
import psycopg
from harness import (
    RESULTS,
    ROOT,
    client_channel,
    embedded_stack,
    gateway_process,
    report,
    service_env,
)
from strata.cli.progress import ProgressBar
from strata.common.channels import with_metadata
from strata.common.embedded import free_port
from strata.sampler.simulate import labels_to_reach, learning_curve
from strata.sampler.strategies import margin, select_batch
from strata.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc


def bench_rank(n: int) -> dict:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, 10)).astype(np.float32) * 2
    probs = np.exp(logits)
    probs /= probs.sum(1, keepdims=True)
    emb = rng.normal(size=(n, 64)).astype(np.float32)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        chosen = select_batch(margin(probs), emb, 1000)
        times.append(time.perf_counter() - started)
    assert len(set(chosen.tolist())) == 1000
    return {"rank_pool": n, "rank_batch": 1000, "rank_select_seconds": round(min(times), 3)}


def bench_import(n: int) -> dict:  # type: ignore[type-arg]
    rng = random.Random(1)
    vocab = [f"w{i}" for i in range(5000)]
    base = [" ".join(rng.choice(vocab) for _ in range(rng.randint(12, 30))) for _ in range(n)]
    texts = []
    for i, text in enumerate(base):
        if i > 100 and i % 20 == 0:
            texts.append(base[rng.randrange(i)].upper())  # exact
        elif i > 100 and i % 20 == 1:
            texts.append(base[rng.randrange(i)] + " " + rng.choice(vocab))  # near
        else:
            texts.append(text)
    with (
        tempfile.TemporaryDirectory() as home,
        embedded_stack(Path(home)) as (pg, kafka),
        gateway_process(pg, kafka) as (gateway, admin),
    ):
        port = free_port()
        env = service_env(
            pg, kafka, "sampler", STRATA_SAMPLER_GRPC_PORT=str(port), STRATA_GATEWAY_ADDRESS=gateway
        )
        proc = subprocess.Popen([sys.executable, "-m", "strata.sampler"], env=env)
        try:
            channel = with_metadata(client_channel(f"127.0.0.1:{port}"), admin)
            grpc.channel_ready_future(channel).result(timeout=60)
            stub = sampler_pb2_grpc.SamplerStub(channel)
            # Requests are built before the clock starts: the figure is the service's.
            chunks = [
                sampler_pb2.ImportItemsRequest(
                    project="bench",
                    rows=[
                        sampler_pb2.ImportRow(
                            line=i + 1, content=common_pb2.ItemContent(text=texts[i])
                        )
                        for i in range(start, min(n, start + 2000))
                    ],
                )
                for start in range(0, n, 2000)
            ]
            bar = ProgressBar("importing", n)

            def requests():  # type: ignore[no-untyped-def]
                for number, chunk in enumerate(chunks):
                    bar.update(number * 2000)
                    yield chunk

            started = time.perf_counter()
            reply = stub.ImportItems(requests(), timeout=3600)
            took = time.perf_counter() - started
            bar.update(n)
            bar.close()
            # The outbox relay gives way to the import; announcements catch up after it.
            with psycopg.connect(pg.dsn) as conn:
                while conn.execute(
                    "SELECT count(*) FROM sampler.outbox WHERE published_at IS NULL"
                ).fetchone() != (0,):
                    time.sleep(0.05)
            announced = time.perf_counter() - started
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {
        "import_items": n,
        "import_seconds": round(took, 2),
        "import_items_per_s": round(n / took),
        "import_all_announced_seconds": round(announced, 2),
        "import_exact_duplicates": reply.exact_duplicates,
        "import_near_duplicates": reply.near_duplicates,
        "import_injected_duplicates": sum(1 for i in range(101, n) if i % 20 in (0, 1)),
    }


def bench_efficiency(seeds: int) -> dict:  # type: ignore[type-arg]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    strategies = ["random", "margin", "entropy", "least_confidence"]
    curves: dict[str, list[list[tuple[int, float]]]] = {s: [] for s in strategies}
    bar = ProgressBar("digits", seeds * len(strategies))
    done = 0
    for seed in range(seeds):
        xp, xt, yp, yt = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
        for s in strategies:
            curves[s].append(
                learning_curve(
                    xp,
                    yp,
                    xt,
                    yt,
                    lambda: LogisticRegression(max_iter=300, C=0.5),
                    s,
                    budget=800,
                    start=50,
                    step=25,
                    seed=seed,
                )
            )
            done += 1
            bar.update(done)
    bar.close()
    mean = {
        s: [(n, float(np.mean([dict(c)[n] for c in cs]))) for n, _ in cs[0]]
        for s, cs in curves.items()
    }
    target = mean["random"][-1][1]
    figures: dict[str, object] = {"digits_random_accuracy_at_800": round(target, 4)}
    fig, ax = plt.subplots(figsize=(7, 4))
    for s, curve in mean.items():
        ax.plot([n for n, _ in curve], [a for _, a in curve], label=s)
        needed = labels_to_reach(curve, target)
        figures[f"digits_labels_to_target_{s}"] = needed
    ax.axhline(target, color="#999999", ls="--", lw=1)
    ax.set_xlabel("human labels")
    ax.set_ylabel("test accuracy (digits, mean of seeds)")
    ax.set_title("Label efficiency: strategies vs random")
    ax.legend()
    out = RESULTS / "sampler_learning_curves.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    figures["digits_curves_png"] = str(out.relative_to(ROOT))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", type=int, default=1_000_000)
    parser.add_argument("--import-items", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = bench_rank(args.pool)
    figures.update(bench_efficiency(args.seeds))
    figures.update(bench_import(args.import_items))
    report("sampler", figures)


if __name__ == "__main__":
    main()
