"""The quality service's domain metrics (`strata_quality_...`), next to the kit's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class QualityMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"strata_{service}"
        r = registry
        self.labels_consumed = Counter(
            f"{p}_labels_consumed_total",
            "Labels stored as votes, by source (duplicates are not counted)",
            ["project", "source"],
            registry=r,
        )
        self.consensus = Counter(
            f"{p}_consensus_total",
            "Consensus outcomes: accepted, more (adaptive overlap), review, expert, "
            "second_opinion (an expert overturned a unanimous crowd), model (auto-accepted)",
            ["project", "outcome"],
            registry=r,
        )
        self.agreement = Gauge(
            f"{p}_agreement",
            "Inter-annotator agreement over the project's labels, by metric",
            ["project", "metric"],
            registry=r,
        )
        self.agreement_threshold = Gauge(
            f"{p}_agreement_threshold",
            "The contract's agreement threshold (a batch under it is not done), for alerting",
            ["project", "metric"],
            registry=r,
        )
        self.gold_accuracy_threshold = Gauge(
            f"{p}_gold_accuracy_threshold",
            "The contract's gold accuracy threshold for annotators, for alerting",
            ["project"],
            registry=r,
        )
        self.gold_accuracy = Gauge(
            f"{p}_gold_accuracy",
            "Annotators' gold accuracy (a handful of bounded series per project)",
            ["project", "annotator"],
            registry=r,
        )
        self.annotator_status = Counter(
            f"{p}_annotator_status_changes_total",
            "Annotator status changes published, by new status",
            ["project", "status"],
            registry=r,
        )
        self.review_backlog = Gauge(
            f"{p}_review_backlog_items",
            "Open reviews, by kind",
            ["project", "kind"],
            registry=r,
        )
        self.label_errors = Counter(
            f"{p}_label_errors_flagged_total",
            "Accepted labels sent back for review, by detector",
            ["project", "detector"],
            registry=r,
        )
        self.estimate_seconds = Histogram(
            f"{p}_estimate_seconds",
            "Time of one project-wide Dawid-Skene re-estimation",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
