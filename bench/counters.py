"""PoolStats and QueueStats on a big pool: counters against counting the rows.

Fills one sampler schema with `--items` items (states, duplicates, scores, classes and
model versions mixed as a running project has them) and one gateway schema with as many
label units, their tasks and labels, straight from `generate_series` (the counters'
triggers count them as they go in). Then, many times each:

- the sampler's figures as `PoolStats` reads them now, every counter spread over every
  shard (the worst case for a read) (`store.pool_stats`, and
  `store.pool_counts` for `counts_only`), and as it read them before (a count by
  state, every pool item's score fetched for the histogram, classes, the newest model
  version);
- the gateway's figures as `QueueStats` reads them now (`stats.queue_counts`) and
  before (a count of units, tasks and labels);
- what the triggers cost the writes: a 1,000-item score update, a 1,000-item hand-out
  and a 5,000-item insert, with the triggers on and off.

    .venv/bin/python bench/counters.py                 # 1,000,000 items
    .venv/bin/python bench/counters.py --items 100000

Uses STRATA_PG_DSN when set, else an embedded Postgres of its own. Prints the figures and
writes bench/results/counters.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from harness import ROOT, report
from strata.common.db import load_migrations, migrate
from strata.common.embedded import EmbeddedPostgres, free_port
from strata.gateway import stats
from strata.sampler import store

SAMPLER_SCHEMA = "bench_counters_sampler"
GATEWAY_SCHEMA = "bench_counters_gateway"
PROJECT = "big"

FILL_ITEMS = """
INSERT INTO items (item_id, project, content, content_hash, state, duplicate_kind,
                   canonical_item_id, predicted_class, uncertainty, model_version, import_seq)
SELECT md5(g::text), %(project)s, '\\x00'::bytea, md5('h' || g::text),
       s.state, CASE WHEN s.state = 'duplicate' THEN (ARRAY['exact', 'near'])[1 + g %% 2] END,
       CASE WHEN s.state = 'duplicate' THEN md5((g - 1)::text) END,
       CASE WHEN g %% 10 < 8 THEN g %% 10 END,
       CASE WHEN g %% 10 < 8 THEN random() END,
       CASE WHEN g %% 10 < 8 THEN 'v' || (1 + g %% 12) END, 1
FROM generate_series(%(first)s::bigint, %(last)s::bigint) g,
LATERAL (SELECT CASE WHEN g %% 100 < 70 THEN 'pool' WHEN g %% 100 < 75 THEN 'inflight'
                     WHEN g %% 100 < 90 THEN 'labeled' WHEN g %% 100 < 93 THEN 'review'
                     WHEN g %% 100 < 98 THEN 'duplicate' ELSE 'gold' END AS state) s
