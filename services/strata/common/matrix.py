"""Who may call what: one rule per RPC of every service (docs/security.md shows this table).

People are members of projects with a role (annotator < reviewer < manager); an admin
is global and passes every rule open to people. Services call as themselves (their
mTLS identity). Every RPC needs a rule: a server refuses to start with a method that
has none, and the matrix test runs every rule against every kind of caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PROJECT_ROLES = ("annotator", "reviewer", "manager")
RANK = {role: n for n, role in enumerate(PROJECT_ROLES, start=1)}

# Open to anyone: health checks (probes) and reflection (tools).
OPEN_SERVICES = (
    "grpc.health.v1.Health",
    "grpc.reflection.v1alpha.ServerReflection",
    "grpc.reflection.v1.ServerReflection",
)

# `Rule.people` values besides a project role.
ANY_PERSON = "any"  # any signed-in person, about themselves; no project
ADMIN = "admin"  # global admins only

# `Rule.project`: where the project a call is about comes from.
FROM_REQUEST = "request"  # the request's `project` field
FROM_STREAM = "stream"  # the first message of a client stream
DERIVED = "derived"  # the method finds it (a task, item, run, contract document or person)
NO_PROJECT = ""


@dataclass(frozen=True)
class Rule:
    """Who may call one RPC."""

    # The least project role a person needs, ANY_PERSON, ADMIN, or None (no person).
    people: str | None = None
    # Service identities that may call it as themselves.
    services: tuple[str, ...] = ()
    project: str = NO_PROJECT
    # An admin may leave the project empty (the call then covers every project).
    admin_without_project: bool = False
    # A member blocked in the project may still call it.
    blocked_may_call: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if self.people not in (None, ANY_PERSON, ADMIN, *PROJECT_ROLES):
            raise ValueError(f"unknown people rule {self.people!r}")
        if self.people in PROJECT_ROLES and not self.project:
            raise ValueError("a project role needs to know where the project comes from")


def _rpc(service: str, method: str) -> str:
    return f"/strata.v1.{service}/{method}"


GATEWAY = "AnnotationGateway"

MATRIX: Mapping[str, Rule] = {
    # -- the annotation gateway ------------------------------------------------------------
    _rpc(GATEWAY, "NextTask"): Rule("annotator", project=FROM_REQUEST),
    _rpc(GATEWAY, "SubmitLabel"): Rule(
        "annotator", project=DERIVED, note="the task's project; only your own task"
    ),
    _rpc(GATEWAY, "AmendLabel"): Rule(
        "annotator", project=DERIVED, note="the task's project; only your own answer"
    ),
    _rpc(GATEWAY, "SkipTask"): Rule(
        "annotator", project=DERIVED, note="the task's project; only your own task"
    ),
    _rpc(GATEWAY, "GetContract"): Rule("annotator", project=FROM_REQUEST, blocked_may_call=True),
    _rpc(GATEWAY, "LoadContract"): Rule(
        "manager", project=DERIVED, note="the document's project; a new project: admin"
    ),
    _rpc(GATEWAY, "ListContracts"): Rule("manager", project=FROM_REQUEST),
    _rpc(GATEWAY, "CreateAnnotator"): Rule(
        "manager", project=DERIVED, note="the request's project; role admin: admin"
    ),
    _rpc(GATEWAY, "IssueToken"): Rule(
        "manager",
        project=DERIVED,
        note="a member of a project you manage, never an admin; the token reaches only the "
        "projects you manage",
    ),
    _rpc(GATEWAY, "RevokeTokens"): Rule(
        "manager",
        project=DERIVED,
        note="a member of a project you manage, never an admin; a manager revokes the tokens "
        "scoped to their projects",
    ),
    _rpc(GATEWAY, "ListAnnotators"): Rule(
        "manager", project=FROM_REQUEST, admin_without_project=True
    ),
    _rpc(GATEWAY, "SetAnnotatorStatus"): Rule("manager", project=FROM_REQUEST),
    _rpc(GATEWAY, "QueueStats"): Rule("reviewer", project=FROM_REQUEST),
    _rpc(GATEWAY, "WhoAmI"): Rule(ANY_PERSON, blocked_may_call=True),
    _rpc(GATEWAY, "AddMember"): Rule("manager", project=FROM_REQUEST),
    _rpc(GATEWAY, "RemoveMember"): Rule("manager", project=FROM_REQUEST),
    _rpc(GATEWAY, "ListProjects"): Rule(ANY_PERSON, blocked_may_call=True),
    _rpc(GATEWAY, "RenewToken"): Rule(ANY_PERSON, blocked_may_call=True),
    _rpc(GATEWAY, "ListAudit"): Rule("manager", project=FROM_REQUEST, admin_without_project=True),
    _rpc(GATEWAY, "StartSession"): Rule(
        ANY_PERSON, blocked_may_call=True, note="a session token scoped as the token presented"
    ),
    _rpc(GATEWAY, "EndSession"): Rule(
        ANY_PERSON, blocked_may_call=True, note="revokes the token presented"
    ),
    _rpc(GATEWAY, "CreateSignInLink"): Rule(
        "manager",
        project=FROM_REQUEST,
        note="for a member of the project, never an admin; the session reaches only the "
        "projects you manage",
    ),
    _rpc(GATEWAY, "RedeemSignInLink"): Rule(
        services=("web",), note="the one-time code is the person's proof"
    ),
    # -- the sampler -----------------------------------------------------------------------
    _rpc("Sampler", "ImportItems"): Rule("manager", project=FROM_STREAM),
    _rpc("Sampler", "NextBatch"): Rule(services=("gateway",), note="hands items to a gateway"),
    _rpc("Sampler", "PoolStats"): Rule("reviewer", project=FROM_REQUEST),
    # -- inference -------------------------------------------------------------------------
    _rpc("Inference", "Predict"): Rule(
        "manager", project=FROM_REQUEST, note="never for a gold item, by id or by content"
    ),
    _rpc("Inference", "ModelInfo"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Inference", "RollbackModel"): Rule("manager", project=FROM_REQUEST),
    _rpc("Inference", "ListModels"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Inference", "ImportPredictions"): Rule(
        "manager", project=FROM_STREAM, note="pre-labels only, never auto-accepted"
    ),
    # -- quality ---------------------------------------------------------------------------
    _rpc("Quality", "ItemConsensus"): Rule(
        "reviewer", project=DERIVED, note="the item's project; gold: manager"
    ),
    _rpc("Quality", "AnnotatorScores"): Rule(
        "annotator",
        project=FROM_REQUEST,
        blocked_may_call=True,
        note="an annotator: their own scores only",
    ),
    _rpc("Quality", "AgreementReport"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Quality", "ResolveReview"): Rule("reviewer", project=DERIVED, note="the item's project"),
    _rpc("Quality", "DatasetReport"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Quality", "ExportLabels"): Rule("manager", project=FROM_REQUEST),
    _rpc("Quality", "PairwiseAgreement"): Rule("manager", project=FROM_REQUEST),
    _rpc("Quality", "PairDisagreements"): Rule("manager", project=FROM_REQUEST),
    _rpc("Quality", "ContestedItems"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Quality", "ProjectProgress"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Quality", "ImportVotes"): Rule("manager", project=FROM_STREAM),
    # -- training --------------------------------------------------------------------------
    _rpc("Training", "StartRun"): Rule("manager", project=FROM_REQUEST),
    _rpc("Training", "GetRun"): Rule("reviewer", project=DERIVED, note="the run's project"),
    _rpc("Training", "TraceInfluence"): Rule(
        "reviewer",
        project=FROM_REQUEST,
        note="an arbitrary content: manager; never a gold item (by id or content)",
    ),
    _rpc("Training", "DepthProfile"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Training", "QueryLedger"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Training", "ListRuns"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Training", "ItemLineage"): Rule("reviewer", project=FROM_REQUEST),
    _rpc("Training", "ItemDepths"): Rule(
        "reviewer",
        services=("quality",),
        project=FROM_REQUEST,
        note="quality's export, as itself",
    ),
}


def is_open(rpc: str) -> bool:
    """Health and reflection answer anyone."""
    return any(rpc.startswith(f"/{name}/") for name in OPEN_SERVICES)


def rule_for(rpc: str) -> Rule | None:
    return MATRIX.get(rpc)


def missing_rules(service_full_name: str, method_names: list[str]) -> list[str]:
    """The RPCs of a service that have no rule."""
    return [
        f"/{service_full_name}/{m}"
        for m in method_names
        if f"/{service_full_name}/{m}" not in MATRIX
    ]


def _who(rule: Rule) -> str:
    parts = []
    if rule.people == ANY_PERSON:
        parts.append("any signed-in person")
    elif rule.people == ADMIN:
        parts.append("admin")
    elif rule.people is not None:
        least = RANK[rule.people]
        roles = [r for r in PROJECT_ROLES if RANK[r] >= least]
        parts.append(" / ".join(roles) + " of the project, admin")
    if rule.services:
        parts.append(" / ".join(f"service `{s}`" for s in rule.services))
    return "; ".join(parts) or "nobody"


def _project(rule: Rule) -> str:
    text = {
        FROM_REQUEST: "request",
        FROM_STREAM: "first message",
        DERIVED: "derived",
        NO_PROJECT: "-",
    }[rule.project]
    if rule.admin_without_project:
        text += " (admin: may be empty)"
    return text


def markdown_table() -> str:
    """The matrix as the markdown table docs/security.md carries (a test keeps them equal)."""
    lines = [
        "| RPC | who may call | project from | blocked member | notes |",
        "|---|---|---|---|---|",
    ]
    for rpc, rule in MATRIX.items():
        blocked = "-" if rule.people in (None, ANY_PERSON) else "no"
        if rule.blocked_may_call and rule.people not in (None, ANY_PERSON):
            blocked = "yes"
        lines.append(
            f"| `{rpc.lstrip('/')}` | {_who(rule)} | {_project(rule)} | {blocked} | {rule.note} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
