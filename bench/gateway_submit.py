"""Sustained, durable SubmitLabel throughput and latency of the annotation gateway.

Starts its own embedded Postgres and broker, a ranked item source on a real
gRPC port, and the gateway as its own process (`python -m strata.gateway`).
Each of `--clients` annotators (threads spread over client processes) first
leases its tasks, then submits labels as fast as acknowledgements come back.
A label counts when SubmitLabel returns: by then it is committed in Postgres
together with its outbox event. Afterwards the benchmark checks every
acknowledged label is in Postgres and waits until every event is published.

Two modes: closed loop (each client sends its next label when the last is
acknowledged: the most the machine can take) and `--rate R` (the clients
together offer R labels/s: latency at a given sustained throughput).
Prints the figures and writes bench/results/gateway_submit_<mode>.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import psycopg  # noqa: E402
from strata.cli.progress import ProgressBar  # noqa: E402
from strata.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port  # noqa: E402
from strata.gateway.auth import new_token  # noqa: E402
from strata.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402

from tests import pki  # noqa: E402
from tests.integration.gateway_support import (  # noqa: E402
    bearer,
    contract_doc,
    enroll,
    scripted_sampler,
)
from tests.pki import client_channel  # noqa: E402

# `--plaintext` (inherited by the client processes): measure what mutual TLS costs.
PLAINTEXT = "STRATA_BENCH_PLAINTEXT"


def _channel(address: str) -> grpc.Channel:
    if os.environ.get(PLAINTEXT):
        return grpc.insecure_channel(address)
    return client_channel(address)


RESULTS_DIR = ROOT / "bench" / "results"
PROJECT = "bench"


def lease_all(address: str, token: str, n: int) -> list[tuple[str, str]]:
    """Lease `n` tasks for one annotator: (task_id, a valid class)."""
    md = bearer(token)
    out: list[tuple[str, str]] = []
    with _channel(address) as channel:
        stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
        while len(out) < n:
            reply = stub.NextTask(gateway_pb2.NextTaskRequest(project=PROJECT), metadata=md)
            if reply.HasField("task"):
                out.append((reply.task.task_id, reply.task.classes[len(out) % 3]))
            else:
                time.sleep(0.05)
    return out


def client_process(work: list, start_at: float, results) -> None:  # type: ignore[no-untyped-def]
    """Threads, one per annotator, each submitting its leased tasks back to back."""
    import threading

    latencies: list[float] = []
    acked: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def annotator(
        address: str, token: str, tasks: list[tuple[str, str]], interval: float, offset: float
    ) -> None:
        md = bearer(token)
        mine, ids = [], []
        with _channel(address) as channel:
            stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
            while time.time() < start_at:
                time.sleep(0.001)
            for n, (task_id, value) in enumerate(tasks):
                if interval:
                    # Paced: each client sends on its own schedule (offset so they interleave).
                    due = start_at + (n + offset) * interval
                    if due > time.time():
                        time.sleep(due - time.time())
                request = gateway_pb2.SubmitLabelRequest(
                    task_id=task_id, value=value, duration_ms=1500, client_label_id=uuid.uuid4().hex
                )
                t0 = time.perf_counter()
                try:
                    reply = stub.SubmitLabel(request, metadata=md, timeout=30)
                except grpc.RpcError as exc:
                    with lock:
                        errors.append(f"{exc.code().name}: {exc.details()}")
                    continue
                mine.append((time.time(), time.perf_counter() - t0))
                ids.append(reply.label_id)
        with lock:
            latencies.extend(mine)
            acked.extend(ids)

    threads = [threading.Thread(target=annotator, args=w) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put((latencies, acked, errors))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--labels-per-client", type=int, default=600)
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument(
        "--rate", type=float, default=0.0, help="offered labels/s in all (0: closed loop)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="gateway processes")
    parser.add_argument("--writers", type=int, default=1, help="gateway submit writer threads")
    parser.add_argument(
        "--plaintext", action="store_true", help="no TLS (to measure what mutual TLS costs)"
    )
    args = parser.parse_args()
    if args.plaintext:
        os.environ[PLAINTEXT] = "1"
    total = args.clients * args.labels_per_client

    with (
        tempfile.TemporaryDirectory() as home,
        scripted_sampler(tls=not args.plaintext) as (source, sampler_address),
    ):
        pg = EmbeddedPostgres(Path(home) / "pgdata", free_port())
        broker = EmbeddedBroker(free_port(), log_path=Path(home) / "broker.log")
        pg.start()
        broker.start()
        admin_token = new_token()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRATA_")}
        env.update(
            STRATA_PG_DSN=pg.dsn,
            STRATA_KAFKA_BOOTSTRAP=broker.bootstrap,
            STRATA_SAMPLER_ADDRESS=sampler_address,
            STRATA_GATEWAY_ADMIN_TOKEN=admin_token,
            STRATA_GATEWAY_REFILL_LOW_WATER=str(total),
            STRATA_GATEWAY_REFILL_BATCH="2000",
            STRATA_GATEWAY_REFILL_INTERVAL_S="0.05",
            STRATA_GATEWAY_SUBMIT_WRITERS=str(args.writers),
            STRATA_LOG_LEVEL="WARNING",
            **(
                {"STRATA_TLS_MODE": "plaintext", "STRATA_SERVICE_SECRET": "bench"}
                if args.plaintext
                else pki.environ("gateway")
            ),
        )
        gateways, addresses = [], []
        for _ in range(args.replicas):
            port = free_port()
            gateways.append(
                subprocess.Popen(
                    [sys.executable, "-m", "strata.gateway"],
                    env={**env, "STRATA_GATEWAY_GRPC_PORT": str(port)},
                )
            )
            addresses.append(f"127.0.0.1:{port}")
        try:
            figures = run(args, addresses, admin_token, source, pg.dsn, total)
        finally:
            for gateway in gateways:
                gateway.terminate()
            for gateway in gateways:
                gateway.wait(timeout=30)
            broker.stop()
            pg.stop()
    figures["machine"] = f"{platform.machine()} {os.cpu_count()} cores"
    mode = f"rate{int(args.rate)}" if args.rate else "closed_loop"
    mode += "_plaintext" if args.plaintext else ""
    results = RESULTS_DIR / f"gateway_submit_{mode}.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<34}{value}")
    print(f"written to {results}")


def run(args, addresses: list[str], admin_token: str, source, pg_dsn: str, total: int) -> dict:  # type: ignore[no-untyped-def]
    for address in addresses[1:]:
        grpc.channel_ready_future(_channel(address)).result(timeout=60)
    channel = _channel(addresses[0])
    grpc.channel_ready_future(channel).result(timeout=60)
    stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
    admin = bearer(admin_token)
    deadline = time.monotonic() + 60
    while True:
        try:
            stub.LoadContract(
                gateway_pb2.LoadContractRequest(
                    document=contract_doc(
                        PROJECT, overlap="{min: 1, max: 1}", gold="{rate: 0}", lease_seconds="3600"
                    )
                ),
                metadata=admin,
            )
            break
        except grpc.RpcError as exc:  # not serving yet
            if time.monotonic() > deadline:
                raise
            del exc
            time.sleep(0.2)
    tokens = enroll(stub, admin, [f"bench-{i}" for i in range(args.clients)], PROJECT)
    source.add(PROJECT, [(f"item-{i:06d}", f"text {i}") for i in range(total)])

    bar = ProgressBar("leasing tasks", args.clients)
    work = []
    for i, token in enumerate(tokens):
        address = addresses[i % len(addresses)]
        work.append((address, token, lease_all(address, token, args.labels_per_client)))
        bar.update(len(work))
    bar.close()

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start_at = time.time() + 3.0
    # --rate R: each client sends R/clients labels a second; 0 sends as fast as acks return.
    interval = args.clients / args.rate if args.rate else 0.0
    work = [(*w, interval, i / args.clients) for i, w in enumerate(work)]
    chunks = [work[i :: args.client_processes] for i in range(args.client_processes)]
    procs = [ctx.Process(target=client_process, args=(c, start_at, results)) for c in chunks]
    for p in procs:
        p.start()
    latencies, acked, errors = [], [], []
    for _ in procs:
        lat, ids, errs = results.get(timeout=600)
        latencies.extend(lat)
        acked.extend(ids)
        errors.extend(errs)
    for p in procs:
        p.join()

    # Steady state: drop the first and last 10% of the run (ramp-up and stragglers).
    done_at = sorted(t for t, _ in latencies)
    lo, hi = done_at[len(done_at) // 10], done_at[len(done_at) * 9 // 10]
    steady = [lat for t, lat in latencies if lo <= t <= hi]
    steady_rate = len(steady) / (hi - lo)
    overall = len(latencies) / (done_at[-1] - start_at)

    drain_started = time.monotonic()
    with psycopg.connect(pg_dsn, options="-c search_path=gateway") as conn:
        stored = conn.execute(
            "SELECT count(*) FROM labels WHERE project = %s", (PROJECT,)
        ).fetchone()[0]
        while conn.execute("SELECT count(*) FROM outbox WHERE published_at IS NULL").fetchone()[0]:
            time.sleep(0.1)
        published = conn.execute(
            "SELECT count(*) FROM outbox "
            "WHERE published_at IS NOT NULL AND topic = 'strata.labels.submitted'"
        ).fetchone()[0]
    channel.close()
    assert stored == len(acked) == len(set(acked)), (stored, len(acked))
    return {
        "clients": args.clients,
        "gateway_replicas": args.replicas,
        "offered_rate_labels_per_s": args.rate or "closed loop",
        "labels_acknowledged": len(acked),
        "errors": len(errors),
        "labels_in_postgres": stored,
        "events_published": published,
        "throughput_labels_per_s": round(steady_rate, 1),
        "throughput_whole_run_labels_per_s": round(overall, 1),
        "latency_p50_ms": round(percentile(steady, 0.50) * 1000, 2),
        "latency_p99_ms": round(percentile(steady, 0.99) * 1000, 2),
        "latency_max_ms": round(max(steady) * 1000, 2),
        "outbox_drain_after_run_s": round(time.monotonic() - drain_started, 2),
    }


if __name__ == "__main__":
    main()
