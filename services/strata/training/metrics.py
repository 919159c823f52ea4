"""Training's domain metrics (`strata_training_...`), next to the kit's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class TrainingMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"strata_{service}"
        r = registry
        self.runs = Counter(
            f"{p}_runs_total", "Training runs, by how they ended", ["outcome"], registry=r
        )
        self.running = Gauge(f"{p}_runs_running", "Runs training now", registry=r)
        self.queued = Gauge(f"{p}_runs_queued", "Runs waiting for their turn", registry=r)
        self.samples = Counter(
            f"{p}_samples_total", "Training examples stepped over (all workers)", registry=r
        )
        self.samples_per_second = Gauge(
            f"{p}_samples_per_second", "Throughput of the last epoch (all workers)", registry=r
        )
        self.epoch_seconds = Histogram(
            f"{p}_epoch_seconds",
            "Wall time of an epoch",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
            registry=r,
        )
        self.accuracy = Gauge(
            f"{p}_model_accuracy",
            "Held-out gold accuracy of the last model",
            ["project"],
            registry=r,
        )
        self.published = Gauge(
            f"{p}_model_published_timestamp_seconds",
            "When the project's newest model was published (alerting: no model for hours)",
            ["project"],
            registry=r,
        )
        self.ece = Gauge(
            f"{p}_model_ece",
            "Expected calibration error (15 bins) of the last model on held-out gold",
            ["project"],
            registry=r,
        )
        self.ledger_rows = Counter(
            f"{p}_ledger_rows_total", "Influence ledger rows written", registry=r
        )
        self.labels = Counter(
            f"{p}_labels_total",
            "Consensus decisions received, by what they did to the training set",
            ["outcome"],
            registry=r,
        )
        self.memorization_flags = Counter(
            f"{p}_memorization_flags_total", "Labels flagged as memorized", registry=r
        )
