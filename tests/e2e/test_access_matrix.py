"""Every RPC of every service against four callers, on the stack `strata up` starts (TLS on).

The callers: no credentials (a client certificate, no token), a member of another
project, the wrong role (or kind) for the rule, and the right caller. The expected codes
come from the rule in `strata.common.matrix`, so the test follows the matrix the code
enforces; an RPC without a rule, or without a case here, fails it. Every refusal must
leave exactly one audit row, and the right caller none.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pool
from strata.common.matrix import ANY_PERSON, MATRIX, RANK, Rule
from strata.common.tls import TlsConfig, open_channel
from strata.v1 import (
    common_pb2,
    gateway_pb2,
    gateway_pb2_grpc,
    inference_pb2,
    inference_pb2_grpc,
    quality_pb2,
    quality_pb2_grpc,
    sampler_pb2,
    sampler_pb2_grpc,
    training_pb2,
    training_pb2_grpc,
)

from ..marks import ONE_RAY_AT_A_TIME
from .support import env_for, run_strata, running_stack

Code = grpc.StatusCode
SERVICES = {
    "strata.v1.AnnotationGateway": ("gateway", gateway_pb2_grpc.AnnotationGatewayStub),
    "strata.v1.Sampler": ("sampler", sampler_pb2_grpc.SamplerStub),
    "strata.v1.Inference": ("inference", inference_pb2_grpc.InferenceStub),
    "strata.v1.Quality": ("quality", quality_pb2_grpc.QualityStub),
    "strata.v1.Training": ("training", training_pb2_grpc.TrainingStub),
}
CONTRACT = (
    "project: {project}\nversion: '{version}'\nclasses: [cat, dog]\n"
    "overlap: {{min: 2, max: 2}}\nconsensus_threshold: 0.8\ngold: {{rate: 0}}\n"
)


@dataclass
class Stack:
    home: Path
    env: dict[str, str]
    grpc: dict[str, str]
    admin_token: str
    tls_dir: Path
    channels: dict[tuple[str, str], grpc.Channel] = field(default_factory=dict)

    def tls(self, identity: str) -> TlsConfig:
        d = self.tls_dir
        return TlsConfig(
            "mutual", str(d / f"{identity}.crt"), str(d / f"{identity}.key"), str(d / "ca.crt")
        )

    def stub(self, service: str, identity: str = "cli") -> Any:
        """A stub of `service`'s full name, over a certificate of `identity`."""
        name, make = SERVICES[service]
        key = (name, identity)
        if key not in self.channels:
            self.channels[key] = open_channel(self.grpc[name], self.tls(identity))
        return make(self.channels[key])


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("matrix")
    env = env_for(home, STRATA_TRAINING_MIN_LABELS="4", STRATA_QUALITY_ESTIMATE_INTERVAL_S="3600")
    with running_stack(home, env) as state:
        s = Stack(
            home,
            env,
            {n: v["grpc"] for n, v in state["services"].items()},
            Path(state["admin_token_file"]).read_text().strip(),
            Path(state["tls_dir"]),
        )
        yield s
        for channel in s.channels.values():
            channel.close()


@dataclass
class World:
    """Two projects on one stack, people in them, and the state the RPCs act on."""

    a: str
    b: str
    tokens: dict[str, str]  # person -> token
    task: str = ""  # a task leased to a-ann, to submit
    skip: str = ""  # another, to skip
    amend: str = ""  # a task a-ann answered "cat", lease held: to change the answer of
    accepted: str = ""  # an accepted item of A
    in_review: str = ""  # an item of A in review
    run_id: str = ""
    sign_in_code: str = ""  # a sign-in link for a-ann, for the web service to redeem


