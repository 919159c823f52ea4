"""The web service without servers: sessions, CSRF, refusals and the shapes it sends
(fake stubs stand in for the gRPC services; the browser tier uses the real ones)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from strata.v1 import common_pb2, gateway_pb2
from strata.web import views
from strata.web.app import create_app
from strata.web.backends import Backends, http_error
from strata.web.metrics import WebMetrics
from strata.web.session import COOKIE, csrf_ok, csrf_token


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class FakeGateway:
    """Answers as the gateway would for one person holding token 'good'."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, str]]] = []

    def _who(self, metadata: Any) -> str:
        meta = dict(metadata)
        token = meta.get("authorization", "").removeprefix("Bearer ")
        if token not in ("good", "session-1"):
            raise FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "unknown bearer token")
        return token

    def __getattr__(self, name: str) -> Any:
        def method(request: Any, metadata: Any = (), timeout: float = 0) -> Any:
            self.calls.append((name, request, dict(metadata)))
            if name == "RedeemSignInLink":
                if request.code != "one-time":
                    raise FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "unknown link")
                return gateway_pb2.RedeemSignInLinkResponse(
                    session_token="session-1", annotator_id="ann"
                )
            self._who(metadata)
            if name == "StartSession":
                return gateway_pb2.StartSessionResponse(
                    session_token="session-1", annotator_id="ann"
                )
            if name == "WhoAmI":
                return gateway_pb2.WhoAmIResponse(annotator_id="ann")
            if name == "NextTask":
                if request.project != "mine":
                    raise FakeRpcError(grpc.StatusCode.NOT_FOUND, f"no project {request.project!r}")
                return gateway_pb2.NextTaskResponse(
                    task=gateway_pb2.Task(
                        task_id="t1",
                        item_id="i1",
                        project="mine",
                        content=common_pb2.ItemContent(text="a cat"),
                        classes=["cat", "dog"],
                    )
                )
            if name == "SubmitLabel":
                return gateway_pb2.SubmitLabelResponse(label_id="l1")
            if name == "EndSession":
                return gateway_pb2.EndSessionResponse(revoked=True)
            raise FakeRpcError(grpc.StatusCode.UNIMPLEMENTED, name)

        return method


@pytest.fixture
def fake() -> tuple[TestClient, FakeGateway]:
    backends = Backends.__new__(Backends)
    gateway = FakeGateway()
    backends.gateway = gateway  # type: ignore[assignment]
    app = create_app(backends, WebMetrics(), session_ttl_s=3600)
    return TestClient(app, base_url="http://testserver"), gateway


def test_the_csrf_token_is_bound_to_its_session_and_reveals_nothing_of_it() -> None:
    a, b = csrf_token("session-a"), csrf_token("session-b")
    assert a != b and "session" not in a
    assert csrf_ok("session-a", a) and not csrf_ok("session-a", b)
    assert not csrf_ok("session-a", None) and not csrf_ok("session-a", "")


def test_refusals_become_the_http_status_a_browser_expects() -> None:
    cases = {
        grpc.StatusCode.UNAUTHENTICATED: 401,
        grpc.StatusCode.PERMISSION_DENIED: 403,
        grpc.StatusCode.NOT_FOUND: 404,
        grpc.StatusCode.INVALID_ARGUMENT: 400,
        grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
        grpc.StatusCode.UNAVAILABLE: 503,
        grpc.StatusCode.INTERNAL: 502,
    }
    for code, status in cases.items():
        assert http_error(FakeRpcError(code, "why")).status == status


def test_signing_in_sets_an_http_only_strict_cookie_and_forwards_the_browser(
    fake: tuple[TestClient, FakeGateway],
) -> None:
    client, gateway = fake
    reply = client.post("/api/session", json={"token": "good"})
    assert reply.status_code == 200, reply.text
    cookie = reply.headers["set-cookie"].lower()
    assert "strata_session=session-1" in cookie
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    assert reply.json()["csrf_token"] == csrf_token("session-1")
    name, _, metadata = gateway.calls[-1]
    assert name == "StartSession" and metadata["x-forwarded-for"] == "testclient"
    assert metadata["authorization"] == "Bearer good"
    # The long-lived token stays out of the answer.
    assert "good" not in reply.text


