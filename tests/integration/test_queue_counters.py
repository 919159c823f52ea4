"""QueueStats reads counters that triggers keep in each change's transaction, and live
partial indexes: after labels, skips, lease expiry, consensus, reviews and deliberately
failed (rolled-back) transactions they equal a full count of the rows; the migration
starts the counters from the rows already there."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from strata.common.db import load_migrations, migrate
from strata.common.events import make_event
from strata.common.topics import LABELS_CONSENSUS, REVIEWS_REQUESTED
from strata.gateway import inbound as gateway_inbound
from strata.gateway import stats as gateway_stats
from strata.gateway import store as gateway_store
from strata.sampler import store as sampler_store
from strata.v1 import common_pb2, events_pb2, gateway_pb2

from .conftest import Infra, produce, service_config, unique_service, wait_until
from .gateway_support import (
    contract_doc,
    gateway_settings,
    gold_events,
    scripted_sampler,
    start_gateway,
)
from .test_gateway import items as queue_items
from .test_gateway import next_task, submit
from .test_pool_counters import consensus_event, pool_reference, rolled_back


def unit_where(kind: str, state: str, labels: int, target: int, slots: int) -> str:
    """Where a unit is, as QueueStats counts it."""
    if kind in ("gold", "review"):
        return "gold" if kind == "gold" else f"review_{state}"
    if state in ("done", "closed"):
        return "completed" if state == "done" else "review"
    if labels >= target:
        return "labelled"
    return "queued" if slots > 0 else "leased"


def queue_reference(conn: Any, project: str) -> dict[str, Any]:
    """QueueStats' figures, counted from the rows (the queries it used to run)."""
    one = (project,)

    def count(sql: str) -> int:
        row = conn.execute(sql, one).fetchone()
        return int(row[0])

    units: dict[str, int] = {}
    for row in conn.execute(
        "SELECT kind, state, labels, target, slots_open FROM units WHERE project = %s", one
    ):
        where = unit_where(*row)
        units[where] = units.get(where, 0) + 1
    return {
        "ready": count(
            "SELECT coalesce(sum(slots_open), 0) FROM units WHERE project = %s "
            "AND kind = 'label' AND state = 'open'"
        ),
        "leased": count("SELECT count(*) FROM tasks WHERE project = %s AND state = 'leased'"),
        "completed": units.get("completed", 0),
        "gold_tasks": units.get("gold", 0),
        "review_tasks": units.get("review_open", 0),
        "labels_total": count("SELECT count(*) FROM labels WHERE project = %s"),
        "labels_last_hour": count(
            "SELECT count(*) FROM labels WHERE project = %s "
            "AND submitted_at > now() - interval '1 hour'"
        ),
        "items_by_state": {
            s: n
            for s, n in units.items()
            if s in ("queued", "leased", "labelled", "review", "completed")
        },
        "tasks": dict(
            conn.execute(
                "SELECT state, count(*) FROM tasks WHERE project = %s GROUP BY 1", one
            ).fetchall()
        ),
        "units": units,
    }


def counted(conn: Any, project: str, kind: str) -> dict[str, int]:
    rows = conn.execute(
        "SELECT value, sum(n) FROM queue_counters WHERE project = %s AND kind = %s "
        "GROUP BY 1 HAVING sum(n) <> 0",
        (project, kind),
    ).fetchall()
    return {value: int(n) for value, n in rows}