"""

FILL_QUEUE = (
    "INSERT INTO items (item_id, project, content) "
    "SELECT 'i' || g, %(project)s, '\\x00'::bytea FROM generate_series(1, %(n)s) g",
    "INSERT INTO annotators (annotator_id, role) "
    "SELECT 'a' || a, 'person' FROM generate_series(0, 49) a",
    # 70% decided, 10% in review, 20% labelled and waiting for consensus; the newest 900
    # are the live queue: 500 leased (each with a live lease), 400 with a slot open.
    "INSERT INTO units (item_id, project, kind, state, target, slots_open, labels, routing) "
    "SELECT 'i' || g, %(project)s, 'label', CASE WHEN g > %(n)s - 900 THEN 'open' "
    "WHEN g %% 10 < 7 THEN 'done' WHEN g %% 10 < 8 THEN 'closed' ELSE 'open' END, 1, "
    "CASE WHEN g > %(n)s - 400 THEN 1 ELSE 0 END, CASE WHEN g > %(n)s - 900 THEN 0 ELSE 1 END, "
    "'\\x'::bytea FROM generate_series(1, %(n)s) g",
    "INSERT INTO tasks (task_id, unit_id, item_id, project, annotator_id, kind, state, "
    "ontology_version, leased_at, lease_expires_at) "
    "SELECT md5(u.unit_id::text)::uuid, u.unit_id, u.item_id, u.project, "
    "'a' || (u.unit_id %% 50), 'label', "
    "CASE WHEN u.labels > 0 THEN 'labeled' ELSE 'leased' END, 'v1', "
    "now() - make_interval(secs => u.unit_id %% 7200), now() + interval '1 hour' "
    "FROM units u WHERE u.project = %(project)s AND (u.labels > 0 OR u.slots_open = 0)",
    "INSERT INTO labels (label_id, task_id, item_id, project, annotator_id, client_label_id, "
    "value, ontology_version, duration_ms, source, gold, submitted_at) "
    "SELECT t.task_id, t.task_id, t.item_id, t.project, t.annotator_id, t.task_id::text, "
    "'cat', 'v1', 1000, 1, false, t.leased_at "
    "FROM tasks t WHERE t.project = %(project)s AND t.state = 'labeled'",
)


def old_pool_stats(conn: Any, project: str) -> dict[str, Any]:
    """PoolStats' reads before the counters (store.pool_stats at 434416a)."""
    one = (project,)
    states = dict(
        conn.execute("SELECT state, count(*) FROM items WHERE project = %s GROUP BY 1", one)
    )
    dups = dict(
        conn.execute(
            "SELECT duplicate_kind, count(*) FROM items WHERE project = %s "
            "AND duplicate_kind IS NOT NULL GROUP BY 1",
            one,
        )
    )
    scores = np.asarray(
        [
            r[0]
            for r in conn.execute(
                "SELECT uncertainty FROM items WHERE project = %s AND state = 'pool' "
                "AND uncertainty IS NOT NULL",
                one,
            )
        ]
    )
    bounds = np.linspace(0, max(1.0, float(scores.max()) if scores.size else 1.0), 11)[1:]
    np.histogram(scores, bins=np.concatenate([[0.0], bounds]))
    classes = dict(
        conn.execute(
            "SELECT predicted_class, count(*) FROM items WHERE project = %s "
            "AND predicted_class IS NOT NULL AND state IN ('pool', 'inflight') GROUP BY 1",
            one,
        )
    )
    version = conn.execute(
        "SELECT model_version FROM items WHERE project = %s AND model_version IS NOT NULL "
        "ORDER BY model_version DESC LIMIT 1",
        one,
    ).fetchone()
    return {"states": states, "duplicates": dups, "classes": classes, "version": version}


def old_queue_counts(conn: Any, project: str) -> tuple[Any, ...]:
    """QueueStats' reads before the counters (stats.queue_counts at 434416a)."""
    row = conn.execute(
        "SELECT "
        "(SELECT coalesce(sum(slots_open), 0) FROM units WHERE project = %(p)s AND kind = 'label' "
        " AND state = 'open'), "
        "(SELECT count(*) FROM tasks WHERE project = %(p)s AND state = 'leased'), "
        "(SELECT count(*) FROM units WHERE project = %(p)s AND kind = 'label' AND state = 'done'), "
        "(SELECT count(*) FROM units WHERE project = %(p)s AND kind = 'gold'), "
        "(SELECT count(*) FROM units WHERE project = %(p)s AND kind = 'review' "
        " AND state = 'open'), "
        "(SELECT count(*) FROM labels WHERE project = %(p)s), "
        "(SELECT count(*) FROM labels WHERE project = %(p)s "
        " AND submitted_at > now() - interval '1 hour')",
        {"p": project},
    ).fetchone()
    oldest = conn.execute(
        "SELECT leased_at, annotator_id FROM tasks WHERE project = %s AND state = 'leased' "
        "ORDER BY leased_at LIMIT 1",
        (project,),
    ).fetchone()
    return tuple(row or ()) + tuple(oldest or ())


