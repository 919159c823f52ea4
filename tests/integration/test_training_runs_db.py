"""The training run queue against the real Postgres: claims, heartbeats and leases."""

from __future__ import annotations

import threading

import psycopg
from strata.common.db import kit_migrations, load_migrations, migrate, package_migrations
from strata.training import store

from .conftest import Infra, unique_service


def training_schema(infra: Infra) -> str:
    schema = unique_service("training")
    migrations = load_migrations("training", package_migrations("strata.training"))
    migrate(infra.pg_dsn, schema, kit_migrations() + migrations)
    return schema


def connect(infra: Infra, schema: str) -> psycopg.Connection:
    return psycopg.connect(infra.pg_dsn, options=f"-c search_path={schema},public", autocommit=True)


def test_a_run_stays_with_the_process_that_heartbeats_it_and_a_silent_ones_is_queued_again(
    infra: Infra,
) -> None:
    schema = training_schema(infra)
    with connect(infra, schema) as conn:
        a = store.create_run(conn, "p", "", 1, 3, "test")
        b = store.create_run(conn, "q", "", 1, 3, "test")
        claimed_a = store.claim_next_run(conn, "pod-a")
        claimed_b = store.claim_next_run(conn, "pod-b")
        assert claimed_a is not None and claimed_a.run_id == a
        assert claimed_b is not None and claimed_b.run_id == b
        # A replica that starts (a rollout) takes nobody's live run.
        assert store.requeue_running(conn, "pod-c", 60) == []
        # pod-a has gone silent for two minutes; pod-b heartbeats.
        conn.execute("UPDATE runs SET heartbeat_at = now() - interval '2 minutes'")
        assert store.heartbeat(conn, "pod-b") == 1
        assert store.requeue_running(conn, None, 60) == [a]
        # pod-a comes back to publish: the run is no longer its own. pod-b's still is.
        assert not store.holds(conn, a, "pod-a") and store.holds(conn, b, "pod-b")
        assert not store.holds(conn, b, "pod-a")
        # A process that starts again (a container restarted in its pod) takes its own
        # runs back at once, heartbeat or not.
        assert store.requeue_running(conn, "pod-b", 60) == [b]
        rows = conn.execute("SELECT state, owner FROM runs").fetchall()
        assert rows == [("queued", None), ("queued", None)]


def claim_at_once(infra: Infra, schema: str, claimers: int) -> list[str | None]:
    """What each of `claimers` connections claims when all claim at the same moment."""
    start = threading.Barrier(claimers)
    claimed: list[str | None] = []
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            with psycopg.connect(infra.pg_dsn, options=f"-c search_path={schema},public") as conn:
                start.wait()
                with conn.transaction():
                    run = store.claim_next_run(conn, "pod")
                    claimed.append(run.run_id if run else None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=claim) for _ in range(claimers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return claimed


def test_claims_at_the_same_moment_take_one_run_per_project_and_never_fail(infra: Infra) -> None:
    schema = training_schema(infra)
    for _ in range(8):
        with connect(infra, schema) as conn:
            conn.execute("DELETE FROM runs")
            first = store.create_run(conn, "p", "", 1, 3, "first of p")
            store.create_run(conn, "p", "", 1, 3, "second of p")
            other = store.create_run(conn, "q", "", 1, 3, "q")
        claimed = claim_at_once(infra, schema, 3)
        # p's older run and q's run; p's second waits for its first.
        assert sorted(claimed, key=str) == sorted([first, other, None], key=str)
