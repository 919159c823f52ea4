"""The gateway keeps its queue ahead of demand: refills start at a low-water mark that
follows the measured hand-out rate, before the queue is empty."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from strata.common.db import load_migrations, migrate, package_migrations
from strata.gateway import store
from strata.v1 import common_pb2, gateway_pb2

from .conftest import Infra, service_config, unique_service, wait_until
from .gateway_support import (
    Gateway,
    ScriptedSampler,
    contract_doc,
    gateway_settings,
    scripted_sampler,
    start_gateway,
)

ANNOTATORS = 8
PACE_S = 0.1  # each annotator's pause between tasks: about 60 tasks/s in all
RUN_S = 6.0
WARM_UP_S = 1.5
AT_REST = 10  # overlap 1 x active_learning.batch_size 10
MOST = 300


class WatchingSampler(ScriptedSampler):
    """Records, at each NextBatch, how many open slots the gateway's queue still held."""

    def __init__(self) -> None:
        super().__init__()
        self.dsn = ""
        self.schema = ""
        self.ready_at_call: list[tuple[float, int]] = []

    def NextBatch(self, request, context):  # type: ignore[no-untyped-def]
        with psycopg.connect(self.dsn, options=f"-c search_path={self.schema}") as conn:
            row = conn.execute(
                "SELECT coalesce(sum(slots_open), 0) FROM units WHERE project = %s "
                "AND kind = 'label' AND state = 'open'",
                (request.project,),
            ).fetchone()
        self.ready_at_call.append((time.monotonic(), int(row[0]) if row else 0))
        return super().NextBatch(request, context)


@pytest.fixture
def watched(infra: Infra) -> Iterator[tuple[Gateway, WatchingSampler]]:
    with scripted_sampler(servicer=WatchingSampler()) as (source, address):
        assert isinstance(source, WatchingSampler)
        config = service_config(infra, "gateway")
        source.dsn, source.schema = infra.pg_dsn, config.service
        # Rounds every 2 s only: a queue of 10 slots at 60 tasks/s would be empty most
        # of the time if refills waited for them, or for a NextTask that finds nothing.
        gw = start_gateway(
            config,
            gateway_settings(
                address,
                refill_interval_s=2.0,
                refill_ahead_s=1.0,
                refill_demand_window_s=3.0,
                refill_max_slots=MOST,
            ),
        )
        yield gw, source
        gw.channel.close()
        gw.runtime.stop(grace_s=1.0)


def gauge(gw: Gateway, name: str, project: str) -> float | None:
    return gw.runtime.metrics.registry.get_sample_value(
        f"strata_{gw.runtime.config.service}_{name}", {"project": project}
    )


