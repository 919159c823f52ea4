"""Vendor scale: a big pool and many annotators through the whole stack, over gRPC.

As an operator with a big pool runs it: `strata up` (every service, mutual TLS, active
learning on), one project with the demo's classes but overlap 1 and no gold, items
imported through the sampler's `ImportItems`, then N clients looping `NextTask` ->
`SubmitLabel` with no think time, while a manager polls `PoolStats` and `QueueStats`
as the console does. For each pool size and item kind (texts; non-negative feature
vectors), and each client count:

- import items/s;
- labels/s, the share of `NextTask` calls that found no task: of all, and of those made
  while unlabelled items remained (the target's figure; a small pool runs out in the
  window);
- p50/p95/p99 of `NextTask`, `SubmitLabel`, `PoolStats`, `QueueStats`;
- the sampler's own figures from its /metrics: hand-out time per batch, ranking
  staleness (model versions behind), where the stack exports them;
- the gateway's refill, second by second (`bench/scale_watch.py`): sampler batches
  that came back with items, empty or failed, the items queued, the refills' mean
  time, the sampler's hand-outs and their mean time, the lowest ready queue and the
  highest low-water mark;
- each model version's re-scoring of the pool seen in the window (and, with
  `--drain S`, after it with no client left, for up to S seconds): its backlog at the
  start, the seconds to drain it, items scored per second.

    .venv/bin/python bench/scale.py                       # 10k, 100k, 1M; texts, vectors; 50, 200
    .venv/bin/python bench/scale.py --sizes 10000 --clients 50 --seconds 20
    .venv/bin/python bench/scale.py --sizes 1000000 --clients 50 --drain 900 --out scale_drain
    .venv/bin/python bench/scale.py --sizes 1000000 --clients 200 --think 2 --out scale_paced

Writes bench/results/scale.json and bench/results/scale.png (each figure against pool
size). Targets (issue "vendor scale"), on 2 cores at 1M items and 200 clients: >= 300
labels/s; < 1% empty NextTask while items remain; NextTask and SubmitLabel p95 <= 50
ms; PoolStats and QueueStats p95 <= 20 ms; import >= 30k items/s.
"""

from __future__ import annotations

import argparse
import bisect
import json
import multiprocessing as mp
import os
import platform
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import numpy as np  # noqa: E402
from strata.cli.progress import ProgressBar  # noqa: E402
from strata.common.tls import TlsConfig, open_channel  # noqa: E402
from strata.v1 import (  # noqa: E402
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    sampler_pb2,
)

from bench.scale_watch import (  # noqa: E402
    drain,
    refill_batches,
    refill_by_second,
    rescoring,
    sampler_metrics,
    watch_refill,
    watch_scoring,
)
from tests.browser.support import CONTRACT, Stack, bearer, run_stack  # noqa: E402

PCTS = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
CLIENT_SERIES = ("next", "submit", "labels_at", "asked_at", "empty_at")
THREADS_PER_PROCESS = 50
IMPORT_CHUNK = 2000
VECTOR_DIM = 64
WORDS = [f"w{n}" for n in range(20_000)]


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def tls_of(stack: Stack) -> TlsConfig:
    d = stack.tls_dir
    return TlsConfig("mutual", str(d / "cli.crt"), str(d / "cli.key"), str(d / "ca.crt"))


# -- the pool -----------------------------------------------------------------------------------


def rows(kind: str, n: int, seed: int) -> Iterator[sampler_pb2.ImportRow]:
    """`n` items, none a near copy of another: texts of random words, or non-negative
    vectors (ReLU-like: a few active dimensions of a clustered mixture)."""
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    centres = gen.gamma(1.0, 1.0, size=(16, VECTOR_DIM)).astype(np.float32)
    for i in range(n):
        if kind == "text":
            text = " ".join(rng.choice(WORDS) for _ in range(14))
            content = common_pb2.ItemContent(text=f"{'cat' if i % 2 else 'dog'} {text}")
        else:
            base = centres[i % len(centres)]
            values = np.maximum(0.0, base + gen.normal(0, 1.0, VECTOR_DIM)).astype(np.float32)
            content = common_pb2.ItemContent(
                features=common_pb2.FeatureVector(values=values.tolist())
            )
        yield sampler_pb2.ImportRow(line=i + 1, external_id=f"s{i}", content=content)