def test_a_bad_token_a_foreign_form_and_no_session_are_refused(
    fake: tuple[TestClient, FakeGateway],
) -> None:
    client, _ = fake
    assert client.post("/api/session", json={"token": "bad"}).status_code == 401
    form = client.post("/api/session", data={"token": "good"})
    assert form.status_code == 415
    cross = client.post(
        "/api/session", json={"token": "good"}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    assert client.get("/api/projects").status_code == 401
    assert client.post("/api/projects/mine/tasks/next").status_code == 401


def test_a_state_change_needs_the_csrf_token(fake: tuple[TestClient, FakeGateway]) -> None:
    client, _ = fake
    csrf = client.post("/api/session", json={"token": "good"}).json()["csrf_token"]
    refused = client.post("/api/projects/mine/tasks/next")
    assert refused.status_code == 403 and refused.json()["code"] == "CSRF"
    wrong = client.post("/api/projects/mine/tasks/next", headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403
    ok = client.post("/api/projects/mine/tasks/next", headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200
    assert ok.json()["task"]["content"] == {"kind": "text", "text": "a cat"}
    other = client.post("/api/projects/theirs/tasks/next", headers={"X-CSRF-Token": csrf})
    assert other.status_code == 404


def test_a_label_carries_active_time_and_is_checked_before_any_call(
    fake: tuple[TestClient, FakeGateway],
) -> None:
    client, gateway = fake
    csrf = client.post("/api/session", json={"token": "good"}).json()["csrf_token"]
    headers = {"X-CSRF-Token": csrf}
    body = {"value": "cat", "client_label_id": "c1", "duration_ms": 900, "active_ms": 700}
    assert client.post("/api/tasks/t1/label", json=body, headers=headers).status_code == 200
    sent = gateway.calls[-1][1]
    assert (sent.active_ms, sent.duration_ms, sent.client_label_id) == (700, 900, "c1")
    calls = len(gateway.calls)
    bad = client.post("/api/tasks/t1/label", json={**body, "active_ms": -1}, headers=headers)
    assert bad.status_code == 422 and "active_ms" in bad.json()["error"]
    assert len(gateway.calls) == calls


def test_sign_out_revokes_and_clears_the_cookie(fake: tuple[TestClient, FakeGateway]) -> None:
    client, gateway = fake
    csrf = client.post("/api/session", json={"token": "good"}).json()["csrf_token"]
    reply = client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert reply.status_code == 204
    assert gateway.calls[-1][0] == "EndSession"
    assert f'{COOKIE}=""' in reply.headers["set-cookie"]


def test_pages_send_security_headers_and_the_api_is_described(
    fake: tuple[TestClient, FakeGateway],
) -> None:
    client, _ = fake
    page = client.get("/signin")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert client.get("/projects", follow_redirects=False).status_code == 303
    spec = client.get("/api/openapi.json").json()
    assert "/api/projects/{project}/tasks/next" in spec["paths"]
    assert "/api/session" in spec["paths"]


def test_a_task_is_shown_as_on_the_wire_with_nothing_that_marks_gold() -> None:
    task = gateway_pb2.Task(
        task_id="t",
        item_id="i",
        project="p",
        content=common_pb2.ItemContent(features=common_pb2.FeatureVector(values=[0.5, 1.0])),
        prelabel=common_pb2.PreLabel(value="cat", confidence=0.9123456, model_version="v3"),
        classes=["cat"],
    )
    shown = views.task(task)
    assert set(shown) == {
        "task_id",
        "item_id",
        "project",
        "content",
        "prelabel",
        "lease_expires_at",
        "ontology_version",
        "classes",
        "review",
    }
    assert shown["prelabel"]["confidence"] == 0.9123
    assert shown["content"] == {"kind": "features", "values": [0.5, 1.0]}


def test_a_reviewer_is_told_why_an_item_is_in_review() -> None:
    assert views.why_in_review("expert", "consensus 0.50 stayed under the threshold") == (
        "disagreement"
    )
    assert views.why_in_review("relabel", "memorization: fitted late, forgotten") == (
        "memorization flag"
    )
    assert views.why_in_review("relabel", "confident learning: model v3 disagrees") == (
        "model disagreement"
    )
    assert views.why_in_review("expert", "a second opinion on an overturned vote") == (
        "second opinion"
    )


def test_the_console_row_leaves_unmeasured_rates_empty_not_zero() -> None:
    person = gateway_pb2.AnnotatorInfo(
        annotator_id="a", role=common_pb2.ROLE_ANNOTATOR, labels_submitted=3
    )
    row = views.annotator_row(person, None)
    assert row["labels"] == 3 and row["gold_accuracy"] is None
    assert row["anchoring_rate"] is None and row["agreement_with_consensus"] is None