def test_queue_counters_equal_a_full_count_after_a_mixed_workload(infra: Infra) -> None:
    with scripted_sampler() as (source, address):
        gw = start_gateway(service_config(infra, "gateway"), gateway_settings(address))
        db = gw.runtime.db
        project = f"q{uuid.uuid4().hex[:8]}"
        try:
            gw.load_contract(
                contract_doc(
                    project, overlap="{min: 2, max: 3}", lease_seconds="2", gold="{rate: 0.2}"
                )
            )
            produce(infra.bootstrap, gold_events(project, 4, "cat"))
            pool = queue_items(project, 24)
            source.add(project, pool)
            people = [gw.annotator(f"a{i}-{project}", project=project) for i in range(4)]
            reviewer = gw.annotator(f"r-{project}", common_pb2.ROLE_REVIEWER, project)

            # Four people label at once; some skip, one walks away from a task (its lease
            # runs out).
            def work(md: list[tuple[str, str]], seed: int) -> None:
                local = random.Random(seed)
                for _ in range(12):
                    task = next_task(gw, md, project, wait_s=20)
                    if local.random() < 0.15:
                        gw.stub.SkipTask(
                            gateway_pb2.SkipTaskRequest(task_id=task.task_id, reason="unsure"),
                            metadata=md,
                        )
                    else:
                        submit(gw, md, task.task_id, local.choice(["cat", "dog"]))

            threads = [threading.Thread(target=work, args=(md, n)) for n, md in enumerate(people)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            next_task(gw, people[0], project)  # abandoned

            # Quality's decisions: accepted, one more annotator, expert reviews.
            with db.transaction() as conn:
                labelled = [
                    r[0]
                    for r in conn.execute(
                        "SELECT item_id FROM units WHERE project = %s AND kind = 'label' "
                        "AND labels >= 2 ORDER BY item_id",
                        (project,),
                    )
                ]
            assert len(labelled) >= 10
            events = [
                consensus_event(project, i, common_pb2.CONSENSUS_STATUS_ACCEPTED, "cat")
                for i in labelled[:4]
            ]
            events += [
                make_event(
                    LABELS_CONSENSUS,
                    i,
                    events_pb2.ConsensusUpdated(
                        consensus=common_pb2.ConsensusLabel(
                            item_id=i,
                            project=project,
                            status=common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW,
                        ),
                        requested_overlap=3,
                    ),
                )
                for i in labelled[4:6]
            ]
            events += [
                make_event(
                    REVIEWS_REQUESTED,
                    i,
                    events_pb2.ReviewRequested(
                        item_id=i, project=project, kind=events_pb2.REVIEW_KIND_EXPERT
                    ),
                )
                for i in labelled[6:8]
            ]
            produce(infra.bootstrap, events)

            def applied() -> bool:
                with db.transaction() as conn:
                    ref = queue_reference(conn, project)
                return ref["units"].get("review_open", 0) == 2 and ref["completed"] == 4

            wait_until(applied, 30, "quality's decisions applied")
            review = next_task(gw, reviewer, project)
            assert review.review
            submit(gw, reviewer, review.task_id, "dog")

            # Transactions that fail after changing units, tasks and labels.
            rolled_back(
                db.transaction,
                lambda conn: (
                    gateway_inbound.apply_consensus(
                        conn, labelled[8], common_pb2.CONSENSUS_STATUS_ACCEPTED, 2, "cat"
                    ),
                    gateway_inbound.open_review(conn, labelled[9], project, b"", 1),
                    gateway_store.release_leases(conn, f"a0-{project}", project),
                    conn.execute("DELETE FROM labels WHERE project = %s", (project,)),
                ),
            )
            rolled_back(
                db.transaction,
                lambda conn: conn.execute(
                    "UPDATE tasks SET state = 'expired' WHERE project = %s", (project,)
                ),
            )

            # The abandoned lease runs out and the sweeper returns its slot.
            def swept() -> bool:
                with db.transaction() as conn:
                    return queue_reference(conn, project)["leased"] == 0

            wait_until(swept, 30, "the abandoned lease swept")

            with db.transaction() as conn:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                ref = queue_reference(conn, project)
                snapshot = gateway_stats.queue_counts(conn, project)
                units = counted(conn, project, "unit")
            waiting = ref["units"].pop("queued", 0) + ref["units"].pop("leased", 0)
            assert units == {**ref["units"], **({"waiting": waiting} if waiting else {})}
            assert ref["tasks"].get("expired", 0) >= 1 and ref["tasks"].get("skipped", 0) >= 1
            assert {"labelled", "review", "completed"} <= set(ref["items_by_state"])
            for name in ("ready", "leased", "completed", "gold_tasks", "review_tasks"):
                assert getattr(snapshot, name) == ref[name], name
            assert snapshot.labels_total == ref["labels_total"]
            assert snapshot.labels_last_hour == ref["labels_last_hour"]
            assert snapshot.items_by_state == ref["items_by_state"]
            stats = gw.stub.QueueStats(
                gateway_pb2.QueueStatsRequest(project=project), metadata=gw.admin
            )
            assert dict(stats.items_by_state) == ref["items_by_state"]
            assert (stats.ready, stats.completed, stats.labels_total) == (
                ref["ready"],
                ref["completed"],
                ref["labels_total"],
            )
        finally:
            gw.channel.close()
            gw.runtime.stop(grace_s=1.0)


# -- the migration ------------------------------------------------------------------------------


def test_the_migration_counts_the_rows_already_there(infra: Infra) -> None:
    """Counters start from the rows a deployment already has (filled under a lock, in the
    migration's transaction), and the triggers carry on from there."""
    services = Path(__file__).resolve().parents[2] / "services" / "strata"
    sampler_schema = unique_service("sampler")
    gateway_schema = unique_service("gateway")
    sampler_migrations = load_migrations("sampler", services / "sampler" / "migrations")
    gateway_migrations = load_migrations("gateway", services / "gateway" / "migrations")
    migrate(infra.pg_dsn, sampler_schema, sampler_migrations[:5])
    migrate(infra.pg_dsn, gateway_schema, gateway_migrations[:5])
    with psycopg.connect(infra.pg_dsn, options=f"-c search_path={sampler_schema}") as conn:
        conn.execute(
            "INSERT INTO items (item_id, project, content, content_hash, state, duplicate_kind, "
            "canonical_item_id, predicted_class, uncertainty, model_version) "
            "SELECT 'i' || g, 'p' || (g % 2), '\\x00'::bytea, 'h' || g, "
            "(ARRAY['pool', 'inflight', 'labeled', 'duplicate', 'gold'])[1 + g % 5], "
            "CASE WHEN g % 5 = 3 THEN 'exact' END, CASE WHEN g % 5 = 3 THEN 'i0' END, "
            "g % 3, (g % 17) / 10.0, 'v' || (g % 11) FROM generate_series(0, 499) g"
        )
    with psycopg.connect(infra.pg_dsn, options=f"-c search_path={gateway_schema}") as conn:
        conn.execute("INSERT INTO annotators (annotator_id, role) VALUES ('a', 'person')")
        conn.execute(
            "INSERT INTO items (item_id, project, content) "
            "SELECT 'i' || g, 'p', '\\x00'::bytea FROM generate_series(0, 99) g"
        )
        conn.execute(
            "INSERT INTO units (item_id, project, kind, state, target, slots_open, labels, "
            "routing) SELECT 'i' || g, 'p', CASE WHEN g < 90 THEN 'label' ELSE 'gold' END, "
            "(ARRAY['open', 'done', 'closed'])[1 + g % 3], 2, g % 2, g % 3, '\\x'::bytea "
            "FROM generate_series(0, 99) g"
        )
        conn.execute(
            "INSERT INTO tasks (task_id, unit_id, item_id, project, annotator_id, kind, state, "
            "ontology_version, lease_expires_at) SELECT md5(unit_id::text)::uuid, unit_id, "
            "item_id, project, 'a', kind, 'labeled', 'v1', now() FROM units"
        )
        conn.execute(
            "INSERT INTO labels (label_id, task_id, item_id, project, annotator_id, "
            "client_label_id, value, ontology_version, duration_ms, source, gold, submitted_at) "
            "SELECT task_id, task_id, item_id, project, 'a', task_id::text, 'cat', 'v1', 1, 1, "
            "false, now() - make_interval(mins => unit_id::int) FROM tasks"
        )
    migrate(infra.pg_dsn, sampler_schema, sampler_migrations)
    migrate(infra.pg_dsn, gateway_schema, gateway_migrations)
    with psycopg.connect(infra.pg_dsn, options=f"-c search_path={sampler_schema}") as conn:
        for project in ("p0", "p1"):
            ref = pool_reference(conn, project)
            counts = sampler_store.pool_stats(conn, project)
            assert counts.states == ref["states"] and counts.duplicates == ref["duplicates"]
            assert counts.classes == ref["classes"]
            assert counts.model_version == ref["model_version"] == "v10"
            # Bin i holds (i/10, (i+1)/10]: scores of 0 to 1.6, on and between the bounds.
            bounds = np.arange(1, 18) / 10
            binned = np.searchsorted(bounds, ref["scores"], side="left")
            assert counts.score_bins == dict(Counter(binned.tolist()))
    with psycopg.connect(infra.pg_dsn, options=f"-c search_path={gateway_schema}") as conn:
        ref = queue_reference(conn, "p")
        queue = gateway_stats.queue_counts(conn, "p")
        assert queue.items_by_state == ref["items_by_state"]
        assert (queue.completed, queue.gold_tasks, queue.labels_total) == (
            ref["completed"],
            ref["gold_tasks"],
            ref["labels_total"],
        )
        assert (queue.labels_last_hour, ref["labels_last_hour"]) == (59, 59)
        # A new label counts on top of the migrated ones.
        conn.execute("UPDATE units SET labels = labels + 1 WHERE item_id = 'i0'")
        after = gateway_stats.queue_counts(conn, "p")
        assert after.items_by_state == queue_reference(conn, "p")["items_by_state"]
