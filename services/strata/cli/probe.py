"""`strata check`: send probes through outbox, broker and a consumer group, and time them."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from strata.common import outbox
from strata.common.config import ServiceConfig
from strata.common.consumer import HandlerContext
from strata.common.events import Event
from strata.common.service import ServiceRuntime
from strata.common.tls import TlsConfig
from strata.common.topics import PROBE
from strata.v1 import common_pb2, events_pb2

PROBE_SERVICE = "probe"


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    received: int
    duplicates_applied: int
    group_join_s: float
    p50_latency_ms: float
    p99_latency_ms: float
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.received == self.sent and self.duplicates_applied == 0

    def as_dict(self) -> dict[str, float | int | bool]:
        return {**asdict(self), "ok": self.ok}


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def run_probe(
    pg_dsn: str,
    kafka_bootstrap: str,
    count: int = 100,
    timeout_s: float = 60.0,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ProbeResult:
    """Publish `count` probes via the outbox and wait until the consumer applied each once."""
    run_id = uuid.uuid4().hex[:12]
    # The probe serves no RPC (its server answers health only, on loopback): no TLS needed.
    config = ServiceConfig(
        service=PROBE_SERVICE,
        pg_dsn=pg_dsn,
        kafka_bootstrap=kafka_bootstrap,
        shutdown_grace_s=2.0,
        tls=TlsConfig("plaintext"),
    )
    runtime = ServiceRuntime(config)
    lock = threading.Lock()
    latencies: dict[str, float] = {}
    applied: dict[str, int] = {}

    def on_probe(ctx: HandlerContext, event: Event) -> None:
        probe = event.message
        assert isinstance(probe, events_pb2.Probe)
        if not probe.probe_id.startswith(run_id):
            return  # an older run's probe, still in the topic
        latency = time.time() - probe.sent_at.ToDatetime().timestamp()
        with lock:
            applied[probe.probe_id] = applied.get(probe.probe_id, 0) + 1
            latencies.setdefault(probe.probe_id, latency * 1000)

    consumer = runtime.add_consumer({PROBE.name: on_probe}, group=f"strata-probe-{run_id}")
    started = time.monotonic()
    runtime.start()
    try:
        if not consumer.joined.wait(timeout_s):
            raise TimeoutError(f"the probe consumer did not join its group in {timeout_s:.0f}s")
        join_s = time.monotonic() - started
        with runtime.db.transaction() as conn:
            for i in range(count):
                sent_at = Timestamp()
                sent_at.GetCurrentTime()
                probe = events_pb2.Probe(
                    routing=common_pb2.RoutingMetadata(source_service="cli", trace_id=run_id),
                    probe_id=f"{run_id}-{i}",
                    sequence=i,
                    sent_at=sent_at,
                )
                outbox.publish(conn, PROBE.name, probe.probe_id, probe)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with lock:
                done = len(applied)
            progress(done, count)
            if done >= count:
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        runtime.stop(grace_s=2.0)
    values = list(latencies.values())
    return ProbeResult(
        sent=count,
        received=len(applied),
        duplicates_applied=sum(n - 1 for n in applied.values()),
        group_join_s=round(join_s, 3),
        p50_latency_ms=round(_percentile(values, 0.5), 2),
        p99_latency_ms=round(_percentile(values, 0.99), 2),
        elapsed_s=round(elapsed, 3),
    )
