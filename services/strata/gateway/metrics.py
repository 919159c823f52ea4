"""The gateway's domain metrics (`strata_gateway_...`), next to the kit's."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SUBMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0)


class GatewayMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        p = f"strata_{service}"
        r = registry
        self.tasks_assigned = Counter(
            f"{p}_tasks_assigned_total",
            "Tasks leased to annotators",
            ["project", "kind"],
            registry=r,
        )
        self.labels_submitted = Counter(
            f"{p}_labels_submitted_total",
            "SubmitLabel outcomes: accepted, duplicate, or the rejection's status code",
            ["project", "outcome"],
            registry=r,
        )
        self.labels_amended = Counter(
            f"{p}_labels_amended_total",
            "AmendLabel outcomes that changed nothing or something: amended, unchanged, duplicate",
            ["project", "outcome"],
            registry=r,
        )
        self.lease_expiries = Counter(
            f"{p}_lease_expiries_total",
            "Leases that ran out and went back to the queue",
            ["project"],
            registry=r,
        )
        self.tasks_skipped = Counter(
            f"{p}_tasks_skipped_total", "Tasks skipped by annotators", ["project"], registry=r
        )
        self.queue_ready = Gauge(
            f"{p}_queue_ready_slots",
            "Label slots waiting for an annotator",
            ["project"],
            registry=r,
        )
        self.submit_seconds = Histogram(
            f"{p}_submit_seconds",
            "SubmitLabel time from arrival to durable commit",
            buckets=_SUBMIT_BUCKETS,
            registry=r,
        )
        self.submit_batch_size = Histogram(
            f"{p}_submit_batch_labels",
            "Labels committed per group-commit transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.sampler_batches = Counter(
            f"{p}_sampler_batches_total",
            "Batches pulled from the sampler, by outcome",
            ["project", "outcome"],
            registry=r,
        )
        self.sampler_items = Counter(
            f"{p}_sampler_items_total", "Items queued from sampler batches", ["project"], registry=r
        )
        self.demand = Gauge(
            f"{p}_task_demand_per_second",
            "Label tasks asked for per second (handed out by every replica, plus the "
            "NextTask calls that found nothing here), over the refill's demand window",
            ["project"],
            registry=r,
        )
        self.low_water = Gauge(
            f"{p}_refill_low_water_slots",
            "Open label slots below which the gateway asks the sampler for a batch",
            ["project"],
            registry=r,
        )
        self.refill_seconds = Histogram(
            f"{p}_refill_seconds",
            "From asking the sampler for a batch to having it queued",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