def timed(conn: Any, read: Callable[[Any, str], object], runs: int) -> dict[str, float]:
    """p50 and p95 milliseconds of `read`, each in its own transaction, as an RPC runs it."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with conn.transaction():
            read(conn, PROJECT)
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
    }


def schema(dsn: str, name: str, service: str) -> psycopg.Connection[Any]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    migrations = load_migrations(service, ROOT / "services" / "strata" / service / "migrations")
    migrate(dsn, name, migrations)
    return psycopg.connect(dsn, options=f"-c search_path={name},public", autocommit=True)


def write_costs(conn: Any, rng: random.Random, rounds: int) -> dict[str, float]:
    """Median ms of a 1,000-item score update, a 1,000-item hand-out (and its return to
    the pool) and a 5,000-item insert, with the counting triggers on and off, in turns."""
    ids = [r[0] for r in conn.execute("SELECT item_id FROM items WHERE state = 'pool' LIMIT 50000")]
    costs: dict[str, list[float]] = {}

    def run(name: str, sql: str, params: Any) -> None:
        started = time.perf_counter()
        conn.execute(sql, params)
        costs.setdefault(name, []).append((time.perf_counter() - started) * 1000)

    for n in range(rounds):
        for triggers in ("on", "off"):
            conn.execute(
                f"ALTER TABLE items {'ENABLE' if triggers == 'on' else 'DISABLE'} TRIGGER USER"
            )
            batch = rng.sample(ids, 1000)
            run(
                f"score_update_1000_triggers_{triggers}_ms",
                "UPDATE items SET model_version = 'v13', predicted_class = u.c, "
                "uncertainty = u.s FROM unnest(%s::text[], %s::int[], %s::float8[]) "
                "AS u(i, c, s) WHERE items.item_id = u.i",
                (batch, [rng.randrange(10) for _ in batch], [rng.random() for _ in batch]),
            )
            run(
                f"hand_out_1000_triggers_{triggers}_ms",
                "UPDATE items SET state = 'inflight', leased_by = 'gw', "
                "lease_until = now() + interval '1 hour' WHERE item_id = ANY(%s) "
                "AND state = 'pool'",
                (batch,),
            )
            conn.execute(
                "UPDATE items SET state = 'pool', leased_by = NULL, lease_until = NULL "
                "WHERE item_id = ANY(%s)",
                (batch,),
            )
            first = 10_000_000 + (2 * n + (triggers == "off")) * 5000
            run(
                f"insert_5000_triggers_{triggers}_ms",
                FILL_ITEMS,
                {"project": "other", "first": first, "last": first + 4999},
            )
    conn.execute("ALTER TABLE items ENABLE TRIGGER USER")
    return {name: round(statistics.median(v), 1) for name, v in costs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--old-runs", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="strata-bench-counters-"))
    pg = None
    dsn = os.environ.get("STRATA_PG_DSN", "")
    if not dsn:
        pg = EmbeddedPostgres(home / "pg", free_port())
        pg.start()
        dsn = pg.dsn
    try:
        figures: dict[str, object] = {"items": args.items}
        sampler = schema(dsn, SAMPLER_SCHEMA, "sampler")
        started = time.perf_counter()
        sampler.execute(FILL_ITEMS, {"project": PROJECT, "first": 1, "last": args.items})
        figures["sampler_fill_seconds"] = round(time.perf_counter() - started, 1)
        # The worst case for a read: every shard holds a row for every counter.
        sampler.execute(
            "INSERT INTO pool_counters SELECT project, kind, value, s, 0 FROM pool_counters, "
            "generate_series(1, 31) s ON CONFLICT DO NOTHING"
        )
        sampler.execute("VACUUM ANALYZE")
        counts = store.pool_stats(sampler, PROJECT)
        assert sum(counts.states.values()) == args.items, counts.states
        figures["sampler_states"] = counts.states
        figures["pool_stats_counters"] = timed(sampler, store.pool_stats, args.runs)
        figures["pool_counts_counters"] = timed(sampler, store.pool_counts, args.runs)
        figures["pool_stats_rows_before"] = timed(sampler, old_pool_stats, args.old_runs)
        figures.update(write_costs(sampler, random.Random(1), 7))

        gateway = schema(dsn, GATEWAY_SCHEMA, "gateway")
        started = time.perf_counter()
        for statement in FILL_QUEUE:
            gateway.execute(statement, {"project": PROJECT, "n": args.items})
        figures["gateway_fill_seconds"] = round(time.perf_counter() - started, 1)
        gateway.execute(
            "INSERT INTO queue_counters SELECT project, kind, value, s, 0 "
            "FROM queue_counters, generate_series(1, 63) s ON CONFLICT DO NOTHING"
        )
        gateway.execute(
            "INSERT INTO label_minutes SELECT project, minute, s, 0 "
            "FROM label_minutes, generate_series(1, 63) s ON CONFLICT DO NOTHING"
        )
        gateway.execute("VACUUM ANALYZE")
        queue = stats.queue_counts(gateway, PROJECT)
        figures["gateway_items_by_state"] = queue.items_by_state
        figures["gateway_labels"] = queue.labels_total
        figures["queue_stats_counters"] = timed(gateway, stats.queue_counts, args.runs)
        figures["queue_stats_rows_before"] = timed(gateway, old_queue_counts, args.old_runs)
        report("counters", figures)
    finally:
        if pg is not None:
            pg.stop()


if __name__ == "__main__":
    main()
