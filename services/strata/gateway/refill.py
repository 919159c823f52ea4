"""Keeps each project's ready queue above its low-water mark with sampler batches.

The gateway queues items exactly in the order the sampler ranked them; it
never re-ranks. One replica at a time refills a project (advisory lock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.gateway import store
from strata.gateway.metrics import GatewayMetrics
from strata.gateway.policy import refill_plan
from strata.v1 import sampler_pb2, sampler_pb2_grpc

log = logging.getLogger(__name__)

MAX_BATCHES_PER_ROUND = 10


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
        on_sampler_state: Callable[[bool], None] = lambda up: None,
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
        self.on_sampler_state = on_sampler_state
        self._kick = threading.Event()

    def kick(self) -> None:
        """Refill now (NextTask found nothing)."""
        self._kick.set()

    def refill_once(self, project: str) -> int:
        """Pull batches until the ready queue reaches the low-water mark; items queued."""
        if self.sampler is None:
            return 0
        contract = self.contracts.current(project)
        if contract is None:
            return 0
        low_water, batch_size = refill_plan(contract, self.low_water, self.batch_size)
        queued = 0
        for _ in range(MAX_BATCHES_PER_ROUND):
            with self.db.transaction() as conn:
                locked = conn.execute(
                    "SELECT pg_try_advisory_xact_lock(hashtext('strata-gateway-refill:' || %s))",
                    (project,),
                ).fetchone()
                if not locked or not locked[0]:
                    return queued
                ready = store.open_slots(conn, project)
                self.metrics.queue_ready.labels(project=project).set(ready)
                if ready >= low_water:
                    return queued
                try:
                    response = self.sampler.NextBatch(
                        sampler_pb2.NextBatchRequest(
                            project=project,
                            size=batch_size,
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
            self.metrics.sampler_batches.labels(project=project, outcome="ok").inc()
            self.metrics.sampler_items.labels(project=project).inc(added)
            queued += added
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
