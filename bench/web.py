"""The web service under a labeling team: 50 annotators labeling through HTTP while a
manager keeps the console open, on the whole stack `strata up` starts (TLS between the
services), every process on the same cores as the load.

Per run: a project of `--items` text items (10k), `--annotators` people (50) each signed
in through POST /api/session, each looping POST .../tasks/next then POST
/api/tasks/<id>/label as fast as answers come back (a closed loop: the most the machine
takes), and one manager loading the console page twice a second. After a warm-up the
run measures for `--seconds`:

- next task after submit: the POST .../tasks/next that follows each acknowledged label
  (what a page without prefetching would wait for; the workbench's prefetch hides it);
- console page: GET /projects/<project>/console, rendered with the services' numbers;
- label submissions per second through HTTP, each acknowledged (in Postgres, with its
  outbox event) when counted;
- CPU time per label of each process group (gateway, web, load generator, Postgres, ...),
  from the kernel's counters over the same window: where the two cores go, and so the
  most labels/s this machine could take.

Runs `--runs` times (a project each) and reports the median and spread of each figure.
Prints the figures and writes bench/results/web.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402
from strata.cli.progress import ProgressBar  # noqa: E402
from strata.v1 import common_pb2  # noqa: E402

from tests.browser.support import Stack, make_project, run_stack  # noqa: E402

RESULTS_DIR = ROOT / "bench" / "results"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else 0.0


async def sign_in(client: httpx.AsyncClient, token: str) -> dict[str, str]:
    reply = await client.post("/api/session", json={"token": token})
    reply.raise_for_status()
    return {"X-CSRF-Token": reply.json()["csrf_token"]}


async def annotator(
    web: str,
    token: str,
    project: str,
    stop: asyncio.Event,
    out: dict[str, list[float]],
    interval_s: float,
) -> None:
    """Label in a loop: as fast as answers come (interval 0), or one label every
    `interval_s` seconds, as a person at a steady pace does."""
    async with httpx.AsyncClient(base_url=web, timeout=30) as client:
        csrf = await sign_in(client, token)
        after_submit = False
        due = time.perf_counter() + random.uniform(0, interval_s)
        while not stop.is_set():
            if interval_s:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                due += interval_s
            started = time.perf_counter()
            reply = await client.post(f"/api/projects/{project}/tasks/next", headers=csrf)
            took = time.perf_counter() - started
            if reply.status_code != 200:
                out["errors"].append(float(reply.status_code))
                await asyncio.sleep(0.5)
                continue
            if after_submit:
                out["next_after_submit"].append(took)
            task = reply.json()["task"]
            if task is None:
                after_submit = False
                await asyncio.sleep(reply.json()["retry_after_ms"] / 1000)
                continue
            value = "cat" if "cat" in task["content"].get("text", "") else "dog"
            started = time.perf_counter()
            sent = await client.post(
                f"/api/tasks/{task['task_id']}/label",
                headers=csrf,
                json={
                    "value": value,
                    "client_label_id": uuid.uuid4().hex,
                    "duration_ms": 1200,
                    "active_ms": 1000,
                },
            )
            if sent.status_code == 200:
                out["submit"].append(time.perf_counter() - started)
                out["labels_at"].append(time.perf_counter())
                after_submit = True
            else:
                out["errors"].append(float(sent.status_code))
                after_submit = False


async def manager(
    web: str, token: str, project: str, stop: asyncio.Event, out: dict[str, list[float]]
) -> None:
    async with httpx.AsyncClient(base_url=web, timeout=30) as client:
        await sign_in(client, token)
        while not stop.is_set():
            started = time.perf_counter()
            reply = await client.get(f"/projects/{project}/console")
            if reply.status_code == 200:
                out["console"].append(time.perf_counter() - started)
            else:
                out["errors"].append(float(reply.status_code))
            await asyncio.sleep(0.5)


async def one_run(
    stack: Stack,
    annotators: int,
    items: int,
    warmup_s: float,
    seconds: float,
    bar: ProgressBar,
    rate: float,
) -> dict[str, Any]:
    people = {
        f"w{i:03d}-{uuid.uuid4().hex[:4]}": common_pb2.ROLE_ANNOTATOR for i in range(annotators)
    }
    boss = f"boss-{uuid.uuid4().hex[:4]}"
    project = make_project(stack, {**people, boss: common_pb2.ROLE_MANAGER}, items=items)
    out: dict[str, list[float]] = {
        k: [] for k in ("next_after_submit", "submit", "labels_at", "console", "errors")
    }
    stop = asyncio.Event()
    workers = [
        asyncio.create_task(
            annotator(
                stack.web,
                project.tokens[p],
                project.name,
                stop,
                out,
                annotators / rate if rate else 0.0,
            )
        )
        for p in people
    ]
    workers.append(
        asyncio.create_task(manager(stack.web, project.tokens[boss], project.name, stop, out))
    )
    await asyncio.sleep(warmup_s)
    for values in out.values():
        values.clear()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        await asyncio.sleep(1.0)
        bar.update(int(time.perf_counter() - started))
    cpu_after = cpu_seconds()
    stop.set()
    await asyncio.gather(*workers)
    window = [t for t in out["labels_at"] if t <= started + seconds]
    cpu = cpu_per_label(cpu_before, cpu_after, len(window))
    return {
        "cpu_ms_per_label": cpu,
        "cpu_ms_per_label_total": sum(cpu.values()),
        "labels_per_s": len(window) / seconds,
        "next_after_submit_ms": {q: pct(out["next_after_submit"], v) for q, v in PCTS},
        "submit_ms": {q: pct(out["submit"], v) for q, v in PCTS},
        "console_ms": {q: pct(out["console"], v) for q, v in PCTS},
        "console_loads": len(out["console"]),
        "errors": len(out["errors"]),
    }


PCTS = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
SERVICES = ("gateway", "web", "quality", "sampler", "inference", "training")


def group_of(proc: psutil.Process) -> str:
    """Which part of the stack a process is (its command line says)."""
    if proc.pid == psutil.Process().pid:
        return "load generator"
    try:
        line = " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "other"
    for name in SERVICES:
        if f"strata.{name}" in line:
            return name
    if "postgres" in line:
        return "postgres"
    if "tansu" in line:
        return "broker"
    if "ray" in line:
        return "ray (idle workers, dashboard)"
    return "other"


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (group, user + system CPU seconds so far) for every process we can read."""
    found = {}
    for proc in psutil.process_iter():
        try:
            t = proc.cpu_times()
            found[proc.pid] = (group_of(proc), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def cpu_per_label(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], labels: int
) -> dict[str, float]:
    """CPU ms per label by group over a window (processes alive at both ends)."""
    spent: dict[str, float] = {}
    for pid, (group, end) in after.items():
        if pid in before:
            spent[group] = spent.get(group, 0.0) + end - before[pid][1]
    per = {g: 1000 * s / max(labels, 1) for g, s in spent.items() if s > 0}
    return dict(sorted(per.items(), key=lambda kv: -kv[1]))


