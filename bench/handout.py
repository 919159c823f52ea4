"""Sampler hand-out at scale: NextBatch latency at a 10,000- and a 1,000,000-item pool.

Rows go straight into the sampler's items table with generate_series (importing a
million items through ImportItems would take minutes and measure the import, not the
hand-out). Each pool size gets a sampler of its own (its own schema) on one embedded
Postgres and broker, and two cases:

- cold: no item scored yet (the diversity draw from random candidates);
- ranked: every item scored by model m1 (margin uncertainty, 16-d embeddings (`--dim`), three
  classes, one item in a thousand a spot check).

Each case is timed twice: with the statistics a bulk load leaves (taken when the pool
held 1,000 unscored items; autovacuum off for the table, so they stay that way) and
after ANALYZE. A timed call is one NextBatch of 16 items (`--batch`) over gRPC as the gateway
(mutual TLS), `--calls` of them after two warm-up calls: median and p90 per case, and
the ratio of the 1M median to the 10k one (the target: at most 2). Per case, too: the
Postgres buffers each candidate read touches (8 kB pages, cached or not: the work done,
whatever share of the table the cache holds; the embedded Postgres has 64 MB of shared
buffers, so at a million items most of those pages come from the OS cache) and any plan
node that reads or orders the pool (a sequential scan, a sort).

Prints the figures and writes bench/results/handout.json (`--name` to write another).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from harness import embedded_stack, report
from strata.common.config import ServiceConfig
from strata.common.embedded import EmbeddedPostgres
from strata.common.service import ServiceRuntime
from strata.sampler.__main__ import build
from strata.sampler.config import SamplerConfig
from strata.sampler.handout import slices
from strata.v1 import common_pb2, sampler_pb2, sampler_pb2_grpc

from tests import pki

PROJECT = "bench"
SEED_ROWS = 1_000
BATCH = 16
CONTENT = common_pb2.ItemContent(text="a bench item to label").SerializeToString()

_INSERT = (
    "INSERT INTO items (item_id, project, content, content_hash, state, import_seq) "
    "SELECT md5('item' || g), %s, %s, md5('content' || g), 'pool', 1 "
    "FROM generate_series(%s::int, %s::int) AS g"
)
# What inference's predictions leave on every pool item (the sampler's handler stores
# the same columns): margin uncertainty of three-class probabilities, an embedding.
_SCORE = (
    "UPDATE items SET model_version = 'm1', probabilities = ARRAY[p1, p2, 1 - p1 - p2]::real[], "
    "predicted_class = (CASE WHEN p1 >= p2 AND p1 >= 1 - p1 - p2 THEN 0 "
    "WHEN p2 >= 1 - p1 - p2 THEN 1 ELSE 2 END), "
    "uncertainty = random(), spot_check = random() < 0.001, "
    "embedding = ARRAY(SELECT random()::real FROM generate_series(1, {dim} + 0 * length(item_id))) "
    "FROM (SELECT item_id AS id, r * 0.5 AS p1, (1 - r) * 0.4 AS p2 "
    "      FROM (SELECT item_id, random() AS r FROM items) s) AS scores "
    "WHERE items.item_id = scores.id"
)


# The two candidate reads of a hand-out of 16 (store.ranked_candidates and
# store.random_candidates; the same SQL before and after the 0007 indexes).
_COLUMNS = "item_id, uncertainty, predicted_class, embedding, vector, spot_check"
_RANKED = (
    f"SELECT {_COLUMNS} FROM items WHERE project = %s AND state = 'pool' "
    "AND uncertainty IS NOT NULL ORDER BY spot_check DESC, uncertainty DESC NULLS LAST LIMIT %s"
)
_RANDOM = (
    f"SELECT {_COLUMNS} FROM items WHERE project = %s AND state = 'pool' "
    "AND item_id >= %s ORDER BY item_id ASC LIMIT %s"
)


def candidate_reads(conn: psycopg.Connection[Any], cold: bool, batch: int) -> dict[str, object]:
    """Postgres buffers (8 kB pages, cached or not) each candidate read touches, and the
    plan nodes over the pool that do not belong in a hand-out (median of five reads)."""
    figures: dict[str, object] = {}
    for name, query, limit in (
        ("ranked", _RANKED, slices(batch)[0]),
        ("random", _RANDOM, slices(batch)[1] if cold else batch),
    ):
        blocks, wide = [], set()
        for _ in range(5):
            params = (PROJECT, limit) if name == "ranked" else (PROJECT, uuid.uuid4().hex, limit)
            row = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {query}", params)
            plan = row.fetchone()[0][0]["Plan"]  # type: ignore[index]
            blocks.append(plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0))
            stack = [plan]
            while stack:
                node = stack.pop()
                stack += node.get("Plans", [])
                if node["Node Type"] in ("Seq Scan", "Sort", "Bitmap Heap Scan"):
                    wide.add(node["Node Type"])
        figures[f"{name}_read_blocks"] = int(statistics.median(blocks))
        figures[f"{name}_read_pool_wide_nodes"] = sorted(wide)
    return figures


def timed_batches(
    stub: sampler_pb2_grpc.SamplerStub, calls: int, cold: bool, batch: int
) -> dict[str, Any]:
    """Median and p90 milliseconds of `calls` NextBatch calls (after two warm-up calls)."""
    seconds = []
    for i in range(calls + 2):
        started = time.perf_counter()
        reply = stub.NextBatch(
            sampler_pb2.NextBatchRequest(
                project=PROJECT, size=batch, requester="bench", lease_seconds=3600
            ),
            timeout=60,
        )
        took = time.perf_counter() - started
        assert len(reply.items) == batch and reply.cold_start == cold, reply
        if i >= 2:
            seconds.append(took)
    seconds.sort()
    return {
        "median_ms": round(1000 * statistics.median(seconds), 1),
        "p90_ms": round(1000 * seconds[int(0.9 * (len(seconds) - 1))], 1),
    }


def bench_pool(
    pg: EmbeddedPostgres, bootstrap: str, n: int, calls: int, batch: int, dim: int
) -> dict[str, Any]:
    """The four cases for a pool of `n` items, in a sampler schema of their own."""
    schema = f"handout_{n}"
    runtime: ServiceRuntime = build(
        ServiceConfig(
            service=schema,
            pg_dsn=pg.dsn,
            kafka_bootstrap=bootstrap,
            tls=pki.service_tls("sampler"),
            identity="sampler",
            log_level="WARNING",
        ),
        SamplerConfig(),
    )
    endpoints = runtime.start()
    figures: dict[str, Any] = {}
    try:
        channel = pki.as_service(f"127.0.0.1:{endpoints.grpc_port}", "gateway")
        stub = sampler_pb2_grpc.SamplerStub(channel)
        with psycopg.connect(pg.dsn, autocommit=True, options=f"-c search_path={schema}") as conn:
            conn.execute("ALTER TABLE items SET (autovacuum_enabled = false)")
            started = time.perf_counter()
            conn.execute(_INSERT, (PROJECT, CONTENT, 1, SEED_ROWS))
            conn.execute("ANALYZE items")
            conn.execute(_INSERT, (PROJECT, CONTENT, SEED_ROWS + 1, n))
            figures["load_seconds"] = round(time.perf_counter() - started, 1)
            figures["cold_stale_stats"] = timed_batches(stub, calls, cold=True, batch=batch)
            figures["cold_stale_stats"].update(candidate_reads(conn, cold=True, batch=batch))
            conn.execute("ANALYZE items")
            figures["cold_analyzed"] = timed_batches(stub, calls, cold=True, batch=batch)
            figures["cold_analyzed"].update(candidate_reads(conn, cold=True, batch=batch))
            started = time.perf_counter()
            conn.execute(_SCORE.format(dim=dim))
            if conn.execute("SELECT to_regclass('model_versions')").fetchone() != (None,):
                # What the predictions handler records beside the scores (from 0007 on).
                conn.execute(
                    "INSERT INTO model_versions (project, model_version) VALUES (%s, 'm1') "
                    "ON CONFLICT DO NOTHING",
                    (PROJECT,),
                )
            figures["score_seconds"] = round(time.perf_counter() - started, 1)
            # The statistics still say no item is scored: predictions came in bulk.
            figures["ranked_stale_stats"] = timed_batches(stub, calls, cold=False, batch=batch)
            figures["ranked_stale_stats"].update(candidate_reads(conn, cold=False, batch=batch))
            conn.execute("ANALYZE items")
            figures["ranked_analyzed"] = timed_batches(stub, calls, cold=False, batch=batch)
            figures["ranked_analyzed"].update(candidate_reads(conn, cold=False, batch=batch))
        channel.close()
    finally:
        runtime.stop(grace_s=1.0)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--batch", type=int, default=BATCH, help="items per NextBatch")
    parser.add_argument("--dim", type=int, default=16, help="embedding dimensions")
    parser.add_argument("--name", default="handout", help="results file bench/results/NAME.json")
    args = parser.parse_args()

    results: dict[str, object] = {
        "batch_size": args.batch,
        "embedding_dims": args.dim,
        "timed_calls": args.calls,
    }
    per_size: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as home, embedded_stack(Path(home)) as (pg, kafka):
        for n in args.sizes:
            per_size[n] = bench_pool(pg, kafka.bootstrap, n, args.calls, args.batch, args.dim)
            for case, value in per_size[n].items():
                results[f"pool_{n}_{case}"] = value
    small, large = min(args.sizes), max(args.sizes)
    if small != large:
        for case in ("cold_stale_stats", "cold_analyzed", "ranked_stale_stats", "ranked_analyzed"):
            a, b = per_size[small][case], per_size[large][case]
            assert isinstance(a, dict) and isinstance(b, dict)
            results[f"ratio_{large}_over_{small}_{case}"] = round(
                b["median_ms"] / max(a["median_ms"], 0.1), 2
            )
    report(args.name, results)


if __name__ == "__main__":
    main()