def test_the_queue_is_refilled_before_it_runs_dry_at_a_mark_that_follows_demand(
    watched,
) -> None:
    gw, source = watched
    project = f"p{uuid.uuid4().hex[:10]}"
    gw.load_contract(
        contract_doc(
            project,
            overlap="{min: 1, max: 1}",
            gold="{rate: 0}",
            active_learning="{batch_size: 10}",
        )
    )
    tokens = [gw.annotator(f"a{i}-{project}", project=project) for i in range(ANNOTATORS)]
    source.add(project, [(f"{project}-{i:05d}", f"text {i}") for i in range(5_000)])
    # The contract's first round queues the first batch.
    wait_until(lambda: bool(source.ready_at_call), 30, "the first refill")

    started = time.monotonic()
    misses: list[float] = []
    served: list[float] = []
    errors: list[str] = []
    stop = threading.Event()

    def annotate(md: Any) -> None:
        while not stop.is_set():
            try:
                reply = gw.stub.NextTask(gateway_pb2.NextTaskRequest(project=project), metadata=md)
                if not reply.HasField("task"):
                    misses.append(time.monotonic() - started)
                    time.sleep(reply.retry_after_ms / 1000)
                    continue
                gw.stub.SubmitLabel(
                    gateway_pb2.SubmitLabelRequest(
                        task_id=reply.task.task_id,
                        value="cat",
                        duration_ms=100,
                        client_label_id=uuid.uuid4().hex,
                    ),
                    metadata=md,
                )
            except Exception as exc:  # reported below, not lost in a thread
                errors.append(repr(exc))
                return
            served.append(time.monotonic() - started)
            time.sleep(PACE_S)

    threads = [threading.Thread(target=annotate, args=(md,)) for md in tokens]
    for t in threads:
        t.start()
    time.sleep(RUN_S)
    mark = gauge(gw, "refill_low_water_slots", project)
    demand = gauge(gw, "task_demand_per_second", project)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    assert not errors, errors[:3]
    rate = sum(1 for t in served if t > WARM_UP_S) / (RUN_S - WARM_UP_S)
    assert rate > 20, f"only {rate:.0f} tasks/s: the test did not make demand"

    # Nobody waited: once demand was measured, every NextTask found a task.
    assert not [t for t in misses if t > WARM_UP_S], misses
    # Pipelined: each batch was asked for while the queue still held work (the first
    # one, before anyone asked, aside).
    calls = [ready for at, ready in source.ready_at_call if at > started + WARM_UP_S]
    assert calls and min(calls) > 0, calls
    # The mark followed demand: a few seconds of it, far above the mark at rest, within
    # its bound; and the queue was kept about that deep.
    assert demand is not None and demand > 20, demand
    assert mark is not None and 4 * AT_REST <= mark <= MOST, (mark, demand)
    assert max(calls) >= 2 * AT_REST, calls


def test_a_batch_is_queued_whole_in_the_samplers_order_and_a_relabel_reopens(
    infra: Infra,
) -> None:
    """`add_pool_items` queues a batch in three statements: the units' seq follows the
    order the sampler ranked them in, an item already queued is left alone, and one sent
    back for relabeling reopens for `overlap` more annotators."""
    schema = unique_service("gwstore")
    migrate(infra.pg_dsn, schema, load_migrations("gateway", package_migrations("strata.gateway")))
    project = f"p{uuid.uuid4().hex[:6]}"
    label, relabel = common_pb2.ROUTING_REASON_UNCERTAINTY, common_pb2.ROUTING_REASON_RELABEL
    ranked = [f"it-{n}" for n in (5, 1, 9, 3, 7)]  # ranked order, not sorted

    def batch(ids: list[str], reason: int) -> list[tuple[str, bytes, bytes, int]]:
        return [(i, f"content {i}".encode(), f"routing {i}".encode(), reason) for i in ids]

    with psycopg.connect(infra.pg_dsn, options=f"-c search_path={schema}") as conn:
        assert store.add_pool_items(conn, project, batch(ranked, label), 2) == 5
        # Again, with one new item: only that one is queued; nothing is reopened.
        assert store.add_pool_items(conn, project, batch([ranked[0], "it-0"], label), 2) == 1
        order = conn.execute(
            "SELECT item_id, slots_open, routing FROM units WHERE project = %s ORDER BY seq",
            (project,),
        ).fetchall()
        assert [r[0] for r in order] == [*ranked, "it-0"]
        assert all(r[1] == 2 and bytes(r[2]) == f"routing {r[0]}".encode() for r in order)
        # Two labelled items come back for relabeling: their units reopen, last in line.
        conn.execute(
            "UPDATE units SET state = 'done', slots_open = 0 WHERE item_id IN ('it-9', 'it-3')"
        )
        assert store.add_pool_items(conn, project, batch(["it-9", "it-3"], relabel), 1) == 2
        # An open unit sent back is left as it is.
        assert store.add_pool_items(conn, project, batch(["it-5"], relabel), 1) == 0
        rows = conn.execute(
            "SELECT item_id, state, target, slots_open FROM units WHERE project = %s ORDER BY seq",
            (project,),
        ).fetchall()
        assert [r[0] for r in rows[:4]] == ["it-5", "it-1", "it-7", "it-0"]
        assert sorted(rows[4:]) == [("it-3", "open", 3, 1), ("it-9", "open", 3, 1)]
        assert store.add_pool_items(conn, project, [], 1) == 0
