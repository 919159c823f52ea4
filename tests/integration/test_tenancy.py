"""Projects as tenants on one stack: a real gateway and quality, real ports, mutual TLS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from strata.common.tls import open_channel
from strata.quality.__main__ import build as build_quality
from strata.quality.config import QualityConfig
from strata.v1 import common_pb2, gateway_pb2, quality_pb2, quality_pb2_grpc

from tests.pki import client_channel, client_tls

from .conftest import Infra, produce, service_config, wait_until
from .gateway_support import (
    Gateway,
    ScriptedSampler,
    bearer,
    contract_doc,
    gateway_settings,
    gold_events,
    scripted_sampler,
    start_gateway,
)

Code = grpc.StatusCode


@dataclass
class Stack:
    gateway: Gateway
    sampler: ScriptedSampler
    quality: quality_pb2_grpc.QualityStub


@pytest.fixture
def stack(infra: Infra) -> Iterator[Stack]:
    with scripted_sampler() as (source, address):
        gw = start_gateway(service_config(infra, "gateway"), gateway_settings(address))
        gateway_address = f"127.0.0.1:{gw.runtime.endpoints.grpc_port}"  # type: ignore[union-attr]
        quality = build_quality(
            service_config(infra, "quality"),
            QualityConfig(
                gateway_address=gateway_address,
                estimate_interval_s=3600.0,
                label_error_interval_s=3600.0,
                auth_cache_s=0.0,
                contract_wait_s=3.0,
                gold_min_answered=3,
            ),
        )
        port = quality.start().grpc_port
        channel = client_channel(f"127.0.0.1:{port}")
        try:
            yield Stack(gw, source, quality_pb2_grpc.QualityStub(channel))
        finally:
            channel.close()
            quality.stop(grace_s=1.0)
            gw.channel.close()
            gw.runtime.stop(grace_s=1.0)


def code_of(call) -> tuple[Code, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""


def task_of(gw: Gateway, md, project: str, wait_s: float = 15.0) -> gateway_pb2.Task:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        reply = gw.stub.NextTask(gateway_pb2.NextTaskRequest(project=project), metadata=md)
        if reply.HasField("task"):
            return reply.task
        time.sleep(0.05)
    raise AssertionError(f"no task in {project}")


def submit(gw: Gateway, md, task: gateway_pb2.Task, value: str) -> None:  # type: ignore[no-untyped-def]
    gw.stub.SubmitLabel(
        gateway_pb2.SubmitLabelRequest(task_id=task.task_id, value=value, duration_ms=900),
        metadata=md,
    )


def test_blocked_in_one_project_keeps_working_in_another(stack: Stack, infra: Infra) -> None:
    gw = stack.gateway
    a, b = (f"t{uuid.uuid4().hex[:8]}" for _ in range(2))
    # Every task in A is gold; B has no gold at all.
    one = "{min: 1, max: 1}"
    gw.load_contract(contract_doc(a, overlap=one, gold="{rate: 0.5, accuracy_threshold: 0.8}"))
    gw.load_contract(contract_doc(b, overlap=one, gold="{rate: 0.0}"))
    produce(infra.bootstrap, gold_events(a, 20, "cat"))

    def gold_in_a() -> int:
        stats = gw.stub.QueueStats(gateway_pb2.QueueStatsRequest(project=a), metadata=gw.admin)
        return stats.gold_tasks

    wait_until(lambda: gold_in_a() == 20, 30, "A's gold to reach the gateway")
    stack.sampler.add(a, [(f"{a}-{i}", f"pool {i}") for i in range(60)])
    stack.sampler.add(b, [(f"{b}-{i}", f"pool {i}") for i in range(60)])
    person = f"both-{a}"
    md = gw.annotator(person, project=a)
    gw.stub.AddMember(
        gateway_pb2.AddMemberRequest(
            project=b, annotator_id=person, role=common_pb2.ROLE_ANNOTATOR
        ),
        metadata=gw.admin,
    )

    # In A they answer "dog" to everything, gold included: quality blocks them in A.
    def blocked_in_a() -> bool:
        try:
            task = task_of(gw, md, a, wait_s=2)
        except grpc.RpcError as exc:
            return exc.code() == Code.PERMISSION_DENIED
        try:
            submit(gw, md, task, "dog")
        except grpc.RpcError as exc:
            # The verdict can land between taking the task and answering it:
            # blocking releases the task, and the next ask is refused.
            assert exc.code() == Code.FAILED_PRECONDITION, exc.details()
            assert "released" in (exc.details() or "")
        return False

    wait_until(blocked_in_a, 60, "quality's gold verdict to block them in A")
    code, details = code_of(
        lambda: gw.stub.NextTask(gateway_pb2.NextTaskRequest(project=a), metadata=md)
    )
    assert code == Code.PERMISSION_DENIED and f"blocked in project {a}" in details
    # ... and in B they work on: the verdict was A's.
    task = task_of(gw, md, b)
    submit(gw, md, task, "cat")
    members = {
        m.annotator_id: m
        for m in gw.stub.ListAnnotators(
            gateway_pb2.ListAnnotatorsRequest(project=b), metadata=gw.admin
        ).annotators
    }
    assert members[person].status == common_pb2.ANNOTATOR_STATUS_ACTIVE
    # The verdict is in the audit log, as quality's, for A only.
    audit = gw.stub.ListAudit(
        gateway_pb2.ListAuditRequest(project=a, action="set_status"), metadata=gw.admin
    ).entries
    assert [(e.actor_kind, e.target, json.loads(e.detail_json)["status"]) for e in audit] == [
        ("service", person, "blocked")
    ]


def test_a_manager_of_one_project_cannot_see_or_touch_another(stack: Stack) -> None:
    gw = stack.gateway
    a, b = (f"t{uuid.uuid4().hex[:8]}" for _ in range(2))
    gw.load_contract(contract_doc(a))
    gw.load_contract(contract_doc(b))
    manager = gw.annotator(f"mgr-{a}", common_pb2.ROLE_MANAGER, a)
    gw.annotator(f"ann-{b}", project=b)

    # B is, to A's manager, a project that does not exist: the same code and words.
    for project in (b, f"nope-{a}"):
        code, details = code_of(
            lambda p=project: gw.stub.ListAnnotators(
                gateway_pb2.ListAnnotatorsRequest(project=p), metadata=manager
            )
        )
        assert (code, details) == (Code.NOT_FOUND, f"no project {project!r}")
        code, _ = code_of(
            lambda p=project: stack.quality.DatasetReport(
                quality_pb2.DatasetReportRequest(project=p), metadata=manager
            )
        )
        assert code == Code.NOT_FOUND
    # Nor its people: no token for them, no revoking theirs, no membership change in B.
    code, _ = code_of(
        lambda: gw.stub.IssueToken(
            gateway_pb2.IssueTokenRequest(annotator_id=f"ann-{b}"), metadata=manager
        )
    )
    assert code == Code.NOT_FOUND
    code, _ = code_of(
        lambda: gw.stub.AddMember(
            gateway_pb2.AddMemberRequest(
                project=b, annotator_id=f"mgr-{a}", role=common_pb2.ROLE_MANAGER
            ),
            metadata=manager,
        )
    )
    assert code == Code.NOT_FOUND
    # Nor create a project, nor an admin.
    code, _ = code_of(
        lambda: gw.stub.LoadContract(
            gateway_pb2.LoadContractRequest(document=contract_doc(f"new-{a}")), metadata=manager
        )
    )
    assert code == Code.NOT_FOUND
    code, _ = code_of(
        lambda: gw.stub.CreateAnnotator(
            gateway_pb2.CreateAnnotatorRequest(annotator_id="boss", role=common_pb2.ROLE_ADMIN),
            metadata=manager,
        )
    )
    assert code == Code.PERMISSION_DENIED

    # In A, the manager onboards someone end to end, and that token reaches A only.
    gw.stub.CreateAnnotator(
        gateway_pb2.CreateAnnotatorRequest(
            annotator_id=f"new-{a}", role=common_pb2.ROLE_ANNOTATOR, project=a
        ),
        metadata=manager,
    )
    token = gw.stub.IssueToken(
        gateway_pb2.IssueTokenRequest(annotator_id=f"new-{a}"), metadata=manager
    ).token
    # An admin later adds the person to B: the manager's token still does not reach B.
    gw.stub.AddMember(
        gateway_pb2.AddMemberRequest(
            project=b, annotator_id=f"new-{a}", role=common_pb2.ROLE_ANNOTATOR
        ),
        metadata=gw.admin,
    )
    projects = gw.stub.ListProjects(gateway_pb2.ListProjectsRequest(), metadata=bearer(token))
    assert [p.project for p in projects.projects] == [a]
    code, _ = code_of(
        lambda: gw.stub.GetContract(
            gateway_pb2.GetContractRequest(project=b), metadata=bearer(token)
        )
    )
    assert code == Code.NOT_FOUND

    # The manager's view of the audit log is A's; every refusal above is in it.
    mine = gw.stub.ListAudit(
        gateway_pb2.ListAuditRequest(project=a, outcome="refused"), metadata=manager
    ).entries
    assert all(e.project == a for e in mine)
    code, _ = code_of(
        lambda: gw.stub.ListAudit(gateway_pb2.ListAuditRequest(project=b), metadata=manager)
    )
    assert code == Code.NOT_FOUND
    everything = gw.stub.ListAudit(
        gateway_pb2.ListAuditRequest(actor=f"mgr-{a}", outcome="refused"), metadata=gw.admin
    ).entries
    assert {e.code for e in everything} >= {"NOT_FOUND", "PERMISSION_DENIED"}
    assert len(everything) >= 7


def test_tokens_renew_expire_and_the_bootstrap_token_rotates(stack: Stack, infra: Infra) -> None:
    gw = stack.gateway
    project = f"t{uuid.uuid4().hex[:8]}"
    gw.load_contract(contract_doc(project))
    old = gw.annotator(f"ann-{project}", project=project)
    renewed = gw.stub.RenewToken(gateway_pb2.RenewTokenRequest(), metadata=old)
    assert renewed.token != old[0][1] and renewed.expires_at.seconds > time.time() + 29 * 86_400
    code, details = code_of(lambda: gw.stub.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=old))
    assert code == Code.UNAUTHENTICATED and "revoked" in details
    who = gw.stub.WhoAmI(gateway_pb2.WhoAmIRequest(project=project), metadata=bearer(renewed.token))
    assert who.member and who.role == common_pb2.ROLE_ANNOTATOR
    # Lifetimes are bounded.
    code, _ = code_of(
        lambda: gw.stub.IssueToken(
            gateway_pb2.IssueTokenRequest(annotator_id=f"ann-{project}", ttl_seconds=365 * 86_400),
            metadata=gw.admin,
        )
    )
    assert code == Code.INVALID_ARGUMENT

    # A new STRATA_GATEWAY_ADMIN_TOKEN revokes the old one when a gateway starts with it.
    rotated = gateway_settings("", admin_token="stk_" + "r" * 43)
    second = start_gateway(
        service_config(infra, "gateway", service=gw.runtime.config.service), rotated
    )
    try:
        code, details = code_of(
            lambda: second.stub.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=gw.admin)
        )
        assert code == Code.UNAUTHENTICATED and "revoked" in details
        assert second.stub.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=second.admin).admin
    finally:
        second.channel.close()
        second.runtime.stop(grace_s=1.0)


def test_plaintext_clients_are_refused_and_refusals_never_hold_a_token(stack: Stack) -> None:
    gw = stack.gateway
    address = f"127.0.0.1:{gw.runtime.endpoints.grpc_port}"  # type: ignore[union-attr]
    with grpc.insecure_channel(address) as plain:
        code, _ = code_of(
            lambda: gateway_pb2_grpc_stub(plain).WhoAmI(
                gateway_pb2.WhoAmIRequest(), metadata=gw.admin, timeout=5
            )
        )
    assert code == Code.UNAVAILABLE
    secret = "stk_" + "s" * 43
    with open_channel(address, client_tls()) as channel:
        for _ in range(3):
            code, _ = code_of(
                lambda: gateway_pb2_grpc_stub(channel).WhoAmI(
                    gateway_pb2.WhoAmIRequest(), metadata=bearer(secret)
                )
            )
            assert code == Code.UNAUTHENTICATED
    with gw.runtime.db.transaction() as conn:
        rows = conn.execute("SELECT row_to_json(a)::text FROM audit_log a").fetchall()
    assert len([r for r in rows if "UNAUTHENTICATED" in r[0]]) >= 3
    assert not [r for r in rows if secret in r[0] or gw.admin_token in r[0]]


def gateway_pb2_grpc_stub(channel: grpc.Channel):  # type: ignore[no-untyped-def]
    from strata.v1 import gateway_pb2_grpc

    return gateway_pb2_grpc.AnnotationGatewayStub(channel)


def test_failed_sign_ins_are_throttled_per_source_and_audited_once(infra: Infra) -> None:
    with scripted_sampler() as (_, address):
        gw = start_gateway(
            service_config(infra, "gateway", auth_failure_limit=3), gateway_settings(address)
        )
        try:
            bad = bearer("stk_" + "b" * 43)
            codes = [
                code_of(lambda: gw.stub.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=bad))[0]
                for _ in range(3)
            ]
            assert codes == [Code.UNAUTHENTICATED] * 3
            # Past the limit, even a good token from this source waits a while.
            for _ in range(5):
                code, details = code_of(
                    lambda: gw.stub.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=gw.admin)
                )
                assert code == Code.RESOURCE_EXHAUSTED and "too many failed sign-ins" in details
            with gw.runtime.db.transaction() as conn:
                rows = conn.execute(
                    "SELECT code, detail FROM audit_log WHERE outcome = 'refused' ORDER BY id"
                ).fetchall()
            assert [r[0] for r in rows] == ["UNAUTHENTICATED"] * 3 + ["RESOURCE_EXHAUSTED"]
            assert rows[-1][1] == {"refused_since_last_record": 1}
        finally:
            gw.channel.close()
            gw.runtime.stop(grace_s=1.0)
