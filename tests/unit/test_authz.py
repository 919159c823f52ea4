"""The access matrix and the guard's decisions, without a server (a fake directory)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from strata.common.audit import AuditEntry
from strata.common.authz import (
    Guard,
    Refused,
    Standing,
)
from strata.common.identity import SERVICE_HEADER, FailureLimiter, ServiceKeys
from strata.common.matrix import MATRIX, markdown_table, missing_rules
from strata.common.tls import Peer
from strata.common.tokens import AuthError
from strata.v1 import (  # noqa: F401  (registers every service's descriptor)
    gateway_pb2,
    inference_pb2,
    quality_pb2,
    sampler_pb2,
    training_pb2,
)

SERVICES = (
    "strata.v1.AnnotationGateway",
    "strata.v1.Sampler",
    "strata.v1.Inference",
    "strata.v1.Quality",
    "strata.v1.Training",
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def all_rpcs() -> list[str]:
    pool = descriptor_pool.Default()
    return [f"/{name}/{m.name}" for name in SERVICES for m in pool.FindServiceByName(name).methods]


def test_every_rpc_has_exactly_one_rule_and_no_rule_is_stale() -> None:
    rpcs = all_rpcs()
    assert [r for r in rpcs if r not in MATRIX] == []
    assert [r for r in MATRIX if r not in rpcs] == []
    assert missing_rules("strata.v1.Sampler", ["ImportItems", "Teleport"]) == [
        "/strata.v1.Sampler/Teleport"
    ]


def test_the_docs_carry_the_matrix_the_code_enforces() -> None:
    assert markdown_table() in DOCS.read_text(), "regenerate docs/security.md's matrix"


class Context:
    """Just enough of a grpc.ServicerContext for the guard."""

    def __init__(self, metadata: list[tuple[str, str]], peer: str = "ipv4:10.0.0.7:5555"):
        self._metadata = metadata
        self._peer = peer

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self._metadata

    def peer(self) -> str:
        return self._peer


@dataclass
class Directory:
    people: dict[str, tuple[str, bool, dict[str, tuple[str, str]]]]  # token -> (id, admin, roles)
    asked: list[str] = field(default_factory=list)

    def standing(self, metadata: Any, project: str) -> Standing:
        token = dict(metadata).get("authorization", "").removeprefix("Bearer ")
        if token not in self.people:
            raise AuthError("unknown bearer token")
        self.asked.append(project)
        who, admin, roles = self.people[token]
        role, status = roles.get(project, ("", "active"))
        return Standing(who, admin, role, status)


class Audit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def write(self, conn: Any, entry: AuditEntry) -> None:
        self.entries.append(entry)

    def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


CLI = Peer("client", "cli")


def make_guard(peer: Peer = CLI, limit: int = 100) -> tuple[Guard, Audit]:
    directory = Directory(
        {
            "ann": ("ann", False, {"a": ("annotator", "active"), "b": ("annotator", "blocked")}),
            "mgr": ("mgr", False, {"a": ("manager", "active")}),
            "root": ("root", True, {}),
        }
    )
    audit = Audit()
    return Guard("quality", directory, audit, FailureLimiter(limit), lambda c: peer), audit


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def code_of(call: Any) -> grpc.StatusCode:
    with pytest.raises(Refused) as err:
        call()
    return err.value.code


def test_people_by_role_membership_and_status() -> None:
    guard, audit = make_guard()
    report = MATRIX["/strata.v1.Quality/DatasetReport"]  # reviewer
    scores = MATRIX["/strata.v1.Quality/AnnotatorScores"]  # annotator; blocked may call
    export = MATRIX["/strata.v1.Quality/ExportLabels"]  # manager
    rpc = "/strata.v1.Quality/DatasetReport"

    def admit(rule: Any, token: str | None, project: str) -> Any:
        md = bearer(token) if token else []
        return guard.admit(rpc, rule, Context(md), project)  # type: ignore[arg-type]

    assert code_of(lambda: admit(report, None, "a")) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: admit(report, "stk_nobody", "a")) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: admit(report, "ann", "a")) == grpc.StatusCode.PERMISSION_DENIED
    # Not a member: as if the project did not exist.
    assert code_of(lambda: admit(report, "mgr", "b")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: admit(report, "mgr", "ghost")) == grpc.StatusCode.NOT_FOUND
    assert admit(report, "mgr", "a").role == "manager"
    assert admit(export, "root", "anything").admin
    assert admit(scores, "ann", "a").role == "annotator"
    # Blocked in b: refused there unless the rule allows it, while a is untouched.
    assert admit(scores, "ann", "b").status == "blocked"
    assert code_of(lambda: admit(MATRIX["/strata.v1.AnnotationGateway/NextTask"], "ann", "b")) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    refusals = [e for e in audit.entries if e.outcome == "refused"]
    assert [e.code for e in refusals] == [
        "UNAUTHENTICATED",
        "UNAUTHENTICATED",
        "PERMISSION_DENIED",
        "NOT_FOUND",
        "NOT_FOUND",
        "PERMISSION_DENIED",
    ]
    assert refusals[3].actor == "mgr" and refusals[3].project == "b"
    assert not [e for e in audit.entries if "stk_nobody" in repr(e)]  # never a token
    assert [e.source for e in refusals] == ["10.0.0.7"] * len(refusals)


def test_services_call_only_what_their_identity_is_allowed() -> None:
    gateway, _ = make_guard(Peer("service", "gateway"))
    quality, _ = make_guard(Peer("service", "quality"))
    person, _ = make_guard(Peer("client", "cli"))
    rpc = "/strata.v1.Sampler/NextBatch"
    rule = MATRIX[rpc]
    assert gateway.admit(rpc, rule, Context([]), "p").name == "gateway"  # type: ignore[arg-type]
    assert code_of(lambda: quality.admit(rpc, rule, Context([]), "p")) == (  # type: ignore[arg-type]
        grpc.StatusCode.PERMISSION_DENIED
    )
    # A client certificate is no identity: without a token, nobody.
    assert code_of(lambda: person.admit(rpc, rule, Context([]), "p")) == (  # type: ignore[arg-type]
        grpc.StatusCode.UNAUTHENTICATED
    )
    # An admin is a person, and NextBatch is not for people.
    assert code_of(lambda: person.admit(rpc, rule, Context(bearer("root")), "p")) == (  # type: ignore[arg-type]
        grpc.StatusCode.PERMISSION_DENIED
    )


def test_failed_sign_ins_are_throttled_per_source_and_audited_once_a_minute() -> None:
    clock = [0.0]
    limiter = FailureLimiter(3, clock=lambda: clock[0])
    guard, audit = make_guard(limit=3)
    guard.limiter = limiter
    rpc = "/strata.v1.Quality/DatasetReport"
    rule = MATRIX[rpc]

    def attempt(token: str, peer: str = "ipv4:10.0.0.7:1") -> grpc.StatusCode:
        return code_of(lambda: guard.admit(rpc, rule, Context(bearer(token), peer), "a"))  # type: ignore[arg-type]

    assert [attempt("stk_bad") for _ in range(3)] == [grpc.StatusCode.UNAUTHENTICATED] * 3
    # Now even a good token from that source waits; another source is unaffected.
    assert [attempt("mgr") for _ in range(5)] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 5
    assert guard.admit(rpc, rule, Context(bearer("mgr"), "ipv4:10.0.0.8:1"), "a").name == "mgr"  # type: ignore[arg-type]
    throttled = [e for e in audit.entries if e.code == "RESOURCE_EXHAUSTED"]
    assert len(throttled) == 1  # one record for the burst, not five
    clock[0] = 61.0
    assert guard.admit(rpc, rule, Context(bearer("mgr")), "a").name == "mgr"  # type: ignore[arg-type]


def test_plaintext_service_identities_are_signed_and_expire() -> None:
    now = [1000.0]
    keys = ServiceKeys("secret", clock=lambda: now[0])
    value = keys.sign("gateway")
    assert keys.verify(value) == "gateway"
    assert ServiceKeys("other secret", clock=lambda: now[0]).verify(value) is None
    forged = value.replace("gateway", "training", 1)
    assert keys.verify(forged) is None
    now[0] += ServiceKeys.TTL_S + 1
    assert keys.verify(value) is None
    guard, _ = make_guard(Peer("none", ""))
    guard.service_keys = ServiceKeys("secret")
    rpc = "/strata.v1.Sampler/NextBatch"
    signed = [(SERVICE_HEADER, ServiceKeys("secret").sign("gateway"))]
    assert guard.admit(rpc, MATRIX[rpc], Context(signed), "p").name == "gateway"  # type: ignore[arg-type]
