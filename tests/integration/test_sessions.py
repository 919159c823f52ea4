"""Browser sessions and sign-in links on a real gateway (mutual TLS, real Postgres): what
the web service asks of the gateway when someone signs in."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import pytest
from strata.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

from tests.pki import as_service

from .conftest import Infra, service_config
from .gateway_support import (
    Gateway,
    bearer,
    contract_doc,
    gateway_settings,
    scripted_sampler,
    start_gateway,
)

Code = grpc.StatusCode


def code_of(call) -> tuple[Code, str]:  # type: ignore[no-untyped-def]
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return Code.OK, ""


@pytest.fixture
def gw(infra: Infra) -> Iterator[Gateway]:
    with scripted_sampler() as (_, address):
        gateway = start_gateway(
            service_config(infra, "gateway", auth_failure_limit=3), gateway_settings(address)
        )
        try:
            yield gateway
        finally:
            gateway.channel.close()
            gateway.runtime.stop(grace_s=1.0)


def web_stub(gw: Gateway) -> tuple[grpc.Channel, gateway_pb2_grpc.AnnotationGatewayStub]:
    channel = as_service(f"127.0.0.1:{gw.runtime.endpoints.grpc_port}", "web")  # type: ignore[union-attr]
    return channel, gateway_pb2_grpc.AnnotationGatewayStub(channel)


def test_a_session_is_a_short_scoped_token_that_signing_out_revokes(gw: Gateway) -> None:
    project = f"s{uuid.uuid4().hex[:8]}"
    gw.load_contract(contract_doc(project))
    token = gw.annotator(f"ann-{project}", project=project)
    session = gw.stub.StartSession(gateway_pb2.StartSessionRequest(ttl_seconds=600), metadata=token)
    assert session.annotator_id == f"ann-{project}" and not session.admin
    assert time.time() + 500 < session.expires_at.seconds <= time.time() + 601
    as_session = bearer(session.session_token)
    who = gw.stub.WhoAmI(gateway_pb2.WhoAmIRequest(project=project), metadata=as_session)
    assert who.member and who.role == common_pb2.ROLE_ANNOTATOR
    # Longer than a day is refused; the person's own token lives on after signing out.
    code, _ = code_of(
        lambda: gw.stub.StartSession(
            gateway_pb2.StartSessionRequest(ttl_seconds=3 * 86_400), metadata=token
        )
    )
    assert code == Code.INVALID_ARGUMENT
    assert gw.stub.EndSession(gateway_pb2.EndSessionRequest(), metadata=as_session).revoked
    code, details = code_of(
        lambda: gw.stub.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=as_session)
    )
    assert code == Code.UNAUTHENTICATED and "revoked" in details
    assert gw.stub.WhoAmI(gateway_pb2.WhoAmIRequest(), metadata=token).annotator_id
    with gw.runtime.db.transaction() as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE target = %s ORDER BY id", (f"ann-{project}",)
            )
        ]
    assert actions[-2:] == ["start_session", "end_session"]


def test_a_sign_in_link_works_once_for_its_project_and_only_through_the_web(
    gw: Gateway,
) -> None:
    a, b = f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}"
    for project in (a, b):
        gw.load_contract(contract_doc(project))
    manager = gw.annotator(f"mgr-{a}", common_pb2.ROLE_MANAGER, project=a)
    gw.annotator(f"ann-{a}", project=a)
    gw.annotator(f"ann-{b}", project=b)
    # The member is added to B too: the link's session still reaches A only.
    gw.stub.AddMember(
        gateway_pb2.AddMemberRequest(
            project=b, annotator_id=f"ann-{a}", role=common_pb2.ROLE_ANNOTATOR
        ),
        metadata=gw.admin,
    )
    link = gw.stub.CreateSignInLink(
        gateway_pb2.CreateSignInLinkRequest(project=a, annotator_id=f"ann-{a}"), metadata=manager
    )
    assert 800 < link.expires_at.seconds - time.time() <= 901
    # Someone outside the manager's project is nobody to them.
    code, _ = code_of(
        lambda: gw.stub.CreateSignInLink(
            gateway_pb2.CreateSignInLinkRequest(project=a, annotator_id=f"ann-{b}"),
            metadata=manager,
        )
    )
    assert code == Code.NOT_FOUND
    # A person cannot redeem a link; the web service can, once.
    code, _ = code_of(
        lambda: gw.stub.RedeemSignInLink(
            gateway_pb2.RedeemSignInLinkRequest(code=link.code), metadata=manager
        )
    )
    assert code == Code.PERMISSION_DENIED
    channel, web = web_stub(gw)
    try:
        session = web.RedeemSignInLink(gateway_pb2.RedeemSignInLinkRequest(code=link.code))
        assert session.annotator_id == f"ann-{a}"
        projects = gw.stub.ListProjects(
            gateway_pb2.ListProjectsRequest(), metadata=bearer(session.session_token)
        )
        assert [p.project for p in projects.projects] == [a]
        code, details = code_of(
            lambda: web.RedeemSignInLink(gateway_pb2.RedeemSignInLinkRequest(code=link.code))
        )
        assert code == Code.UNAUTHENTICATED and "ask your manager" in details
    finally:
        channel.close()


def test_failed_sign_ins_through_the_web_are_counted_per_browser(gw: Gateway) -> None:
    """The web forwards the browser's address; the gateway throttles that address, not the
    web service (whose other users keep signing in)."""
    channel, web = web_stub(gw)
    try:
        attacker = [("x-forwarded-for", "203.0.113.7")]
        bad_token = [*bearer("stk_" + "x" * 43), *attacker]
        codes = [
            code_of(
                lambda: web.StartSession(gateway_pb2.StartSessionRequest(), metadata=bad_token)
            )[0]
            for _ in range(2)
        ]
        codes.append(
            code_of(
                lambda: web.RedeemSignInLink(
                    gateway_pb2.RedeemSignInLinkRequest(code="no-such-code"), metadata=attacker
                )
            )[0]
        )
        assert codes == [Code.UNAUTHENTICATED] * 3
        code, details = code_of(
            lambda: web.RedeemSignInLink(
                gateway_pb2.RedeemSignInLinkRequest(code="no-such-code"), metadata=attacker
            )
        )
        assert code == Code.RESOURCE_EXHAUSTED and "203.0.113.7" in details
        someone_else = [*gw.admin, ("x-forwarded-for", "198.51.100.2")]
        assert web.StartSession(gateway_pb2.StartSessionRequest(), metadata=someone_else).admin
        with gw.runtime.db.transaction() as conn:
            sources = {
                r[0]
                for r in conn.execute(
                    "SELECT source FROM audit_log WHERE outcome = 'refused'"
                ).fetchall()
            }
        assert sources == {"203.0.113.7"}
    finally:
        channel.close()
