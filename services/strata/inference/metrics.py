"""Inference's domain metrics (`strata_inference_...`), next to the kit's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class InferenceMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"strata_{service}"
        r = registry
        self.predictions = Counter(
            f"{p}_predictions_total",
            "Predictions made: published pool scores, Predict answers and imported ones",
            ["path"],
            registry=r,
        )
        self.predict_seconds = Histogram(
            f"{p}_predict_seconds",
            "Predict latency inside the service (queueing for a shared pass included)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1),
            registry=r,
        )
        self.predict_batch_items = Histogram(
            f"{p}_predict_batch_items",
            "Items per shared forward pass of concurrent Predict calls",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.serving = Gauge(
            f"{p}_model_serving",
            "1 for the model version serving each project",
            ["project", "version"],
            registry=r,
        )
        self.ece = Gauge(
            f"{p}_ece",
            "Expected calibration error (15 bins) of the serving model on gold",
            ["project", "stage"],
            registry=r,
        )
        self.models = Counter(
            f"{p}_models_total", "Published model versions, by outcome", ["outcome"], registry=r
        )
        self.auto_routed = Counter(
            f"{p}_auto_accept_total",
            "Confident predictions proposed as MODEL labels or sent to a spot check",
            ["route"],
            registry=r,
        )
        self.backlog = Gauge(
            f"{p}_scoring_backlog",
            "Pool items the serving model has not scored yet",
            ["project"],
            registry=r,
        )
        self.score_errors = Counter(
            f"{p}_score_errors_total", "Pool items the serving model could not take", registry=r
        )
        self.imported = Counter(
            f"{p}_predictions_imported_total",
            "Rows of imported outside predictions, by outcome (imported, already, rejected)",
            ["outcome"],
            registry=r,
        )