def import_pool(stack: Stack, admin: list, project: str, kind: str, n: int) -> dict[str, Any]:
    bar = ProgressBar(f"importing {n} {kind} items", n)
    sent = 0

    def requests() -> Iterator[sampler_pb2.ImportItemsRequest]:
        nonlocal sent
        chunk: list[sampler_pb2.ImportRow] = []
        for row in rows(kind, n, seed=n):
            chunk.append(row)
            if len(chunk) == IMPORT_CHUNK:
                sent += len(chunk)
                bar.update(sent)
                yield sampler_pb2.ImportItemsRequest(project=project, rows=chunk)
                chunk = []
        if chunk:
            yield sampler_pb2.ImportItemsRequest(project=project, rows=chunk)

    started = time.perf_counter()
    reply = stack.sampler().ImportItems(requests(), metadata=admin, timeout=7200)
    took = time.perf_counter() - started
    bar.close()
    return {
        "items": n,
        "seconds": round(took, 1),
        "items_per_s": round(reply.imported / took),
        "imported": reply.imported,
        "near_duplicates": reply.near_duplicates,
        "exact_duplicates": reply.exact_duplicates,
    }


def make_people(stack: Stack, project: str, n: int) -> tuple[list[str], list[tuple[str, str]]]:
    """A project (demo classes, overlap 1, no gold), its manager's metadata, n annotators."""
    gw = stack.gateway()
    admin = bearer(stack.admin_token)
    gw.LoadContract(
        gateway_pb2.LoadContractRequest(
            document=CONTRACT.format(project=project, overlap=1, threshold=0.5)
        ),
        metadata=admin,
    )
    tokens = []
    for i in range(n + 1):
        person = f"{'boss' if i == n else 'w'}{i:03d}-{project}"
        role = common_pb2.ROLE_MANAGER if i == n else common_pb2.ROLE_ANNOTATOR
        gw.CreateAnnotator(
            gateway_pb2.CreateAnnotatorRequest(annotator_id=person, role=role, project=project),
            metadata=admin,
        )
        tokens.append(
            gw.IssueToken(gateway_pb2.IssueTokenRequest(annotator_id=person), metadata=admin).token
        )
    return tokens[:-1], bearer(tokens[-1])


# -- the load -----------------------------------------------------------------------------------


