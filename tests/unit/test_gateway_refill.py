"""The refill's low-water mark and when a hand-out wakes the refill (no I/O)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prometheus_client import CollectorRegistry
from strata.gateway import store
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.policy import (
    MOST_PER_BATCH,
    items_lacking,
    low_water_mark,
    measured_rate,
    pool_share_bound,
    refill_batch_size,
)
from strata.gateway.refill import MAX_BATCHES_PER_ROUND, REFILL_TIMES_KEPT, Refiller
from strata.v1 import common_pb2, sampler_pb2


def test_the_mark_is_seconds_of_demand_between_the_mark_at_rest_and_its_bounds() -> None:
    # Nobody asking: the mark at rest (about one active-learning batch).
    assert low_water_mark(48, 0.0, 6.0, 2000, 86_400) == 48
    # 55 tasks/s, a refill every 0.5 s taking 0.1 s, 5 s ahead: 5.6 s of tasks.
    assert low_water_mark(48, 55.0, 5.6, 2000, 86_400) == 308
    # Little demand never lowers it below the mark at rest.
    assert low_water_mark(48, 2.0, 5.6, 2000, 86_400) == 48
    # Bounded by the configured most...
    assert low_water_mark(48, 1000.0, 5.6, 2000, 86_400) == 2000
    # ... and by half a sampler lease of demand: queued items are handed out before the
    # sampler's lease on them runs out.
    assert low_water_mark(10, 55.0, 5.6, 2000, 6) == 165


def test_a_batch_is_what_the_queue_lacks_between_the_at_rest_batch_and_its_most() -> None:
    # A queue short of a few slots asks for the contract's active-learning batch, as
    # when batches had one size: the queue holds at most the mark plus one such batch.
    assert refill_batch_size(64, 1) == 64
    assert refill_batch_size(64, 64) == 64
    # Under demand the mark rises and the queue lacks more: the batch follows.
    assert refill_batch_size(64, 300) == 300
    # At most what a hand-out's 2,000 ranked candidates serve, inside the deadline.
    assert refill_batch_size(64, 1800) == MOST_PER_BATCH == 500


def _refiller() -> Refiller:
    return Refiller(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        GatewayMetrics("gateway", CollectorRegistry()),
        None,
        requester="gw",
        low_water=20,
        batch_size=10,
        sampler_lease_s=86_400,
        interval_s=5.0,
    )


def test_a_hand_out_wakes_the_refill_once_as_the_queue_crosses_its_mark() -> None:
    refiller = _refiller()
    refiller.taken("p")  # never counted: the next round will
    assert not refiller._kick.is_set()
    refiller._counted("p", ready=12, mark=10)
    refiller.taken("p")  # 11 left
    refiller.taken("p")  # 10 left: at the mark, not below it
    assert not refiller._kick.is_set()
    refiller.taken("p")  # 9: below, with 9 slots of work still queued
    assert refiller._kick.is_set()
    refiller._kick.clear()
    refiller.taken("p")  # further hand-outs below the mark wait for the round
    assert not refiller._kick.is_set()
    assert refiller.mark("p") == 10


def test_nexttask_finding_nothing_counts_as_demand_and_refills_at_once() -> None:
    refiller = _refiller()
    refiller.kick("p")
    assert refiller._kick.is_set()
    assert len(refiller._watch["p"].misses) == 1


def test_demand_is_measured_over_the_span_the_window_s_hand_outs_cover() -> None:
    # Steady: 100 hand-outs spread over the whole 10 s window, about 10 a second.
    assert measured_rate(101, 10.0, 10.0) == 10.0
    # 200 annotators arrived 2 s ago after a lull: 100 a second, not 20.
    assert measured_rate(201, 2.0, 10.0) == 100.0
    # A burst within a fraction of a second counts over one second at least.
    assert measured_rate(50, 0.1, 10.0) == 49.0
    # One hand-out, or none, tells no span: over the whole window.
    assert measured_rate(1, 0.0, 10.0) == 0.1
    assert measured_rate(0, 0.0, 10.0) == 0.0
    # Never more than the window, whatever the clock says.
    assert measured_rate(11, 30.0, 10.0) == 1.0


def test_a_queue_holds_at_most_a_share_of_what_the_pool_has_left() -> None:
    # 400 items left, each opening 2 slots: a quarter of them, 200 slots.
    assert pool_share_bound(400, 2) == 200
    assert pool_share_bound(3, 1) == 0
    # A sampler that does not say: no bound.
    assert pool_share_bound(None, 2) is None
    # The bound goes where the configured most went: demand of 55 tasks/s would ask for
    # 308 slots, a pool of 400 items at overlap 2 allows 200; never below the mark at rest.
    assert low_water_mark(48, 55.0, 5.6, min(2000, pool_share_bound(400, 2) or 0), 86_400) == 200
    assert low_water_mark(48, 55.0, 5.6, min(2000, pool_share_bound(20, 2) or 0), 86_400) == 48


class _NoDb:
    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield None


def test_the_refill_bounds_its_mark_by_the_pool_the_sampler_says_is_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refiller = _refiller()
    refiller.db = _NoDb()  # type: ignore[assignment]
    # 200 tasks handed out over the last 2 s: 100 a second; 8 s of cover (3 s ahead, a
    # 5 s round): 800 slots.
    monkeypatch.setattr(store, "label_demand", lambda conn, project, window: (201, 2.0))
    assert refiller._measure("p", at_rest=20, overlap_min=2) == (800, 100.0)
    # The sampler said 1,000 items are left: a quarter of them, at 2 slots each.
    refiller._watch_of("p").pool_left = 1000
    assert refiller._measure("p", at_rest=20, overlap_min=2)[0] == 500
    # Nearly dry: the mark at rest.
    refiller._watch_of("p").pool_left = 8
    assert refiller._measure("p", at_rest=20, overlap_min=2)[0] == 20


def test_the_mark_covers_the_slowest_of_the_latest_refills() -> None:
    refiller = _refiller()
    assert refiller.refill_s == 0.0
    for took in (0.4, 3.8, 0.5):
        refiller._refill_times.append(took)
    # One slow refill among quick ones: the queue must last through the next like it.
    assert refiller.refill_s == 3.8
    # Forgotten after REFILL_TIMES_KEPT quicker ones.
    for _ in range(REFILL_TIMES_KEPT):
        refiller._refill_times.append(0.5)
    assert refiller.refill_s == 0.5


class _Conn:
    def execute(self, sql: str, params: object = None) -> _Conn:
        return self

    def fetchone(self) -> tuple[bool]:
        return (True,)  # the round's advisory lock


class _OneConn:
    @contextmanager
    def transaction(self) -> Iterator[_Conn]:
        yield _Conn()


class _Sampler:
    def __init__(self) -> None:
        self.sizes: list[int] = []

    def NextBatch(self, request, timeout):  # type: ignore[no-untyped-def]
        self.sizes.append(request.size)
        return sampler_pb2.NextBatchResponse(
            items=[sampler_pb2.BatchItem() for _ in range(request.size)]
        )


class _Contracts:
    def current(self, project: str) -> common_pb2.LabelingContract:
        return common_pb2.LabelingContract(overlap=common_pb2.OverlapPolicy(min=1, max=1))


def test_a_round_measures_the_mark_again_before_each_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refiller = _refiller()
    refiller.db, refiller.contracts = _OneConn(), _Contracts()  # type: ignore[assignment]
    refiller.sampler = sampler = _Sampler()  # type: ignore[assignment]
    # The round began with nobody asking; then a crowd took 200 tasks in 2 s, and takes
    # every slot as it is queued.
    demand = iter([(0, 0.0)])
    monkeypatch.setattr(store, "label_demand", lambda *a: next(demand, (201, 2.0)))
    monkeypatch.setattr(store, "open_slots", lambda conn, project: 0)
    monkeypatch.setattr(store, "add_pool_items", lambda conn, project, rows, slots: len(rows))
    refiller.refill_once("p")
    # The mark at rest (one batch of 10) for the first batch; the crowd's 800 slots for
    # the next ones, not the empty room's for the rest of the round.
    assert sampler.sizes[0] == 10
    assert sampler.sizes[1:] == [MOST_PER_BATCH] * (MAX_BATCHES_PER_ROUND - 1)


def test_a_batch_brings_what_the_queue_will_lack_when_it_lands() -> None:
    # 1M texts, 200 annotators: mark 796 slots, 609 ready, 220 tasks/s, a batch takes
    # 1.4 s: 187 lacking now, 308 more taken meanwhile.
    assert items_lacking(796, 609, 220.0, 1.4, 1) == 495
    # Overlap 2: half as many items.
    assert items_lacking(796, 609, 220.0, 1.4, 2) == 248
    # Nobody asking: what the queue lacks now.
    assert items_lacking(64, 0, 0.0, 1.4, 1) == 64
    # Above the mark even after the drain: nothing.
    assert items_lacking(100, 400, 10.0, 1.0, 1) == 0
