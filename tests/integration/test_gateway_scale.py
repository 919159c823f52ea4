"""Many annotators on several gateway processes: nothing over-assigned, lost or doubled."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from strata.common.embedded import free_port
from strata.common.topics import LABELS_SUBMITTED
from strata.gateway.auth import new_token
from strata.v1 import gateway_pb2, gateway_pb2_grpc

from tests import pki
from tests.pki import client_channel

from .conftest import Infra, kit_service_env, produce, read_topic, wait_until
from .gateway_support import bearer, contract_doc, enroll, gold_events, scripted_sampler

REPLICAS = 3
ANNOTATORS = 50
ITEMS = 2000
OVERLAP = 3
GOLD_ITEMS = 100
GOLD_RATE = 0.1
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED)


@pytest.fixture
def replicas(infra: Infra) -> Iterator[tuple[list[str], str, object]]:
    with scripted_sampler() as (source, sampler_address):
        admin_token = new_token()
        procs, addresses = [], []
        for _ in range(REPLICAS):
            port = free_port()
            env = kit_service_env(
                infra.pg_dsn,
                infra.bootstrap,
                STRATA_GATEWAY_GRPC_PORT=str(port),
                STRATA_SAMPLER_ADDRESS=sampler_address,
                STRATA_GATEWAY_ADMIN_TOKEN=admin_token,
                STRATA_GATEWAY_RETRY_AFTER_MS="50",
                STRATA_GATEWAY_REFILL_INTERVAL_S="0.1",
                STRATA_GATEWAY_REFILL_LOW_WATER="300",
                STRATA_GATEWAY_REFILL_BATCH="100",
                STRATA_LOG_LEVEL="WARNING",
                **pki.environ("gateway"),
            )
            procs.append(subprocess.Popen([sys.executable, "-m", "strata.gateway"], env=env))
            addresses.append(f"127.0.0.1:{port}")
        try:
            for address in addresses:
                wait_until(lambda a=address: _serving(a), 60, f"gateway at {address}")
            yield addresses, admin_token, source
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=20)


def _serving(address: str) -> bool:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with client_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


class Crowd:
    """ANNOTATORS threads, each on one replica, labeling until every pool label is in."""

    def __init__(self, addresses: list[str], tokens: list[str], project: str, pool: set[str]):
        self.addresses = addresses
        self.tokens = tokens
        self.project = project
        self.pool = pool
        self.lock = threading.Lock()
        self.acked: list[tuple[str, str, str]] = []  # (label_id, item_id, annotator)
        self.pool_acked = 0
        self.skips = 0
        self.errors: list[str] = []
        self.done = threading.Event()

    def work(self, i: int) -> None:
        rng = random.Random(i)
        annotator = f"crowd-{i}"
        md = bearer(self.tokens[i])
        with client_channel(self.addresses[i % len(self.addresses)]) as channel:
            stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
            while not self.done.is_set():
                try:
                    reply = stub.NextTask(
                        gateway_pb2.NextTaskRequest(project=self.project), metadata=md, timeout=10
                    )
                except grpc.RpcError as exc:
                    if exc.code() in RETRYABLE:
                        continue
                    self.errors.append(f"NextTask: {exc.code()} {exc.details()}")
                    return
                if not reply.HasField("task"):
                    time.sleep(reply.retry_after_ms / 1000)
                    continue
                task = reply.task
                if rng.random() < 0.02:
                    stub.SkipTask(gateway_pb2.SkipTaskRequest(task_id=task.task_id), metadata=md)
                    with self.lock:
                        self.skips += 1
                    continue
                key = uuid.uuid4().hex
                request = gateway_pb2.SubmitLabelRequest(
                    task_id=task.task_id,
                    value=rng.choice(list(task.classes)),
                    duration_ms=rng.randint(500, 5000),
                    client_label_id=key,
                )
                for _attempt in range(5):
                    try:
                        ack = stub.SubmitLabel(request, metadata=md, timeout=10)
                        break
                    except grpc.RpcError as exc:
                        if exc.code() not in RETRYABLE:
                            self.errors.append(f"SubmitLabel: {exc.code()} {exc.details()}")
                            return
                else:
                    self.errors.append("SubmitLabel kept failing")
                    return
                with self.lock:
                    self.acked.append((ack.label_id, task.item_id, annotator))
                    if task.item_id in self.pool:
                        self.pool_acked += 1
                        if self.pool_acked == len(self.pool) * OVERLAP:
                            self.done.set()


def test_fifty_annotators_three_replicas_two_thousand_items(replicas, infra: Infra) -> None:
    addresses, admin_token, source = replicas
    project = f"scale{uuid.uuid4().hex[:8]}"
    admin = bearer(admin_token)
    with client_channel(addresses[0]) as channel:
        stub = gateway_pb2_grpc.AnnotationGatewayStub(channel)
        stub.LoadContract(
            gateway_pb2.LoadContractRequest(
                document=contract_doc(
                    project,
                    overlap=f"{{min: {OVERLAP}, max: {OVERLAP}}}",
                    gold=f"{{rate: {GOLD_RATE}}}",
                    lease_seconds="60",
                )
            ),
            metadata=admin,
        )
        tokens = enroll(stub, admin, [f"crowd-{i}" for i in range(ANNOTATORS)], project)
    produce(infra.bootstrap, gold_events(project, GOLD_ITEMS, "cat"))
    with psycopg.connect(infra.pg_dsn, options="-c search_path=gateway") as conn:
        wait_until(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM units WHERE project = %s AND kind = 'gold'", (project,)
                ).fetchone()[0]
                == GOLD_ITEMS
            ),
            60,
            "gold items to reach the gateway",
        )

    pool = [(f"{project}-{i:05d}", f"item {i}") for i in range(ITEMS)]
    source.add(project, pool)
    crowd = Crowd(addresses, tokens, project, {item_id for item_id, _ in pool})
    threads = [threading.Thread(target=crowd.work, args=(i,)) for i in range(ANNOTATORS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    crowd.done.wait(timeout=400)
    crowd.done.set()
    for t in threads:
        t.join(timeout=30)
    elapsed = time.monotonic() - started
    assert not crowd.errors, crowd.errors[:5]
    assert crowd.pool_acked == ITEMS * OVERLAP, f"only {crowd.pool_acked} labels in {elapsed:.0f}s"

    with psycopg.connect(infra.pg_dsn, options="-c search_path=gateway") as conn:
        labels = conn.execute(
            "SELECT label_id::text, item_id, annotator_id, gold FROM labels WHERE project = %s",
            (project,),
        ).fetchall()
        leased = conn.execute(
            "SELECT count(*) FROM tasks WHERE project = %s AND state = 'leased'", (project,)
        ).fetchone()[0]
        units = conn.execute(
            "SELECT count(*), sum(labels), sum(slots_open) FROM units "
            "WHERE project = %s AND kind = 'label'",
            (project,),
        ).fetchone()
        kinds = dict(
            conn.execute(
                "SELECT kind, count(*) FROM tasks WHERE project = %s AND state <> 'skipped' "
                "GROUP BY kind",
                (project,),
            ).fetchall()
        )

    # Every item: exactly OVERLAP labels from OVERLAP distinct annotators.
    per_item: dict[str, list[str]] = defaultdict(list)
    for _, item_id, annotator, is_gold in labels:
        if not is_gold:
            per_item[item_id].append(annotator)
    assert len(per_item) == ITEMS
    assert all(len(a) == OVERLAP and len(set(a)) == OVERLAP for a in per_item.values())
    assert units == (ITEMS, ITEMS * OVERLAP, 0)
    assert leased == 0, "a lease was left behind"

    # Every acknowledged label is in Postgres once and on the topic once.
    acked_ids = [label_id for label_id, _, _ in crowd.acked]
    assert len(acked_ids) == len(set(acked_ids))
    assert sorted(acked_ids) == sorted(row[0] for row in labels)
    events = read_topic(
        infra.bootstrap,
        LABELS_SUBMITTED,
        lambda m: m.label.project == project,
        len(acked_ids),
        timeout_s=60,
    )
    on_topic = Counter(e.label.label_id for e in events)
    assert set(on_topic) == set(acked_ids)
    assert max(on_topic.values()) == 1

    # Gold at the contract's rate, within four standard deviations.
    total = kinds.get("gold", 0) + kinds.get("label", 0)
    rate = kinds.get("gold", 0) / total
    tolerance = 4 * (GOLD_RATE * (1 - GOLD_RATE) / total) ** 0.5
    assert abs(rate - GOLD_RATE) < tolerance, (rate, total)
    print(
        f"\n{len(acked_ids)} labels ({kinds.get('gold', 0)} gold, gold rate {rate:.3f}), "
        f"{crowd.skips} skips, {elapsed:.1f}s, {len(acked_ids) / elapsed:.0f} labels/s"
    )
