"""Keeps each project's ready queue above its low-water mark with sampler batches.

The gateway queues items exactly in the order the sampler ranked them; it
never re-ranks. One replica at a time refills a project (advisory lock).

Refills are pipelined: the mark follows the measured demand (label tasks handed out
per second by every replica, plus the NextTask calls that found nothing here) times
the time a refill takes plus `ahead_s`, so the next batch is asked for while the
queue still holds that much work; and a batch is what the queue lacks of its mark
(`refill_batch_size`), so that under demand one refill at a time supplies more than is
taken.
A background thread does the asking; NextTask only tells it when its own hand-outs
took the queue below the mark (`taken`) or found it empty (`kick`), and never waits
for a refill.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.gateway import store
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.policy import (
    items_lacking,
    low_water_mark,
    measured_rate,
    pool_share_bound,
    refill_batch_size,
    refill_plan,
)
from strata.v1 import sampler_pb2, sampler_pb2_grpc

log = logging.getLogger(__name__)

# Batches one round pulls for a project before it looks at the others; a project still
# short after them is refilled again at once.
MAX_BATCHES_PER_ROUND = 32
# The refills whose times the mark covers: the slowest of them, not their mean. On a
# loaded machine most refills of a 1M pool took 0.3-1.2 s, and one in twenty or so 2-4 s;
# a queue sized by the mean (about 4 s of work) ran dry during such a refill, every
# annotator at once (`bench/scale.py`'s per-second refill record).
REFILL_TIMES_KEPT = 20


@dataclass
class QueueWatch:
    """What this replica knows of a project's queue between two counts."""

    mark: int = 0  # the low-water mark last computed
    ready: int = 0  # open slots at the last count, less what this replica handed out since
    misses: deque[float] = field(default_factory=deque)  # when NextTask found nothing here
    pool_left: int | None = None  # items the sampler had left after its last batch