def until(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def setup_world(s: Stack) -> World:
    admin = bearer(s.admin_token)
    gw = s.stub("strata.v1.AnnotationGateway")
    w = World(f"a{uuid.uuid4().hex[:6]}", f"b{uuid.uuid4().hex[:6]}", {})
    for project in (w.a, w.b):
        gw.LoadContract(
            gateway_pb2.LoadContractRequest(
                document=CONTRACT.format(project=project, version="v1")
            ),
            metadata=admin,
        )
    people = {
        "a-ann": (w.a, common_pb2.ROLE_ANNOTATOR),
        "a-rev": (w.a, common_pb2.ROLE_REVIEWER),
        "a-mgr": (w.a, common_pb2.ROLE_MANAGER),
        "b-ann": (w.b, common_pb2.ROLE_ANNOTATOR),
        "b-rev": (w.b, common_pb2.ROLE_REVIEWER),
        "b-mgr": (w.b, common_pb2.ROLE_MANAGER),
        "a-leaver": (w.a, common_pb2.ROLE_ANNOTATOR),
    }
    for person, (project, role) in people.items():
        gw.CreateAnnotator(
            gateway_pb2.CreateAnnotatorRequest(annotator_id=person, role=role, project=project),  # type: ignore[arg-type]
            metadata=admin,
        )
        w.tokens[person] = gw.IssueToken(
            gateway_pb2.IssueTokenRequest(annotator_id=person), metadata=admin
        ).token
    rows = [
        sampler_pb2.ImportRow(
            line=i + 1,
            external_id=f"t{i}",
            content=common_pb2.ItemContent(
                text=f"{'cat' if i % 2 else 'dog'} text number {i} {uuid.uuid4().hex}"
            ),
        )
        for i in range(12)
    ]
    s.stub("strata.v1.Sampler").ImportItems(
        iter([sampler_pb2.ImportItemsRequest(project=w.a, rows=rows)]), metadata=admin
    )

    def task_for(person: str) -> gateway_pb2.Task:
        def ask() -> gateway_pb2.Task | None:
            reply = gw.NextTask(
                gateway_pb2.NextTaskRequest(project=w.a), metadata=bearer(w.tokens[person])
            )
            return reply.task if reply.HasField("task") else None

        return until(ask, 60, f"a task for {person}")

    # Both label six items: they agree on five (accepted), and disagree on one (review).
    labelled: dict[str, list[str]] = {}
    for person in ("a-ann", "a-rev"):
        for _ in range(6):
            task = task_for(person)
            value = "cat" if task.content.text.startswith("cat") else "dog"
            if person == "a-rev" and task.item_id == labelled["a-ann"][0]:
                value = "dog" if value == "cat" else "cat"  # the one they disagree on
            gw.SubmitLabel(
                gateway_pb2.SubmitLabelRequest(task_id=task.task_id, value=value, duration_ms=900),
                metadata=bearer(w.tokens[person]),
            )
            labelled.setdefault(person, []).append(task.item_id)
    assert set(labelled["a-ann"]) == set(labelled["a-rev"])
    w.in_review = labelled["a-ann"][0]
    quality = s.stub("strata.v1.Quality")

    def state(item: str) -> str:
        try:
            c = quality.ItemConsensus(
                quality_pb2.ItemConsensusRequest(item_id=item), metadata=admin
            ).consensus
        except grpc.RpcError:
            return ""
        return common_pb2.ConsensusStatus.Name(c.status)

    until(lambda: state(w.in_review) == "CONSENSUS_STATUS_NEEDS_REVIEW", 60, "a review")
    w.accepted = until(
        lambda: next(
            (i for i in labelled["a-ann"][1:] if state(i) == "CONSENSUS_STATUS_ACCEPTED"), None
        ),
        60,
        "an accepted item",
    )
    # A model, so the training and inference RPCs have something to answer with.
    training = s.stub("strata.v1.Training")
    until(
        lambda: sum(state(i) == "CONSENSUS_STATUS_ACCEPTED" for i in labelled["a-ann"]) >= 5,
        60,
        "five accepted labels",
    )

    def started() -> str:
        try:
            return training.StartRun(
                training_pb2.StartRunRequest(project=w.a, epochs=2), metadata=admin
            ).run_id
        except grpc.RpcError as exc:
            # Not yet: training's copy of the contract (strata.contracts) or of the labels
            # is still on its way.
            waiting = exc.code() == Code.FAILED_PRECONDITION or (
                exc.code() == Code.NOT_FOUND and "no labeling contract" in (exc.details() or "")
            )
            assert waiting, exc.details()
            return ""

    w.run_id = until(started, 60, "training to have the contract and the labels")
    until(
        lambda: (
            training.GetRun(training_pb2.GetRunRequest(run_id=w.run_id), metadata=admin).run.state
            == training_pb2.RUN_STATE_SUCCEEDED
        ),
        180,
        "the run to succeed",
    )
    inference = s.stub("strata.v1.Inference")

    def served() -> bool:
        try:
            return bool(
                inference.ModelInfo(
                    inference_pb2.ModelInfoRequest(project=w.a), metadata=admin
                ).model_version
            )
        except grpc.RpcError:
            return False

    until(served, 120, "the model to be served")
    w.task = task_for("a-ann").task_id
    w.skip = task_for("a-ann").task_id
    w.amend = task_for("a-ann").task_id
    gw.SubmitLabel(
        gateway_pb2.SubmitLabelRequest(task_id=w.amend, value="cat", duration_ms=900),
        metadata=bearer(w.tokens["a-ann"]),
    )
    w.sign_in_code = gw.CreateSignInLink(
        gateway_pb2.CreateSignInLinkRequest(project=w.a, annotator_id="a-ann"), metadata=admin
    ).code
    return w


# -- what each RPC is called with ------------------------------------------------------------


def text(t: str) -> common_pb2.ItemContent:
    return common_pb2.ItemContent(text=t)


def requests(w: World, rpc: str, who: str) -> Any:
    """The request of `rpc` about project A (a stream: an iterator of requests)."""
    fresh = f"n-{uuid.uuid4().hex[:6]}"
    return {
        "NextTask": gateway_pb2.NextTaskRequest(project=w.a),
        "SubmitLabel": gateway_pb2.SubmitLabelRequest(task_id=w.task, value="cat", duration_ms=1),
        "SkipTask": gateway_pb2.SkipTaskRequest(task_id=w.skip),
        "AmendLabel": gateway_pb2.AmendLabelRequest(task_id=w.amend, value="dog", revision=0),
        "GetContract": gateway_pb2.GetContractRequest(project=w.a),
        "LoadContract": gateway_pb2.LoadContractRequest(
            document=CONTRACT.format(project=w.a, version=f"v-{fresh}")
        ),
        "CreateAnnotator": gateway_pb2.CreateAnnotatorRequest(
            annotator_id=fresh, role=common_pb2.ROLE_ANNOTATOR, project=w.a
        ),
        "IssueToken": gateway_pb2.IssueTokenRequest(annotator_id="a-ann"),
        "RevokeTokens": gateway_pb2.RevokeTokensRequest(annotator_id="a-leaver"),
        "ListAnnotators": gateway_pb2.ListAnnotatorsRequest(project=w.a),
        "SetAnnotatorStatus": gateway_pb2.SetAnnotatorStatusRequest(
            annotator_id="a-leaver",
            project=w.a,
            status=common_pb2.ANNOTATOR_STATUS_ACTIVE,
        ),
        "QueueStats": gateway_pb2.QueueStatsRequest(project=w.a),
        "ListContracts": gateway_pb2.ListContractsRequest(project=w.a),
        "WhoAmI": gateway_pb2.WhoAmIRequest(project=w.a),
        "AddMember": gateway_pb2.AddMemberRequest(
            project=w.a, annotator_id="a-leaver", role=common_pb2.ROLE_ANNOTATOR
        ),
        "RemoveMember": gateway_pb2.RemoveMemberRequest(project=w.a, annotator_id="a-leaver"),
        "ListProjects": gateway_pb2.ListProjectsRequest(),
        "RenewToken": gateway_pb2.RenewTokenRequest(),
        "ListAudit": gateway_pb2.ListAuditRequest(project=w.a),
        "StartSession": gateway_pb2.StartSessionRequest(ttl_seconds=600),
        "EndSession": gateway_pb2.EndSessionRequest(),
        "CreateSignInLink": gateway_pb2.CreateSignInLinkRequest(project=w.a, annotator_id="a-ann"),
        "RedeemSignInLink": gateway_pb2.RedeemSignInLinkRequest(code=w.sign_in_code),
        "ImportItems": iter(
            [
                sampler_pb2.ImportItemsRequest(
                    project=w.a,
                    rows=[sampler_pb2.ImportRow(line=1, content=text(f"new item {fresh}"))],
                )
            ]
        ),
        "NextBatch": sampler_pb2.NextBatchRequest(project=w.a, size=1, requester=fresh),
        "PoolStats": sampler_pb2.PoolStatsRequest(project=w.a),
        "Predict": inference_pb2.PredictRequest(project=w.a, contents=[text("a cat")]),
        "ModelInfo": inference_pb2.ModelInfoRequest(project=w.a),
        "RollbackModel": inference_pb2.RollbackModelRequest(project=w.a),
        "ListModels": inference_pb2.ListModelsRequest(project=w.a),
        "ImportPredictions": iter(
            [
                inference_pb2.ImportPredictionsRequest(
                    project=w.a,
                    model=f"outside-{fresh}",
                    rows=[
                        inference_pb2.ImportedPrediction(
                            line=1, item="t0", value="cat", confidence=0.8
                        )
                    ],
                )
            ]
        ),
        "ItemConsensus": quality_pb2.ItemConsensusRequest(item_id=w.accepted),
        "AnnotatorScores": quality_pb2.AnnotatorScoresRequest(
            project=w.a, annotator_ids=[who or "a-ann"]
        ),
        "AgreementReport": quality_pb2.AgreementReportRequest(project=w.a),
        "ResolveReview": quality_pb2.ResolveReviewRequest(item_id=w.in_review, value="cat"),
        "DatasetReport": quality_pb2.DatasetReportRequest(project=w.a),
        "ExportLabels": quality_pb2.ExportLabelsRequest(project=w.a),
        "ImportVotes": iter(
            [
                quality_pb2.ImportVotesRequest(
                    project=w.a,
                    votes=[
                        quality_pb2.ImportedVote(
                            line=2, item="t0", annotator=f"crowd-{fresh}", value="cat"
                        )
                    ],
                )
            ]
        ),
        "PairwiseAgreement": quality_pb2.PairwiseAgreementRequest(project=w.a),
        "PairDisagreements": quality_pb2.PairDisagreementsRequest(
            project=w.a, a="a-ann", b="a-rev"
        ),
        "ProjectProgress": quality_pb2.ProjectProgressRequest(project=w.a),
        "ContestedItems": quality_pb2.ContestedItemsRequest(project=w.a, class_label="cat"),
        "StartRun": training_pb2.StartRunRequest(project=w.a, epochs=1),
        "GetRun": training_pb2.GetRunRequest(run_id=w.run_id),
        "TraceInfluence": training_pb2.TraceInfluenceRequest(
            project=w.a, item_id=w.accepted, top_k=3
        ),
        "DepthProfile": training_pb2.DepthProfileRequest(project=w.a),
        "QueryLedger": training_pb2.QueryLedgerRequest(project=w.a, limit=10),
        "ListRuns": training_pb2.ListRunsRequest(project=w.a),
        "ItemLineage": training_pb2.ItemLineageRequest(project=w.a, item_id=w.accepted),
        "ItemDepths": training_pb2.ItemDepthsRequest(project=w.a, item_ids=[w.accepted]),
    }[rpc.rsplit("/", 1)[-1]]


# Codes a right caller may get besides OK: the call got past access control and the
# service answered on the merits (RollbackModel has one version to roll back from).
ON_THE_MERITS = {"/strata.v1.Inference/RollbackModel": Code.FAILED_PRECONDITION}


@dataclass(frozen=True)
class Caller:
    # anonymous; other: the right role, in the other project; wrong: a role (or kind)
    # too low for the rule, in the project; right: the least the rule allows.
    kind: str
    person: str = ""  # whose token; "" for none
    identity: str = "cli"  # which certificate


def callers(rule: Rule) -> list[tuple[Caller, Code]]:
    """The four callers of a rule and the code each must get."""
    below = {"reviewer": "a-ann", "manager": "a-rev"}
    if rule.people is None:  # a service's RPC
        service = rule.services[0]
        return [
            (Caller("anonymous"), Code.UNAUTHENTICATED),
            (Caller("other", "b-mgr"), Code.PERMISSION_DENIED),
            (Caller("wrong", "a-mgr"), Code.PERMISSION_DENIED),
            (Caller("right", identity=service), Code.OK),
        ]
    if rule.people == ANY_PERSON:
        return [
            (Caller("anonymous"), Code.UNAUTHENTICATED),
            (Caller("other", "b-ann"), Code.OK),
            (Caller("wrong", identity="quality"), Code.PERMISSION_DENIED),
            (Caller("right", "a-ann"), Code.OK),
        ]
    right = {"annotator": "a-ann", "reviewer": "a-rev", "manager": "a-mgr"}[rule.people]
    other = "b-" + right.removeprefix("a-")
    wrong = (
        Caller("wrong", below[rule.people])
        if RANK[rule.people] > 1
        else Caller("wrong", identity="quality")  # a service is no annotator
    )
    return [
        (Caller("anonymous"), Code.UNAUTHENTICATED),
        (Caller("other", other), Code.NOT_FOUND),
        (wrong, Code.PERMISSION_DENIED),
        (Caller("right", right), Code.OK),
    ]


def all_rpcs() -> list[str]:
    pool = descriptor_pool.Default()
    return [f"/{n}/{m.name}" for n in SERVICES for m in pool.FindServiceByName(n).methods]


def call(s: Stack, w: World, rpc: str, caller: Caller) -> Code:
    service, method = rpc.strip("/").split("/")
    stub = s.stub(service, caller.identity)
    token = w.tokens.get(caller.person, "")
    if rpc.endswith(("/RenewToken", "/EndSession")) and caller.person:
        # Renewing or ending a session revokes the token used: use a spare one.
        token = (
            s.stub("strata.v1.AnnotationGateway")
            .IssueToken(
                gateway_pb2.IssueTokenRequest(annotator_id=caller.person),
                metadata=bearer(s.admin_token),
            )
            .token
        )
    metadata = bearer(token) if token else []
    try:
        reply = getattr(stub, method)(
            requests(w, rpc, caller.person), metadata=metadata, timeout=60
        )
        if rpc.endswith("/ExportLabels"):
            list(reply)
    except grpc.RpcError as exc:
        return exc.code()
    return Code.OK


@ONE_RAY_AT_A_TIME  # the stack's training service runs a local Ray
def test_every_rpc_refuses_the_wrong_callers_and_audits_each_refusal(stack: Stack) -> None:
    rpcs = all_rpcs()
    assert sorted(MATRIX) == sorted(rpcs), "an RPC without a rule, or a rule without an RPC"
    w = setup_world(stack)
    admin = bearer(stack.admin_token)
    gateway = stack.stub("strata.v1.AnnotationGateway")
    before = gateway.ListAudit(gateway_pb2.ListAuditRequest(limit=1), metadata=admin).entries
    since_id = before[0].id if before else 0

    got: dict[tuple[str, str], Code] = {}
    expected: dict[tuple[str, str], Code] = {}
    refusals: Counter[tuple[str, str, str]] = Counter()
    # The right callers last: their calls change state (a resolved review, a revoked token).
    plan = [(rpc, c, code) for rpc in rpcs for c, code in callers(MATRIX[rpc])]
    plan.sort(key=lambda step: step[1].kind == "right")
    for rpc, caller, code in plan:
        got[(rpc, caller.kind)] = call(stack, w, rpc, caller)
        expected[(rpc, caller.kind)] = code
        if code != Code.OK:
            actor = caller.person or (caller.identity if caller.identity != "cli" else "")
            refusals[(rpc, code.name, actor)] += 1
    print(f"{len(plan)} calls of {len(rpcs)} RPCs; {sum(refusals.values())} refusals")
    for key, code in ON_THE_MERITS.items():
        if got.get((key, "right")) == code:
            expected[(key, "right")] = code
    wrong = {k: (got[k].name, v.name) for k, v in expected.items() if got[k] != v}
    assert not wrong, "rpc caller: (got, expected)\n" + json.dumps(
        {f"{k[0]} {k[1]}": v for k, v in wrong.items()}, indent=1
    )

    # Each refusal left exactly one audit row (the other services' arrive through Kafka);
    # no right caller's call left one.
    def rows() -> Counter[tuple[str, str, str]]:
        entries = gateway.ListAudit(
            gateway_pb2.ListAuditRequest(outcome="refused", limit=1000), metadata=admin
        ).entries
        return Counter((e.rpc, e.code, e.actor) for e in entries if e.id > since_id)

    def complete() -> bool:
        return rows() == refusals

    try:
        until(complete, 60, "every refusal's audit row")
    finally:
        seen = rows()
        missing = refusals - seen
        extra = seen - refusals
        assert not missing and not extra, f"missing {dict(missing)}; unexpected {dict(extra)}"


def test_a_manager_onboards_people_with_the_cli_and_reads_the_audit(stack: Stack) -> None:
    """`strata members`, `tokens`, `projects` and `audit`, as a user types them."""
    project, other = f"c{uuid.uuid4().hex[:6]}", f"d{uuid.uuid4().hex[:6]}"
    admin = {**stack.env, "STRATA_TOKEN": stack.admin_token}

    def strata(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return run_strata(stack.home, env, *args, timeout_s=60)

    gw = stack.stub("strata.v1.AnnotationGateway")
    for p in (project, other):
        gw.LoadContract(
            gateway_pb2.LoadContractRequest(document=CONTRACT.format(project=p, version="v1")),
            metadata=bearer(stack.admin_token),
        )
    made = strata(
        admin, "members", "add", f"boss-{project}", "--project", project, "--role", "manager"
    )
    assert made.returncode == 0 and "created, manager" in made.stdout, made.stdout + made.stderr
    issued = strata(admin, "tokens", "issue", f"boss-{project}")
    assert issued.returncode == 0 and issued.stdout.strip().startswith("stk_"), issued.stderr
    boss = {**stack.env, "STRATA_TOKEN": issued.stdout.strip()}

    # The manager onboards an annotator end to end, and sees only their own project.
    added = strata(boss, "members", "add", f"ann-{project}", "--project", project)
    assert added.returncode == 0, added.stdout + added.stderr
    token = strata(boss, "tokens", "issue", f"ann-{project}", "--ttl-days", "7")
    assert token.returncode == 0 and "expires" in token.stderr
    listed = strata(boss, "members", "list", "--project", project)
    assert f"ann-{project}" in listed.stdout and f"boss-{project}" in listed.stdout
    refused = strata(boss, "members", "list", "--project", other)
    assert refused.returncode == 1 and f"NOT_FOUND: no project '{other}'" in refused.stdout
    blocked = strata(
        boss,
        "members",
        "status",
        f"ann-{project}",
        "blocked",
        "--project",
        project,
        "--reason",
        "test",
    )
    assert blocked.returncode == 0, blocked.stdout + blocked.stderr
    mine = strata({**stack.env, "STRATA_TOKEN": token.stdout.strip()}, "projects")
    assert mine.returncode == 0 and project in mine.stdout and "blocked" in mine.stdout
    assert other not in mine.stdout
    # A browser sign-in link instead of a token: printed for the running stack's web,
    # redeemed there once.
    link = strata(boss, "tokens", "link", f"ann-{project}", "--project", project)
    assert link.returncode == 0 and "works once" in link.stderr, link.stdout + link.stderr
    web, _, code = link.stdout.strip().partition("/signin#code=")
    with httpx.Client(base_url=web) as client:
        session = client.post("/api/session/link", json={"code": code})
        assert session.status_code == 200 and session.json()["annotator_id"] == f"ann-{project}"
        assert client.post("/api/session/link", json={"code": code}).status_code == 401
    outsider = strata(boss, "tokens", "link", f"ann-{project}", "--project", other)
    assert outsider.returncode == 1 and "NOT_FOUND" in outsider.stdout

    # The audit log, as the manager reads it: their project's actions and refusals.
    audit = strata(boss, "audit", "--project", project, "--since", "1h", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    rows = [json.loads(line) for line in audit.stdout.splitlines()]
    actions = {r["action"] for r in rows}
    assert {"create_annotator", "issue_token", "set_status"} <= actions
    assert all(r["project"] == project for r in rows)
    everything = strata(admin, "audit", "--outcome", "refused", "--actor", f"boss-{project}")
    assert "ListAnnotators" in everything.stdout and "NOT_FOUND" in everything.stdout
    assert issued.stdout.strip() not in everything.stdout + audit.stdout


def test_the_stack_refuses_plaintext_foreign_and_expired_certificates(
    stack: Stack, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from strata.common.tls import LocalCA

    def who_am_i(channel: grpc.Channel) -> Code:
        try:
            gateway_pb2_grpc.AnnotationGatewayStub(channel).WhoAmI(
                gateway_pb2.WhoAmIRequest(), metadata=bearer(stack.admin_token), timeout=10
            )
        except grpc.RpcError as exc:
            return exc.code()
        return Code.OK

    def with_cert(ca: LocalCA, **validity: datetime) -> grpc.Channel:
        cert, key = ca.issue("client", "someone", **validity)
        folder = tmp_path / uuid.uuid4().hex
        folder.mkdir()
        (folder / "c.crt").write_bytes(cert)
        (folder / "c.key").write_bytes(key)
        trust = TlsConfig(
            "mutual", str(folder / "c.crt"), str(folder / "c.key"), str(stack.tls_dir / "ca.crt")
        )
        return open_channel(stack.grpc["gateway"], trust)

    address = stack.grpc["gateway"]
    assert who_am_i(open_channel(address, stack.tls("cli"))) == Code.OK
    assert who_am_i(grpc.insecure_channel(address)) == Code.UNAVAILABLE
    foreign = LocalCA.load_or_create(tmp_path / "other-ca")
    assert who_am_i(with_cert(foreign)) == Code.UNAVAILABLE
    own = LocalCA.load_or_create(stack.tls_dir)
    past = datetime.now(UTC) - timedelta(days=10)
    expired = with_cert(own, not_before=past, not_after=past + timedelta(days=1))
    assert who_am_i(expired) == Code.UNAVAILABLE
    assert who_am_i(with_cert(own)) == Code.OK
