"""Scoring the pool: every item the serving version has not scored, in batches.

A batch is claimed (`FOR UPDATE SKIP LOCKED`, so replicas share the work),
scored, published through the outbox and marked scored in one transaction: a
batch is never half-applied, and a restarted replica resumes where the table
says. New items and new versions take the same path. Gold items are scored and
published too (the gateway's pre-labels must not tell them apart) but are never
proposed for auto-accept.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid

import numpy as np
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from strata.common import outbox
from strata.common.contracts import ContractCache
from strata.common.db import Database
from strata.common.events import OutgoingEvent
from strata.common.predictions import prediction_events
from strata.inference import store
from strata.inference.calibration import AutoAcceptGate, auto_accept_gate
from strata.inference.config import InferenceConfig
from strata.inference.metrics import InferenceMetrics
from strata.inference.registry import Registry
from strata.inference.scoring import Served, predictions, route_auto_accept, score_tolerant
from strata.v1 import common_pb2

log = logging.getLogger(__name__)

BACKLOG_EVERY_S = 2.0
BACKLOG_DUTY = 0.1


def backlog_interval(count_s: float) -> float:
    """Seconds until the backlog gauge is counted again, after a count that took
    `count_s`: every 2 s while counting is cheap, and never more than a tenth of the time
    (at a million items, under load, one count took 1-2 s and ran 90% of the time)."""
    return max(BACKLOG_EVERY_S, count_s / BACKLOG_DUTY)


def gate_for(
    served: Served, policy: common_pb2.AutoAcceptPolicy | None, min_support: int
) -> AutoAcceptGate | None:
    """Auto-accept's gate for the serving version under the contract's policy."""
    if policy is None or not policy.enabled:
        return None
    if not served.calibrated:
        return AutoAcceptGate(False, 0.0, 0.0, 0, "the model is not calibrated on gold")
    return auto_accept_gate(
        served.gold_confidence,
        served.gold_correct,
        policy.confidence_threshold,
        policy.min_precision,
        min_support=min_support,
    )


class PoolScorer:
    def __init__(
        self,
        db: Database,
        registry: Registry,
        contracts: ContractCache,
        metrics: InferenceMetrics,
        config: InferenceConfig,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.registry = registry
        self.contracts = contracts
        self.metrics = metrics
        self.config = config
        self.rng = rng or random.Random()
        self._next_backlog = 0.0

    def score_once(self, served: Served) -> int:
        """Score one batch of `served`'s project; returns how many items it took."""
        contract = self.contracts.current(served.project)
        policy = contract.auto_accept if contract and contract.HasField("auto_accept") else None
        strategy = contract.active_learning.strategy.lower() if contract else ""
        mc = self.config.bald_samples if strategy == "bald" else 0
        with self.db.transaction(timeout=30.0) as conn:
            claimed = store.claim_unscored(
                conn, served.project, served.generation, served.version, self.config.score_batch
            )
            if not claimed:
                return 0
            contents: list[common_pb2.ItemContent] = []
            readable: list[str] = []
            gold: set[str] = set()
            errors: dict[str, str] = {}
            for item_id, raw, is_gold in claimed:
                try:
                    contents.append(common_pb2.ItemContent.FromString(raw))
                    readable.append(item_id)
                except DecodeError:
                    errors[item_id] = "stored content does not decode"
                if is_gold:
                    gold.add(item_id)
            done, scores, bad = score_tolerant(served, contents, mc_samples=mc)
            errors.update({readable[i]: why for i, why in bad.items()})
            events: list[OutgoingEvent] = []
            made: list[common_pb2.Prediction] = []
            auto_n = spot_n = 0
            if scores is not None:
                ids = [readable[i] for i in done]
                gate = gate_for(served, policy, self.config.min_support)
                auto, spot = route_auto_accept(scores.confidence, gate, policy, self.rng)
                if gold:  # gold items are predicted (pre-labels) but never auto-labelled
                    gold_mask = np.fromiter((i in gold for i in ids), dtype=bool, count=len(ids))
                    auto &= ~gold_mask
                    spot &= ~gold_mask
                auto_n, spot_n = int(auto.sum()), int(spot.sum())
                now = Timestamp()
                now.GetCurrentTime()
                made = predictions(served, ids, scores, auto, spot)
                for p in made:
                    p.predicted_at.CopyFrom(now)
                routing = common_pb2.RoutingMetadata(
                    trace_id=uuid.uuid4().hex,  # one scoring batch, one trace
                    source_service="inference",
                    project=served.project,
                    attributes={"model_version": served.version},
                )
                events = prediction_events(routing, made)
            outbox.enqueue_many(conn, events, bulk=True)  # each carries up to 256
            store.record_score_errors(conn, errors)
            store.count_routed(conn, served.project, auto_n, spot_n)
        self.metrics.predictions.labels(path="pool").inc(len(made))
        if errors:
            self.metrics.score_errors.inc(len(errors))
            log.warning(
                "%s: %d items cannot be scored by %s (e.g. %s)",
                served.project,
                len(errors),
                served.version,
                next(iter(errors.values())),
            )
        if auto_n:
            self.metrics.auto_routed.labels(route="auto_accept").inc(auto_n)
        if spot_n:
            self.metrics.auto_routed.labels(route="spot_check").inc(spot_n)
        return len(claimed)

    def _report_backlog(self) -> None:
        started = time.monotonic()
        if started < self._next_backlog:
            return
        with self.db.transaction() as conn:
            for served in self.registry.snapshot():
                self.metrics.backlog.labels(project=served.project).set(
                    store.backlog(conn, served.project, served.generation)
                )
        self._next_backlog = started + backlog_interval(time.monotonic() - started)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.2
        while not stop.is_set():
            try:
                work = sum(self.score_once(s) for s in self.registry.snapshot())
                self._report_backlog()
                backoff = 0.2
                if not work:
                    stop.wait(0.2)
            except Exception as exc:  # Postgres away, an outbox failure: the batch rolled back
                log.warning("pool scoring failed, retrying in %.1fs: %s", backoff, exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
