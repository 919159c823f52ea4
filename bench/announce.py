"""How fast an import reaches the services that keep their own copy of the pool.

An import is acknowledged once the sampler has stored it; the other services learn
of its items from the sampler's announcements (`strata.items.imported`, through its
outbox): inference scores them, training trains on them, quality keeps what each item
is for exports. Until inference knows an item it cannot score it, so a new model's
re-scoring of a big pool is only as fast as this pipe.

`strata up` (every service, mutual TLS), one project (the demo's classes, overlap 1,
no gold), N items imported through `ImportItems`, no annotator: then, every second,
how many of them each service has stored, and the sampler's unpublished outbox, until
every service has every item or `--limit` seconds pass; and the CPU each process spent
per thousand items over that time (import included).

    .venv/bin/python bench/announce.py                     # 100k texts and vectors
    .venv/bin/python bench/announce.py --sizes 1000000 --kinds vector --out announce_1m

Writes bench/results/NAME.json (default `announce`) and NAME.png (items each service
knows against seconds since the import began).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from strata.cli.progress import ProgressBar  # noqa: E402

from bench.scale import import_pool, machine, make_people  # noqa: E402
from bench.web import cpu_per_label, cpu_seconds  # noqa: E402
from tests.browser.support import Stack, run_stack  # noqa: E402

# What each service stores of an imported item (its schema, table).
COPIES = {
    "inference": "inference.items",
    "training": "training.items",
    "quality": "quality.item_data",
}


def known(conn: psycopg.Connection[Any], project: str) -> dict[str, int]:
    """Items of `project` each service has stored, and the sampler's unpublished events."""

    def count(sql: str, *args: str) -> int:
        row = conn.execute(sql, args).fetchone()
        return int(row[0]) if row else 0

    out = {
        service: count(f"SELECT count(*) FROM {table} WHERE project = %s", project)
        for service, table in COPIES.items()
    }
    out["sampler_outbox"] = count("SELECT count(*) FROM sampler.outbox WHERE published_at IS NULL")
    return out


def watch(stack: Stack, project: str, n: int, began: float, limit_s: float) -> list[dict]:
    """Samples every second until every service holds `n` items or `limit_s` passed."""
    samples: list[dict] = []
    bar = ProgressBar("announced (least-informed service)", n)
    with psycopg.connect(stack.pg_dsn, autocommit=True) as conn:
        while True:
            counts = known(conn, project)
            samples.append({"t": round(time.time() - began, 1), **counts})
            least = min(counts[s] for s in COPIES)
            bar.update(least)
            if least >= n or time.time() - began > limit_s:
                break
            time.sleep(1.0)
    bar.close()
    return samples


def summarise(samples: list[dict], n: int, import_s: float) -> dict[str, Any]:
    """Per service: seconds from the import's start until it held every item (None: not
    within the limit), and the items it learned per second over that time."""
    out: dict[str, Any] = {}
    for service in COPIES:
        done = next((s["t"] for s in samples if s[service] >= n), None)
        last = samples[-1]
        out[service] = {
            "seconds_to_all": done,
            "seconds_after_import": round(done - import_s, 1) if done is not None else None,
            "held_at_end": last[service],
            "items_per_s": round((n if done else last[service]) / (done or last["t"])),
        }
    return out


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5), squeeze=False)
    for ax, run in zip(axes.flat, runs, strict=True):
        t = [s["t"] for s in run["samples"]]
        for service in COPIES:
            ax.plot(t, [s[service] for s in run["samples"]], label=service)
        ax.axvline(run["import"]["seconds"], color="grey", linestyle="--", label="import acked")
        ax.set_title(f"{run['items']:,} {run['kind']} items")
        ax.set_xlabel("seconds since the import began")
        ax.set_ylabel("items the service holds")
        ax.legend()
    fig.suptitle("An import reaching the services, " + machine())
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--kinds", default="text,vector")
    parser.add_argument("--limit", type=float, default=1800.0, help="seconds per run, at most")
    parser.add_argument("--out", default="announce")
    args = parser.parse_args()
    runs: list[dict[str, Any]] = []
    for kind in args.kinds.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory() as home:
                gen = run_stack(Path(home))
                stack = next(gen)
                try:
                    project = f"announce-{kind[0]}{size}-{uuid.uuid4().hex[:4]}"
                    _, manager = make_people(stack, project, 1)
                    began, cpu_before = time.time(), cpu_seconds()
                    imported = import_pool(stack, manager, project, kind, size)
                    samples = watch(stack, project, imported["imported"], began, args.limit)
                    # CPU ms per item by process, from the import's start to the end.
                    cpu = cpu_per_label(cpu_before, cpu_seconds(), imported["imported"])
                    run = {
                        "kind": kind,
                        "items": imported["imported"],
                        "import": imported,
                        "services": summarise(samples, imported["imported"], imported["seconds"]),
                        "cpu_ms_per_1000_items": {g: round(1000 * v) for g, v in cpu.items()},
                        "samples": samples,
                    }
                    runs.append(run)
                    print(json.dumps({k: v for k, v in run.items() if k != "samples"}))
                finally:
                    gen.close()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(
        json.dumps({"machine": machine(), "runs": runs}, indent=2) + "\n"
    )
    plot(runs, RESULTS / f"{args.out}.png")
    for run in runs:
        for service, s in run["services"].items():
            print(
                f"{run['kind']} x {run['items']}: {service} held all after "
                f"{s['seconds_to_all']} s ({s['items_per_s']} items/s)"
            )
    print(f"-> bench/results/{args.out}.json, {args.out}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
