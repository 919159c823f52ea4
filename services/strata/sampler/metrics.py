"""The sampler's domain metrics (`strata_sampler_...`), next to the kit's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SamplerMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"strata_{service}"
        r = registry
        self.pool_items = Gauge(
            f"{p}_pool_items", "Items by state", ["project", "state"], registry=r
        )
        self.imported = Counter(
            f"{p}_items_imported_total",
            "Import outcomes: pool, gold, exact or near duplicate, rejected",
            ["project", "outcome"],
            registry=r,
        )
        self.rank_seconds = Histogram(
            f"{p}_rank_seconds",
            "Time to rank and select one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.batches = Counter(
            f"{p}_batches_served_total",
            "NextBatch replies, by mode (cold_start, ranked, random)",
            ["mode"],
            registry=r,
        )
        self.batch_items = Counter(
            f"{p}_batch_items_total", "Items handed out, by routing reason", ["reason"], registry=r
        )
        self.predictions = Counter(
            f"{p}_predictions_applied_total", "Pool items re-scored from predictions", registry=r
        )
        self.propagated = Counter(
            f"{p}_labels_propagated_total", "Duplicates that inherited a label", registry=r
        )
        self.trainings_requested = Counter(
            f"{p}_trainings_requested_total", "training.requested events published", registry=r
        )
        self.versions_behind = Histogram(
            f"{p}_ranking_versions_behind",
            "Per ranked batch: model versions newer than the oldest one whose scores chose "
            "an item of it (0: ranked by the newest model)",
            buckets=(0, 1, 2, 3, 5, 10),
            registry=r,
        )