class Refiller:
    def __init__(
        self,
        db: Database,
        contracts: ContractCache,
        metrics: GatewayMetrics,
        sampler: sampler_pb2_grpc.SamplerStub | None,
        *,
        requester: str,
        low_water: int,
        batch_size: int,
        sampler_lease_s: int,
        interval_s: float,
        ahead_s: float = 3.0,
        demand_window_s: float = 10.0,
        max_slots: int = 2_000,
        on_sampler_state: Callable[[bool], None] = lambda up: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.contracts = contracts
        self.metrics = metrics
        self.sampler = sampler
        self.requester = requester
        self.low_water = low_water
        self.batch_size = batch_size
        self.sampler_lease_s = sampler_lease_s
        self.interval_s = interval_s
        self.ahead_s = ahead_s
        self.demand_window_s = demand_window_s
        self.max_slots = max_slots
        self.on_sampler_state = on_sampler_state
        self.clock = clock
        # Seconds from asking the sampler for a batch to having it queued, the latest ones.
        self._refill_times: deque[float] = deque(maxlen=REFILL_TIMES_KEPT)
        self._kick = threading.Event()
        self._lock = threading.Lock()
        self._watch: dict[str, QueueWatch] = {}

    @property
    def refill_s(self) -> float:
        """The time a refill may take, as the mark covers it: the slowest of the latest
        `REFILL_TIMES_KEPT` (0 before the first)."""
        with self._lock:
            return max(self._refill_times, default=0.0)

    def kick(self, project: str = "") -> None:
        """Refill now: NextTask found nothing (for `project`, counted as unmet demand)."""
        if project:
            with self._lock:
                self._watch_of(project).misses.append(self.clock())
        self._kick.set()

    def taken(self, project: str) -> None:
        """NextTask handed out one of `project`'s label slots: refill in the background
        as soon as the queue is below its mark, before it runs dry."""
        with self._lock:
            watch = self._watch.get(project)
            if watch is None:
                return  # not counted yet: the next round does
            watch.ready -= 1
            # Once, as the queue crosses the mark: a sampler with nothing left to give is
            # not asked again at every hand-out, only at the next round.
            crossed = watch.ready == watch.mark - 1
        if crossed:
            self._kick.set()

    def _watch_of(self, project: str) -> QueueWatch:
        watch = self._watch.get(project)
        if watch is None:
            watch = self._watch[project] = QueueWatch()
        return watch

    def mark(self, project: str) -> int:
        """The low-water mark last computed for `project` (0 before its first round)."""
        with self._lock:
            watch = self._watch.get(project)
            return watch.mark if watch else 0

    def _measure(self, project: str, at_rest: int, overlap_min: int) -> tuple[int, float]:
        """The low-water mark for `project` now, from the demand measured in Postgres (every
        replica's hand-outs) and the misses seen here, and a share of the pool left; and
        that demand, in tasks a second."""
        window = self.demand_window_s
        with self.db.transaction() as conn:
            served, served_span = store.label_demand(conn, project, window)
        now = self.clock()
        with self._lock:
            misses = self._watch_of(project).misses
            while misses and misses[0] < now - window:
                misses.popleft()
            unmet = measured_rate(len(misses), now - misses[0] if misses else 0.0, window)
            share = pool_share_bound(self._watch_of(project).pool_left, overlap_min)
        demand = measured_rate(served, served_span, window) + unmet
        mark = low_water_mark(
            at_rest,
            demand,
            self.ahead_s + self.interval_s + self.refill_s,
            max(self.max_slots, at_rest) if share is None else min(self.max_slots, share),
            self.sampler_lease_s,
        )
        self.metrics.demand.labels(project=project).set(demand)
        self.metrics.low_water.labels(project=project).set(mark)
        return mark, demand

    def _counted(self, project: str, ready: int, mark: int) -> None:
        self.metrics.queue_ready.labels(project=project).set(ready)
        with self._lock:
            watch = self._watch_of(project)
            watch.ready, watch.mark = ready, mark

    def refill_once(self, project: str) -> int:
        """Pull batches until the ready queue reaches the low-water mark; items queued."""
        if self.sampler is None:
            return 0
        contract = self.contracts.current(project)
        if contract is None:
            return 0
        at_rest, at_rest_batch = refill_plan(contract, self.low_water, self.batch_size)
        queued = 0
        for _ in range(MAX_BATCHES_PER_ROUND):
            # Measured again before each batch: a round that began before a crowd arrived
            # kept the mark of the empty room for as long as it ran (the queue stayed
            # below it, so the round went on, a second a batch at 1M items), and 200
            # annotators found the queue dry for the first 6 s of the bench's window.
            low_water, demand = self._measure(project, at_rest, contract.overlap.min)
            with self.db.transaction() as conn:
                locked = conn.execute(
                    "SELECT pg_try_advisory_xact_lock(hashtext('strata-gateway-refill:' || %s))",
                    (project,),
                ).fetchone()
                if not locked or not locked[0]:
                    return queued
                ready = store.open_slots(conn, project)
                self._counted(project, ready, low_water)
                if ready >= low_water:
                    return queued
                lacking = items_lacking(
                    low_water, ready, demand, self.refill_s, contract.overlap.min
                )
                started = self.clock()
                try:
                    response = self.sampler.NextBatch(
                        sampler_pb2.NextBatchRequest(
                            project=project,
                            size=refill_batch_size(at_rest_batch, lacking),
                            requester=self.requester,
                            lease_seconds=self.sampler_lease_s,
                        ),
                        timeout=10.0,
                    )
                except grpc.RpcError as exc:
                    self.metrics.sampler_batches.labels(project=project, outcome="error").inc()
                    self.on_sampler_state(exc.code() != grpc.StatusCode.UNAVAILABLE)
                    log.warning("sampler NextBatch for %s failed: %s", project, exc.code().name)
                    return queued
                self.on_sampler_state(True)
                if response.HasField("pool_left"):
                    with self._lock:
                        self._watch_of(project).pool_left = response.pool_left
                if not response.items:
                    self.metrics.sampler_batches.labels(project=project, outcome="empty").inc()
                    return queued
                added = store.add_pool_items(
                    conn,
                    project,
                    [
                        (
                            b.item.item_id,
                            b.item.content.SerializeToString(),
                            b.routing.SerializeToString(),
                            b.routing.reason,
                        )
                        for b in response.items
                    ],
                    contract.overlap.min,
                )
            took = self.clock() - started
            with self._lock:
                self._refill_times.append(took)
            self.metrics.refill_seconds.observe(took)
            self.metrics.sampler_batches.labels(project=project, outcome="ok").inc()
            self.metrics.sampler_items.labels(project=project).inc(added)
            queued += added
            if not added:
                return queued  # nothing new came: no use asking again this round
        self._kick.set()  # still short after a full round: go again at once
        return queued

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with self.db.transaction() as conn:
                    names = store.projects(conn)
                for project in names:
                    self.refill_once(project)
            except Exception as exc:  # keep refilling after Postgres or sampler hiccups
                log.warning("refill round failed: %s", exc)
            self._kick.wait(self.interval_s)
            self._kick.clear()


class LeaseSweeper:
    """Returns expired leases to the queue."""

    def __init__(self, db: Database, metrics: GatewayMetrics, interval_s: float) -> None:
        self.db = db
        self.metrics = metrics
        self.interval_s = interval_s

    def sweep_once(self) -> int:
        with self.db.transaction() as conn:
            projects = store.expire_leases(conn)
        for project in projects:
            self.metrics.lease_expiries.labels(project=project).inc()
        return len(projects)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.sweep_once()
            except Exception as exc:
                log.warning("lease sweep failed: %s", exc)
            stop.wait(self.interval_s)
