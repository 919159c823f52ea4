"""The refill's low-water mark and when a hand-out wakes the refill (no I/O)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.policy import MOST_PER_BATCH, low_water_mark, refill_batch_size
from strata.gateway.refill import Refiller


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