def spread(runs: list[dict[str, Any]], *path: str) -> dict[str, float]:
    values = []
    for r in runs:
        v: Any = r
        for p in path:
            v = v[p]
        values.append(float(v))
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def cpu_median(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per group, the median over the runs of its CPU ms per label."""
    groups = {g for r in runs for g in r["cpu_ms_per_label"]}
    med = {g: statistics.median(r["cpu_ms_per_label"].get(g, 0.0) for r in runs) for g in groups}
    return dict(sorted(med.items(), key=lambda kv: -kv[1]))


def cpu_lines(per_label: dict[str, float]) -> str:
    total = sum(per_label.values())
    cores = psutil.cpu_count() or 1
    parts = ", ".join(f"{g} {ms:.1f}" for g, ms in per_label.items() if ms >= 0.05)
    return (
        f"  CPU per label              {total:.1f} ms in all ({parts}); "
        f"{cores} cores take at most {1000 * cores / total:.0f} labels/s at that cost\n"
        if total
        else ""
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="labels/s the team offers together, each at a steady pace (0: a closed loop)",
    )
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as home:
        # No training while measuring: the web and the labeling path are what is timed.
        gen = run_stack(Path(home), STRATA_TRAINING_MIN_LABELS="10000000")
        stack = next(gen)
        try:
            for n in range(args.runs):
                print(f"run {n + 1}/{args.runs}: {args.items} items, {args.annotators} annotators")
                bar = ProgressBar("seconds", int(args.seconds))
                runs.append(
                    asyncio.run(
                        one_run(
                            stack,
                            args.annotators,
                            args.items,
                            args.warmup,
                            args.seconds,
                            bar,
                            args.rate,
                        )
                    )
                )
                bar.close()
        finally:
            gen.close()
    summary = {
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "items": args.items,
        "annotators": args.annotators,
        "seconds": args.seconds,
        "offered_labels_per_s": args.rate or "closed loop",
        "runs": runs,
        "labels_per_s": spread(runs, "labels_per_s"),
        **{
            f"{what}_{q}": spread(runs, f"{what}_ms", q)
            for what in ("next_after_submit", "submit", "console")
            for q, _ in PCTS
        },
        "cpu_ms_per_label": cpu_median(runs),
        "targets": {
            "next_after_submit_p95_ms": 100,
            "console_p95_ms": 300,
            "labels_per_s": 200,
        },
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results = RESULTS_DIR / (f"web_rate{args.rate:g}.json" if args.rate else "web.json")
    results.write_text(json.dumps(summary, indent=2) + "\n")
    s = summary
    mode = f"offering {args.rate:g} labels/s" if args.rate else "closed loop"
    print(
        f"web, {args.annotators} annotators ({mode}) on {args.items} items, {args.runs} runs of "
        f"{args.seconds:.0f} s (median, min-max):\n"
        f"  labels/s through HTTP      {s['labels_per_s']['median']:.0f} "
        f"({s['labels_per_s']['min']:.0f}-{s['labels_per_s']['max']:.0f}); target >= 200\n"
        + "".join(
            f"  {what:<26} p50 {s[f'{key}_p50']['median']:.0f} ms, "
            f"p95 {s[f'{key}_p95']['median']:.0f} ms "
            f"({s[f'{key}_p95']['min']:.0f}-{s[f'{key}_p95']['max']:.0f}), "
            f"p99 {s[f'{key}_p99']['median']:.0f} ms{target}\n"
            for what, key, target in (
                ("next task after submit", "next_after_submit", "; p95 target <= 100 ms"),
                ("label submit", "submit", ""),
                ("console page", "console", "; p95 target <= 300 ms"),
            )
        )
        + cpu_lines(summary["cpu_ms_per_label"])
        + f"  errors: {[r['errors'] for r in runs]}\n  -> {results.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