def client_process(  # type: ignore[no-untyped-def]
    address: str,
    tls: TlsConfig,
    project: str,
    tokens: list[str],
    start_at: float,
    measure_from: float,
    end_at: float,
    think_s: float,
    out,
) -> None:
    """One thread per annotator: NextTask, then SubmitLabel, with no think time. Calls
    are counted, and their latencies kept, when they start in the measured window
    (after the warm-up): a queue filling at the start is not a sustained figure. When
    each measured NextTask started, and whether it came back empty, is kept too. With
    `think_s`, each annotator looks at a task for 0.5-1.5 times that long before the next
    (a person's pace) instead of none."""
    lock = threading.Lock()
    got: dict[str, list[float]] = {k: [] for k in CLIENT_SERIES}
    counts = {"empty": 0, "calls": 0, "errors": 0}

    def annotator(token: str) -> None:
        md = bearer(token)
        pace = random.Random(token)
        mine: dict[str, list[float]] = {k: [] for k in CLIENT_SERIES}
        empty = calls = errors = 0
        with open_channel(address, tls) as channel:
            stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
            while time.time() < start_at:
                time.sleep(0.005)
            while time.time() < end_at:
                measured = time.time() >= measure_from
                asked_at = time.time()
                t0 = time.perf_counter()
                try:
                    reply = stub.NextTask(
                        gateway_pb2.NextTaskRequest(project=project), metadata=md, timeout=30
                    )
                except grpc.RpcError:
                    errors += measured
                    time.sleep(0.2)
                    continue
                if measured:
                    mine["next"].append(time.perf_counter() - t0)
                    mine["asked_at"].append(asked_at)
                    calls += 1
                if not reply.HasField("task"):
                    empty += measured
                    if measured:
                        mine["empty_at"].append(asked_at)
                    time.sleep(min(1.0, max(0.05, reply.retry_after_ms / 1000)))
                    continue
                task = reply.task
                t0 = time.perf_counter()
                try:
                    stub.SubmitLabel(
                        gateway_pb2.SubmitLabelRequest(
                            task_id=task.task_id,
                            value=task.classes[hash(task.item_id) % len(task.classes)],
                            duration_ms=1200,
                            client_label_id=uuid.uuid4().hex,
                        ),
                        metadata=md,
                        timeout=30,
                    )
                except grpc.RpcError:
                    errors += measured
                    continue
                if measured:
                    mine["submit"].append(time.perf_counter() - t0)
                mine["labels_at"].append(time.time())
                if think_s:
                    time.sleep(think_s * pace.uniform(0.5, 1.5))
        with lock:
            for k, v in mine.items():
                got[k].extend(v)
            counts["empty"] += empty
            counts["calls"] += calls
            counts["errors"] += errors

    threads = [threading.Thread(target=annotator, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((got, counts))


def poll_stats(
    stack: Stack,
    manager: list,
    project: str,
    measure_from: float,
    stop: threading.Event,
    out: dict,
) -> None:
    """A manager's console: PoolStats and QueueStats twice a second, kept from the
    measured window on; and whether unlabelled items remained, from the start: items
    the sampler has not handed out, or slots queued at the gateway."""
    sampler, gateway = stack.sampler(), stack.gateway()
    while not stop.is_set():
        replies: dict[str, Any] = {}
        for name, call in (
            (
                "pool_stats",
                lambda: sampler.PoolStats(
                    sampler_pb2.PoolStatsRequest(project=project), metadata=manager, timeout=30
                ),
            ),
            (
                "queue_stats",
                lambda: gateway.QueueStats(
                    gateway_pb2.QueueStatsRequest(project=project), metadata=manager, timeout=30
                ),
            ),
        ):
            measured = time.time() >= measure_from
            t0 = time.perf_counter()
            try:
                replies[name] = call()
                if measured:
                    out[name].append(time.perf_counter() - t0)
            except grpc.RpcError:
                out["stats_errors"].append(1.0)
        if len(replies) == 2:
            pool, queue = replies["pool_stats"], replies["queue_stats"]
            left = pool.items_by_state.get("pool", 0) > 0 or queue.ready > 0
            out["remaining"].append((time.time(), left))
        time.sleep(0.5)


def while_remaining(
    asked_at: list[float], empty_at: list[float], remaining: list[tuple[float, bool]]
) -> float | None:
    """The share of NextTask calls that found no task, among those made while unlabelled
    items remained: the console's readings just before and just after the call both
    said some did (the issue's target: < 1% empty while unlabelled items remain)."""
    times = [t for t, _ in remaining]

    def remained(t: float) -> bool:
        i = bisect.bisect_right(times, t)
        return 0 < i < len(times) and remaining[i - 1][1] and remaining[i][1]

    calls = sum(map(remained, asked_at))
    if not calls:
        return None
    return round(sum(map(remained, empty_at)) / calls, 3)


def by_second(asked_at: list[float], empty_at: list[float], since: float) -> list[list[int]]:
    """[NextTask calls, of them empty] for each second of the measured window: when the
    queue ran dry, not only how often."""
    seconds = int(max(asked_at, default=since) - since) + 1
    out = [[0, 0] for _ in range(seconds)]
    for t in asked_at:
        out[int(t - since)][0] += 1
    for t in empty_at:
        out[int(t - since)][1] += 1
    return out


def load(
    stack: Stack,
    tokens: list[str],
    manager: list,
    project: str,
    warmup_s: float,
    seconds: float,
    think_s: float = 0.0,
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 3.0
    measure_from = start_at + warmup_s
    end_at = measure_from + seconds
    groups = [
        tokens[i : i + THREADS_PER_PROCESS] for i in range(0, len(tokens), THREADS_PER_PROCESS)
    ]
    procs = [
        ctx.Process(
            target=client_process,
            args=(
                stack.grpc["gateway"],
                tls_of(stack),
                project,
                g,
                start_at,
                measure_from,
                end_at,
                think_s,
                queue,
            ),
        )
        for g in groups
    ]
    for p in procs:
        p.start()
    stats: dict[str, list[Any]] = {
        "pool_stats": [],
        "queue_stats": [],
        "stats_errors": [],
        "remaining": [],
    }
    stop = threading.Event()
    poller = threading.Thread(
        target=poll_stats, args=(stack, manager, project, measure_from, stop, stats)
    )
    poller.start()
    scoring: list[tuple[float, str | None, float | None]] = []
    refill: list[tuple[float, dict[str, float]]] = []
    watchers = [
        threading.Thread(target=watch_scoring, args=(stack, project, stop, scoring)),
        threading.Thread(target=watch_refill, args=(stack, project, stop, refill)),
    ]
    for w in watchers:
        w.start()
    bar = ProgressBar(f"{len(tokens)} clients", int(end_at - time.time()))
    while time.time() < end_at:
        time.sleep(1.0)
        bar.update(int(bar.total - (end_at - time.time())))
    bar.close()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    stop.set()
    poller.join()
    for w in watchers:
        w.join()
    got: dict[str, list[float]] = {k: [] for k in CLIENT_SERIES}
    counts = {"empty": 0, "calls": 0, "errors": 0}
    for g, c in results:
        for k, v in g.items():
            got[k].extend(v)
        for k, v in c.items():
            counts[k] += v
    labels = [t for t in got["labels_at"] if measure_from <= t <= end_at]
    return {
        "clients": len(tokens),
        "think_s": think_s,
        "labels_per_s": round(len(labels) / seconds, 1),
        "empty_next_task_share": round(counts["empty"] / max(1, counts["calls"]), 3),
        "empty_while_remaining_share": while_remaining(
            got["asked_at"], got["empty_at"], stats["remaining"]
        ),
        "next_task_by_second": by_second(got["asked_at"], got["empty_at"], measure_from),
        "refill_by_second": refill_by_second(refill, measure_from, seconds),
        "errors": counts["errors"] + len(stats["stats_errors"]),
        **{f"next_task_{q}_ms": pct(got["next"], v) for q, v in PCTS},
        **{f"submit_label_{q}_ms": pct(got["submit"], v) for q, v in PCTS},
        **{f"pool_stats_{q}_ms": pct(stats["pool_stats"], v) for q, v in PCTS},
        **{f"queue_stats_{q}_ms": pct(stats["queue_stats"], v) for q, v in PCTS},
        "rescoring": rescoring(scoring),
    }


# -- the report ---------------------------------------------------------------------------------


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = [
        ("labels_per_s", "labels/s", 300),
        ("empty_while_remaining_share", "empty NextTask while items remain", 0.01),
        ("next_task_p95_ms", "NextTask p95 (ms)", 50),
        ("submit_label_p95_ms", "SubmitLabel p95 (ms)", 50),
        ("pool_stats_p95_ms", "PoolStats p95 (ms)", 20),
        ("queue_stats_p95_ms", "QueueStats p95 (ms)", 20),
        ("import_items_per_s", "import items/s", 30_000),
    ]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, (key, title, target) in zip(axes.flat, figures, strict=False):
        series: dict[str, list[tuple[int, float]]] = {}
        for r in runs:
            if r.get(key) is not None:
                series.setdefault(f"{r['kind']}, {r['clients']} clients", []).append(
                    (r["items"], r[key])
                )
        for label, points in sorted(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="target")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("pool size (items)")
    axes.flat[-1].axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, loc="center")
    fig.suptitle("Strata at scale: one project, overlap 1, on " + machine())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores"


def write(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    summary = {
        "machine": machine(),
        "seconds": args.seconds,
        "think_s": args.think,
        "drain_limit_s": args.drain,
        "runs": runs,
        "targets": {
            "labels_per_s": 300,
            "empty_while_remaining_share": 0.01,
            "next_task_p95_ms": 50,
            "submit_label_p95_ms": 50,
            "pool_stats_p95_ms": 20,
            "queue_stats_p95_ms": 20,
            "import_items_per_s": 30_000,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(summary, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--kinds", default="text,vector")
    parser.add_argument("--clients", default="50,200")
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each annotator looks at a task before the next (0.5-1.5x; 0: none)",
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=0.0,
        help="after the load, watch the pool's re-scoring for up to this many seconds",
    )
    parser.add_argument(
        "--out", default="scale", help="results name: bench/results/NAME.json and NAME.png"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = args.kinds.split(",")
    clients = [int(c) for c in args.clients.split(",")]
    runs: list[dict[str, Any]] = []
    for kind in kinds:
        for size in sizes:
            with tempfile.TemporaryDirectory() as home:
                gen = run_stack(Path(home))
                stack = next(gen)
                try:
                    for n in clients:
                        project = f"scale-{kind[0]}{size}-{n}-{uuid.uuid4().hex[:4]}"
                        tokens, manager = make_people(stack, project, n)
                        imported = import_pool(stack, manager, project, kind, size)
                        print(f"{kind} x {size}: imported at {imported['items_per_s']} items/s")
                        measured = load(
                            stack, tokens, manager, project, args.warmup, args.seconds, args.think
                        )
                        if args.drain:
                            measured["drain"] = drain(stack, project, args.drain)
                        run = {
                            "kind": kind,
                            "items": size,
                            "import_items_per_s": imported["items_per_s"],
                            "import": imported,
                            **measured,
                            "sampler_metrics": sampler_metrics(stack),
                            "refill": refill_batches(stack, project),
                        }
                        runs.append(run)
                        write(runs, args)  # what is done so far survives a long run cut short
                        print(json.dumps({k: v for k, v in run.items() if k != "import"}))
                finally:
                    gen.close()
    write(runs, args)
    plot(runs, RESULTS / f"{args.out}.png")
    cols = (
        "kind",
        "items",
        "clients",
        "import_items_per_s",
        "labels_per_s",
        "empty_next_task_share",
        "empty_while_remaining_share",
        "next_task_p95_ms",
        "submit_label_p95_ms",
        "pool_stats_p95_ms",
        "queue_stats_p95_ms",
    )
    print("  ".join(cols))
    for r in runs:
        print("  ".join(str(r.get(c)) for c in cols))
    print(f"-> bench/results/{args.out}.json, {args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
