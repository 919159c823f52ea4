"""Schemathesis against the running web's /api/openapi.json, on the real stack: whatever
it sends, no answer is a 5xx, and every call without a session is a 401."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from strata.v1 import common_pb2

from ..marks import ONE_RAY_AT_A_TIME
from .support import Project, Stack, make_project

pytestmark = ONE_RAY_AT_A_TIME  # the stack's training service runs a local Ray

# Signing in is the one thing a visitor may try; everything else needs a session.
OPEN = {("POST", "/api/session"), ("POST", "/api/session/link")}


@pytest.fixture(scope="module")
def fuzzed(stack: Stack) -> tuple[Stack, Project, dict[str, str], dict[str, str]]:
    project = make_project(stack, {"fz-mgr": common_pb2.ROLE_MANAGER}, items=5)
    with httpx.Client(base_url=stack.web) as client:
        reply = client.post("/api/session", json={"token": project.tokens["fz-mgr"]})
        assert reply.status_code == 200, reply.text
        cookies = {"strata_session": reply.cookies["strata_session"]}
        headers = {"X-CSRF-Token": reply.json()["csrf_token"]}
    return stack, project, cookies, headers


@pytest.fixture(scope="module")
def web_api(fuzzed: tuple[Stack, Project, dict[str, str], dict[str, str]]) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed[0].web}/api/openapi.json")


schema = schemathesis.pytest.from_fixture("web_api")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_the_api_fail_and_none_passes_without_a_session(
    case: Any, fuzzed: tuple[Stack, Project, dict[str, str], dict[str, str]]
) -> None:
    _, _, cookies, headers = fuzzed
    anonymous = case.call(timeout=30)
    assert anonymous.status_code < 500, (case.method, case.path, anonymous.text)
    documented = case.method.upper() == case.operation.method.upper()
    if documented and (case.method.upper(), case.operation.path) not in OPEN:
        assert anonymous.status_code == 401, (case.method, case.path, anonymous.status_code)
    if case.operation.path == "/api/session" and case.method.upper() == "DELETE":
        return  # signing the fuzzing session out would end the run's other half
    signed_in = case.call(timeout=30, cookies=cookies, headers={**(case.headers or {}), **headers})
    assert signed_in.status_code < 500, (case.method, case.path, signed_in.text)
