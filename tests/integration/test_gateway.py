"""The annotation gateway against real Postgres, the real broker and real gRPC ports."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import grpc
import psycopg
import pytest
from strata.common.config import ConfigError, ServiceConfig
from strata.common.events import make_event
from strata.common.predictions import prediction_events
from strata.common.topics import (
    ANNOTATORS_STATUS,
    CONTRACTS,
    LABELS_CONSENSUS,
    LABELS_SUBMITTED,
    REVIEWS_REQUESTED,
)
from strata.gateway.__main__ import build
from strata.gateway.policy import MOST_PER_BATCH
from strata.v1 import common_pb2, events_pb2, gateway_pb2

from .conftest import Infra, produce, read_topic, service_config, unique_service, wait_until
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


@pytest.fixture
def sampler() -> Iterator[tuple[ScriptedSampler, str]]:
    with scripted_sampler() as s:
        yield s


@pytest.fixture
def gateway(infra: Infra, sampler: tuple[ScriptedSampler, str]) -> Iterator[Gateway]:
    gw = start_gateway(service_config(infra, "gateway"), gateway_settings(sampler[1]))
    yield gw
    gw.channel.close()
    gw.runtime.stop(grace_s=1.0)


def gw_bootstrap(gw: Gateway) -> str:
    return gw.runtime.config.kafka_bootstrap


def project_name() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def items(prefix: str, n: int) -> list[tuple[str, str]]:
    return [(f"{prefix}-{i:04d}", f"text {i}") for i in range(n)]


def next_task(gw: Gateway, md, project: str, wait_s: float = 10.0) -> gateway_pb2.Task:
    deadline = time.monotonic() + wait_s
    while True:
        reply = gw.stub.NextTask(gateway_pb2.NextTaskRequest(project=project), metadata=md)
        if reply.HasField("task"):
            return reply.task
        if time.monotonic() > deadline:
            raise AssertionError(f"no task for {project} within {wait_s}s")
        time.sleep(0.05)


def submit(
    gw: Gateway, md, task_id: str, value: str, key: str = ""
) -> gateway_pb2.SubmitLabelResponse:
    return gw.stub.SubmitLabel(
        gateway_pb2.SubmitLabelRequest(
            task_id=task_id, value=value, duration_ms=1200, client_label_id=key or uuid.uuid4().hex
        ),
        metadata=md,
    )


def status_of(call) -> tuple[Code, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details()


def counts(gw: Gateway) -> tuple[int, int]:
    """(labels, outbox events) in the gateway's schema."""
    with gw.runtime.db.transaction() as conn:
        labels = conn.execute("SELECT count(*) FROM labels").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM outbox").fetchone()[0]
    return labels, events


# -- contracts -------------------------------------------------------------------


def test_contract_versions_are_immutable_and_labels_keep_theirs(gateway, sampler) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, "v1", overlap="{min: 1, max: 2}"))
    gw.load_contract(contract_doc(project, "v1", overlap="{min: 1, max: 2}"))  # same: idempotent
    code, details = status_of(
        lambda: gw.load_contract(contract_doc(project, "v1", overlap="{min: 2, max: 2}"))
    )
    assert code == Code.ALREADY_EXISTS and "new version" in details
    code, details = status_of(
        lambda: gw.load_contract(contract_doc(project, "v2", gold="{rate: 2}"))
    )
    assert code == Code.INVALID_ARGUMENT and "gold.rate" in details

    ann = gw.annotator(f"a-{project}", project=project)
    source.add(project, items(project, 3))
    old_task = next_task(gw, ann, project)
    assert old_task.ontology_version == "v1" and list(old_task.classes) == ["cat", "dog", "bird"]

    v2 = f"project: {project}\nversion: v2\nclasses: [cat, dog]\noverlap: {{min: 1, max: 2}}\n"
    gw.load_contract(v2)
    current = gw.stub.GetContract(gateway_pb2.GetContractRequest(project=project), metadata=ann)
    assert current.contract.version == "v2" and current.contract.HasField("loaded_at")
    old = gw.stub.GetContract(
        gateway_pb2.GetContractRequest(project=project, version="v1"), metadata=ann
    )
    assert [c.name for c in old.contract.classes] == ["cat", "dog", "bird"]

    # The v1 task is validated against v1, where "bird" exists.
    label_id = submit(gw, ann, old_task.task_id, "bird").label_id
    new_task = next_task(gw, ann, project)
    assert new_task.ontology_version == "v2"
    code, details = status_of(lambda: submit(gw, ann, new_task.task_id, "bird"))
    assert code == Code.INVALID_ARGUMENT and "'cat', 'dog'" in details
    with gw.runtime.db.transaction() as conn:
        row = conn.execute(
            "SELECT value, ontology_version FROM labels WHERE label_id = %s", (label_id,)
        ).fetchone()
    assert row == ("bird", "v1")
    code, _ = status_of(
        lambda: gw.stub.GetContract(gateway_pb2.GetContractRequest(project="nope"), metadata=ann)
    )
    assert code == Code.NOT_FOUND

    # Every other service learns each version once, from strata.contracts.
    loaded = read_topic(gw_bootstrap(gw), CONTRACTS, lambda m: m.contract.project == project, 2)
    assert [m.contract.version for m in loaded] == ["v1", "v2"]
    assert loaded[1].loaded_by == "admin" and loaded[1].contract.HasField("loaded_at")
    assert [c.name for c in loaded[1].contract.classes] == ["cat", "dog"]

    # The console lists the versions, newest first, each with the document it came from
    # (what an export gives back, and what loading it again would accept as the same).
    listed = gw.stub.ListContracts(
        gateway_pb2.ListContractsRequest(project=project), metadata=gw.admin
    ).versions
    assert [(v.version, v.current) for v in listed] == [("v2", True), ("v1", False)]
    assert listed[0].document == v2 and listed[0].loaded_by == "admin"
    gw.load_contract(listed[1].document)  # the exported v1, loaded again: the same, accepted
    code, _ = status_of(
        lambda: gw.stub.ListContracts(
            gateway_pb2.ListContractsRequest(project=project), metadata=ann
        )
    )
    assert code == Code.PERMISSION_DENIED


# -- auth ------------------------------------------------------------------------------


def test_tokens_roles_and_audit(gateway) -> None:
    gw = gateway
    project = project_name()
    gw.load_contract(contract_doc(project))
    ann = gw.annotator(f"a-{project}", project=project)
    req = gateway_pb2.NextTaskRequest(project=project)

    assert status_of(lambda: gw.stub.NextTask(req))[0] == Code.UNAUTHENTICATED
    for md in (
        [("authorization", "Token abc")],
        [("authorization", "Bearer ")],
        bearer("stk_" + "x" * 43),  # well-formed, never issued
    ):
        code, details = status_of(lambda md=md: gw.stub.NextTask(req, metadata=md))
        assert code == Code.UNAUTHENTICATED and details

    code, details = status_of(
        lambda: gw.stub.CreateAnnotator(
            gateway_pb2.CreateAnnotatorRequest(annotator_id="x", role=common_pb2.ROLE_ADMIN),
            metadata=ann,
        )
    )
    assert code == Code.PERMISSION_DENIED and "only an admin" in details
    assert (
        status_of(
            lambda: gw.stub.QueueStats(gateway_pb2.QueueStatsRequest(project=project), metadata=ann)
        )[0]
        == Code.PERMISSION_DENIED
    )

    reply = gw.stub.RevokeTokens(
        gateway_pb2.RevokeTokensRequest(annotator_id=f"a-{project}"), metadata=gw.admin
    )
    assert reply.revoked == 1
    code, details = status_of(lambda: gw.stub.NextTask(req, metadata=ann))
    assert code == Code.UNAUTHENTICATED and "revoked" in details

    assert (
        status_of(
            lambda: gw.stub.IssueToken(
                gateway_pb2.IssueTokenRequest(annotator_id="ghost"), metadata=gw.admin
            )
        )[0]
        == Code.NOT_FOUND
    )
    assert (
        status_of(
            lambda: gw.stub.CreateAnnotator(
                gateway_pb2.CreateAnnotatorRequest(annotator_id="no role"), metadata=gw.admin
            )
        )[0]
        == Code.INVALID_ARGUMENT
    )

    with gw.runtime.db.transaction() as conn:
        actions = [
            r[0]
            for r in conn.execute(
                "SELECT action FROM audit_log WHERE target LIKE %s ORDER BY id",
                (f"%{project}%",),
            )
        ]
        stored = conn.execute("SELECT token_hash FROM tokens").fetchall()
    assert actions == ["load_contract", "create_annotator", "issue_token", "revoke_tokens"]
    assert all(len(h[0]) == 64 and not h[0].startswith("stk_") for h in stored)


# -- bad input ---------------------------------------------------------------------------


def test_bad_submissions_get_the_right_code_and_write_nothing(gateway, sampler) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 2, max: 3}", lease_seconds="1"))
    alice = gw.annotator(f"alice-{project}", project=project)
    bob = gw.annotator(f"bob-{project}", project=project)
    carol = gw.annotator(f"carol-{project}", project=project)
    source.add(project, items(project, 2))
    task = next_task(gw, alice, project)
    before = counts(gw)

    cases = {
        "unknown task": (alice, str(uuid.uuid4()), "cat", Code.NOT_FOUND),
        "not a task id": (alice, "../../etc", "cat", Code.NOT_FOUND),
        "class not in contract": (alice, task.task_id, "horse", Code.INVALID_ARGUMENT),
        "empty value": (alice, task.task_id, "", Code.INVALID_ARGUMENT),
        "oversized value": (alice, task.task_id, "c" * 10_000, Code.INVALID_ARGUMENT),
        "someone else's task": (bob, task.task_id, "cat", Code.NOT_FOUND),
    }
    for what, (md, task_id, value, expected) in cases.items():
        code, details = status_of(lambda md=md, t=task_id, v=value: submit(gw, md, t, v))
        assert code == expected, what
        assert len(details) > 15, what
    malformed = [("authorization", "Bearer stk_bad token")]
    assert status_of(lambda: submit(gw, malformed, task.task_id, "cat"))[0] == Code.UNAUTHENTICATED
    assert counts(gw) == before, "a rejected submission wrote something"

    first = submit(gw, alice, task.task_id, "cat", key="k-1")
    again = submit(gw, alice, task.task_id, "cat", key="k-1")
    assert again.duplicate and again.label_id == first.label_id
    code, details = status_of(lambda: submit(gw, alice, task.task_id, "dog", key="k-2"))
    assert code == Code.ALREADY_EXISTS and "already has your label" in details
    after_one = counts(gw)
    assert after_one == (before[0] + 1, before[1] + 1)

    # Bob's lease runs out and Carol gets the item; Bob's late label is refused.
    bob_task = next_task(gw, bob, project)
    code, _ = status_of(
        lambda: gw.stub.SkipTask(
            gateway_pb2.SkipTaskRequest(task_id=str(uuid.uuid4())), metadata=bob
        )
    )
    assert code == Code.NOT_FOUND
    time.sleep(1.6)  # lease 1 s + sweep interval
    carol_task = next_task(gw, carol, project)
    assert carol_task.item_id == bob_task.item_id
    code, details = status_of(lambda: submit(gw, bob, bob_task.task_id, "cat"))
    assert code == Code.FAILED_PRECONDITION and "expired" in details
    assert counts(gw) == after_one
    submit(gw, carol, carol_task.task_id, "dog")


def amend(gw: Gateway, md, task_id: str, value: str, revision: int):  # type: ignore[no-untyped-def]
    return gw.stub.AmendLabel(
        gateway_pb2.AmendLabelRequest(
            task_id=task_id, value=value, revision=revision, active_ms=900
        ),
        metadata=md,
    )


def test_an_answer_can_be_changed_while_its_lease_holds(gateway, sampler) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 2, max: 3}", lease_seconds="4"))
    alice = gw.annotator(f"alice-{project}", project=project)
    bob = gw.annotator(f"bob-{project}", project=project)
    source.add(project, items(project, 3))
    task = next_task(gw, alice, project)
    unanswered = next_task(gw, alice, project)
    label = submit(gw, alice, task.task_id, "cat")
    before = counts(gw)

    refused = {
        "someone else's answer": (bob, task.task_id, "dog", 0, Code.NOT_FOUND),
        "not a task id": (alice, "../x", "dog", 0, Code.NOT_FOUND),
        "no answer yet": (alice, unanswered.task_id, "dog", 0, Code.FAILED_PRECONDITION),
        "class not in contract": (alice, task.task_id, "horse", 0, Code.INVALID_ARGUMENT),
        "empty value": (alice, task.task_id, "", 0, Code.INVALID_ARGUMENT),
        "a revision not yet made": (alice, task.task_id, "dog", 3, Code.ABORTED),
    }
    for what, (md, task_id, value, revision, expected) in refused.items():
        code, details = status_of(
            lambda md=md, t=task_id, v=value, r=revision: amend(gw, md, t, v, r)
        )
        assert code == expected, (what, code, details)
        assert len(details) > 15, what
    assert counts(gw) == before, "a refused change wrote something"

    changed = amend(gw, alice, task.task_id, "dog", 0)
    assert (changed.label_id, changed.revision, changed.duplicate) == (label.label_id, 1, False)
    retried = amend(gw, alice, task.task_id, "dog", 0)
    assert (retried.revision, retried.duplicate) == (1, True)
    code, details = status_of(lambda: amend(gw, alice, task.task_id, "bird", 0))
    assert code == Code.ABORTED and "changed since" in details
    same = amend(gw, alice, task.task_id, "dog", 1)
    assert (same.revision, same.duplicate) == (1, False)
    # One label, one change event: the label keeps its id and counts its revision.
    assert counts(gw) == (before[0], before[1] + 1)
    with gw.runtime.db.transaction() as conn:
        row = conn.execute(
            "SELECT value, revision, active_ms FROM labels WHERE label_id = %s",
            (label.label_id,),
        ).fetchone()
    assert row == ("dog", 1, 900)
    events = read_topic(
        gw_bootstrap(gw),
        LABELS_SUBMITTED,
        lambda m: m.label.label_id == label.label_id,
        2,
    )
    assert sorted((m.revision, m.label.value) for m in events) == [(0, "cat"), (1, "dog")]
    assert {m.label.item_id for m in events} == {task.item_id}

    time.sleep(4.2)  # the lease runs out: the answer stands as it is
    code, details = status_of(lambda: amend(gw, alice, task.task_id, "bird", 1))
    assert code == Code.FAILED_PRECONDITION and "lease" in details
    assert counts(gw) == (before[0], before[1] + 1)


def test_late_label_is_kept_when_nobody_took_the_slot(gateway, sampler) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 1, max: 1}", lease_seconds="1"))
    ann = gw.annotator(f"a-{project}", project=project)
    source.add(project, items(project, 1))
    task = next_task(gw, ann, project)
    time.sleep(1.6)
    with gw.runtime.db.transaction() as conn:
        state = conn.execute(
            "SELECT state FROM tasks WHERE task_id = %s", (task.task_id,)
        ).fetchone()
    assert state == ("expired",)
    submit(gw, ann, task.task_id, "cat")
    with gw.runtime.db.transaction() as conn:
        slots = conn.execute(
            "SELECT slots_open, labels FROM units WHERE item_id = %s", (task.item_id,)
        )
        assert slots.fetchone() == (0, 1)


def test_skip_releases_the_slot_to_someone_else(gateway, sampler) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 1, max: 1}"))
    a, b = (
        gw.annotator(f"a-{project}", project=project),
        gw.annotator(f"b-{project}", project=project),
    )
    source.add(project, items(project, 1))
    task = next_task(gw, a, project)
    gw.stub.SkipTask(gateway_pb2.SkipTaskRequest(task_id=task.task_id, reason="blurry"), metadata=a)
    code, _ = status_of(
        lambda: gw.stub.SkipTask(gateway_pb2.SkipTaskRequest(task_id=task.task_id), metadata=a)
    )
    assert code == Code.FAILED_PRECONDITION
    assert next_task(gw, b, project).item_id == task.item_id
    # Never the same item twice: a skipped item does not come back to its skipper.
    reply = gw.stub.NextTask(gateway_pb2.NextTaskRequest(project=project), metadata=a)
    assert not reply.HasField("task") and reply.retry_after_ms > 0


# -- what the sampler ranked, gold, pre-labels ------------------------------------------------


def test_tasks_follow_the_samplers_ranking(gateway, sampler) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 1, max: 1}", gold="{rate: 0}"))
    ann = gw.annotator(f"a-{project}", project=project)
    ranked = items(project, 45)
    source.add(project, ranked)
    served = []
    for _ in range(45):
        task = next_task(gw, ann, project)
        served.append(task.item_id)
        submit(gw, ann, task.task_id, "cat")
    assert served == [item_id for item_id, _ in ranked]
    # Each batch is at least the contract's (20); one annotator at machine speed is
    # demand too, and a batch grows to what the queue lacks of its mark.
    assert all(
        r.requester.startswith("gateway-") and 20 <= r.size <= MOST_PER_BATCH
        for r in source.requests
    )


def test_gold_is_mixed_in_indistinguishably_and_prelabels_are_recorded(
    gateway, sampler, infra
) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 1, max: 1}", gold="{rate: 0.3}"))
    ann = gw.annotator(f"a-{project}", project=project)
    pool = items(project, 60)
    source.add(project, pool)
    prediction = events_pb2.PredictionMade(
        prediction=common_pb2.Prediction(
            item_id=pool[0][0],
            project=project,
            model_version="m-7",
            predicted_class="dog",
            confidence=0.83,
            calibrated=True,
        )
    )
    prediction.prediction.predicted_at.GetCurrentTime()
    # An older model's prediction arriving later (same batch) does not replace it.
    older = events_pb2.PredictionMade()
    older.CopyFrom(prediction)
    older.prediction.model_version, older.prediction.predicted_class = "m-6", "cat"
    older.prediction.predicted_at.FromSeconds(prediction.prediction.predicted_at.seconds - 3600)
    produce(
        infra.bootstrap,
        [
            *gold_events(project, 30, "dog"),
            prediction_events(prediction.routing, [prediction.prediction])[0],
            prediction_events(older.routing, [older.prediction])[0],
        ],
    )

    def gold_loaded() -> bool:
        with gw.runtime.db.transaction() as conn:
            n = conn.execute(
                "SELECT count(*) FROM units WHERE project = %s AND kind = 'gold'", (project,)
            ).fetchone()[0]
            p = conn.execute("SELECT count(*) FROM prelabels WHERE item_id = %s", (pool[0][0],))
            return n == 30 and p.fetchone()[0] == 1

    wait_until(gold_loaded, 30, "gold items and the prediction to be consumed")
    tasks = []
    for _ in range(60):
        task = next_task(gw, ann, project)
        tasks.append(task)
        submit(gw, ann, task.task_id, "dog")
        if len({t.item_id for t in tasks if "-gold-" not in t.item_id}) == 40:
            break
    gold = [t for t in tasks if "-gold-" in t.item_id]
    regular = [t for t in tasks if "-gold-" not in t.item_id]
    assert 3 <= len(gold) <= 35, len(gold)
    first_gold = min(i for i, t in enumerate(tasks) if "-gold-" in t.item_id)
    assert first_gold < 25  # mixed in from the start (0.7^25: 1 in 7,000), not at the end

    def shape(t: gateway_pb2.Task) -> tuple:
        fields = sorted(f.name for f, _ in t.ListFields() if f.name != "prelabel")
        return tuple(fields), len(t.task_id), t.review, t.ontology_version, tuple(t.classes)

    assert {shape(t) for t in gold} == {shape(t) for t in regular if t.item_id != pool[0][0]}
    first = next(t for t in tasks if t.item_id == pool[0][0])
    assert first.prelabel.value == "dog" and first.prelabel.model_version == "m-7"
    assert first.prelabel.calibrated and abs(first.prelabel.confidence - 0.83) < 1e-9

    events = read_topic(
        infra.bootstrap, LABELS_SUBMITTED, lambda m: m.label.project == project, len(tasks)
    )
    assert len(events) == len(tasks)
    by_item = {e.label.item_id: e for e in events}
    for t in gold:
        e = by_item[t.item_id]
        assert e.gold and e.gold_answer == "dog"
        assert e.routing.reason == common_pb2.ROUTING_REASON_GOLD
    e = by_item[pool[0][0]]
    assert not e.gold and e.gold_answer == ""
    assert e.label.shown_prelabel.value == "dog" and e.label.shown_prelabel.model_version == "m-7"
    assert e.routing.source_service == "gateway" and e.routing.ontology_version == "v1"
    assert e.label.annotator_id == f"a-{project}"
    assert e.label.source == common_pb2.LABEL_SOURCE_HUMAN


def test_a_new_annotator_meets_gold_at_the_probation_rate_first(gateway, sampler, infra) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(
        contract_doc(
            project,
            overlap="{min: 1, max: 1}",
            gold="{rate: 0.05, probation: {tasks: 20, rate: 0.8}}",
        )
    )
    ann = gw.annotator(f"p-{project}", project=project)
    source.add(project, items(project, 80))
    produce(infra.bootstrap, gold_events(project, 40, "dog"))

    def gold_loaded() -> bool:
        with gw.runtime.db.transaction() as conn:
            n = conn.execute(
                "SELECT count(*) FROM units WHERE project = %s AND kind = 'gold'", (project,)
            ).fetchone()[0]
            return bool(n == 40)

    wait_until(gold_loaded, 30, "gold items to be consumed")
    kinds = []
    for _ in range(60):
        task = next_task(gw, ann, project)
        kinds.append("-gold-" in task.item_id)
        submit(gw, ann, task.task_id, "dog")
    # Binomial(20, 0.8) then Binomial(40, 0.05): means 16 and 2.
    assert sum(kinds[:20]) >= 10, kinds
    assert sum(kinds[20:]) <= 10, kinds


def test_hidden_prelabels_are_not_shown(gateway, sampler, infra) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 1, max: 1}", prelabels="{show: false}"))
    ann = gw.annotator(f"a-{project}", project=project)
    pool = items(project, 1)
    prediction = events_pb2.PredictionMade(
        prediction=common_pb2.Prediction(
            item_id=pool[0][0], predicted_class="cat", model_version="m"
        )
    )
    produce(infra.bootstrap, [prediction_events(prediction.routing, [prediction.prediction])[0]])

    def consumed() -> bool:
        with gw.runtime.db.transaction() as conn:
            return (
                conn.execute(
                    "SELECT count(*) FROM prelabels WHERE item_id = %s", (pool[0][0],)
                ).fetchone()[0]
                == 1
            )

    wait_until(consumed, 30, "the prediction to be consumed")
    source.add(project, pool)
    task = next_task(gw, ann, project)
    assert not task.HasField("prelabel")


# -- what quality tells the gateway ----------------------------------------------------------------


def test_adaptive_overlap_consensus_reviews_and_blocking(gateway, sampler, infra) -> None:
    gw, (source, _) = gateway, sampler
    project = project_name()
    gw.load_contract(contract_doc(project, overlap="{min: 2, max: 3}", gold="{rate: 0}"))
    anns = [gw.annotator(f"a{i}-{project}", project=project) for i in range(4)]
    reviewer = gw.annotator(f"rev-{project}", common_pb2.ROLE_REVIEWER, project)
    pool = items(project, 2)
    source.add(project, pool)
    item, other = pool[0][0], pool[1][0]
    for md in anns[:2]:
        for _ in range(2):
            task = next_task(gw, md, project)
            submit(gw, md, task.task_id, "cat")
    # Both items have their two labels: nobody gets more.
    assert not gw.stub.NextTask(
        gateway_pb2.NextTaskRequest(project=project), metadata=anns[2]
    ).HasField("task")

    wider = events_pb2.ConsensusUpdated(
        consensus=common_pb2.ConsensusLabel(
            item_id=item, project=project, status=common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW
        ),
        requested_overlap=3,
    )
    produce(infra.bootstrap, [make_event(LABELS_CONSENSUS, item, wider)])
    third = next_task(gw, anns[2], project, wait_s=30)
    assert third.item_id == item
    submit(gw, anns[2], third.task_id, "dog")

    review = events_pb2.ReviewRequested(
        item_id=item, project=project, kind=events_pb2.REVIEW_KIND_EXPERT, detail="split vote"
    )
    accepted = events_pb2.ConsensusUpdated(
        consensus=common_pb2.ConsensusLabel(
            item_id=other, project=project, status=common_pb2.CONSENSUS_STATUS_ACCEPTED
        )
    )
    produce(
        infra.bootstrap,
        [
            make_event(REVIEWS_REQUESTED, item, review),
            make_event(LABELS_CONSENSUS, other, accepted),
        ],
    )
    review_task = next_task(gw, reviewer, project, wait_s=30)
    assert review_task.item_id == item and review_task.review
    assert not gw.stub.NextTask(
        gateway_pb2.NextTaskRequest(project=project), metadata=anns[3]
    ).HasField("task")
    label_id = submit(gw, reviewer, review_task.task_id, "dog").label_id
    events = read_topic(
        infra.bootstrap, LABELS_SUBMITTED, lambda m: m.label.label_id == label_id, 1
    )
    assert events[0].label.source == common_pb2.LABEL_SOURCE_EXPERT
    assert events[0].routing.reason == common_pb2.ROUTING_REASON_REVIEW

    # Quality asks again (a second opinion on the answered review): another reviewer
    # gets the item, the one who answered does not.
    produce(infra.bootstrap, [make_event(REVIEWS_REQUESTED, item, review)])
    second = gw.annotator(f"rev2-{project}", common_pb2.ROLE_REVIEWER, project)
    again = next_task(gw, second, project, wait_s=30)
    assert again.item_id == item and again.review
    assert not gw.stub.NextTask(
        gateway_pb2.NextTaskRequest(project=project), metadata=reviewer
    ).HasField("task")
    submit(gw, second, again.task_id, "cat")

    # Quality blocks an annotator: no more tasks, and its lease goes back to the queue.
    source.add(project, items(project + "x", 1))
    held = next_task(gw, anns[3], project)
    blocked = events_pb2.AnnotatorStatusChanged(
        annotator_id=f"a3-{project}",
        project=project,
        status=common_pb2.ANNOTATOR_STATUS_BLOCKED,
        reason="gold accuracy 0.31 (lower bound 0.18) under 0.70",
    )
    produce(infra.bootstrap, [make_event(ANNOTATORS_STATUS, blocked.annotator_id, blocked)])

    def is_blocked() -> bool:
        try:
            gw.stub.NextTask(gateway_pb2.NextTaskRequest(project=project), metadata=anns[3])
        except grpc.RpcError as exc:
            return exc.code() == Code.PERMISSION_DENIED and "gold accuracy 0.31" in exc.details()
        return False

    wait_until(is_blocked, 30, "the blocked status to reach the gateway")
    assert status_of(lambda: submit(gw, anns[3], held.task_id, "cat"))[0] == Code.PERMISSION_DENIED
    assert next_task(gw, anns[0], project).item_id == held.item_id
    listed = gw.stub.ListAnnotators(
        gateway_pb2.ListAnnotatorsRequest(project=project), metadata=gw.admin
    )
    mine = {a.annotator_id: a for a in listed.annotators if a.annotator_id.endswith(project)}
    assert mine[f"a3-{project}"].status == common_pb2.ANNOTATOR_STATUS_BLOCKED
    assert mine[f"a0-{project}"].labels_submitted == 2
    stats = gw.stub.QueueStats(gateway_pb2.QueueStatsRequest(project=project), metadata=gw.admin)
    assert stats.completed == 1 and stats.labels_total == 7 and stats.leased == 1
    # The console's throughput and oldest lease: every label is from this minute; the one
    # lease left is a0's, taken above.
    assert stats.labels_last_hour == 7
    assert stats.HasField("oldest_lease_at") and stats.oldest_lease_annotator == f"a0-{project}"


def test_contracts_folder_is_loaded_at_start_and_a_conflict_stops_the_start(
    infra, sampler, tmp_path
) -> None:
    project = project_name()
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "a.yaml").write_text(contract_doc(project, "v1", overlap="{min: 2, max: 3}"))
    (folder / "notes.txt").write_text("not a contract: ignored\n")
    service = unique_service("gateway")

    def config() -> ServiceConfig:
        return service_config(infra, "gateway", service=service, shutdown_grace_s=1.0)

    settings = gateway_settings(sampler[1], contracts_dir=str(folder))
    for _ in range(2):  # a second start (a rolling update) loads nothing new
        gw = start_gateway(config(), settings)
        try:
            got = gw.stub.GetContract(
                gateway_pb2.GetContractRequest(project=project), metadata=gw.admin
            )
            assert got.contract.version == "v1" and got.contract.overlap.max == 3
        finally:
            gw.channel.close()
            gw.runtime.stop(grace_s=1.0)
    schema = config().schema
    with psycopg.connect(infra.pg_dsn) as conn:
        rows = conn.execute(
            f"SELECT actor, detail->>'created' FROM {schema}.audit_log "
            "WHERE action = 'load_contract' AND target = %s ORDER BY id",
            (f"{project}@v1",),
        ).fetchall()
    assert rows == [("system:contracts-dir", "true"), ("system:contracts-dir", "false")]

    # Different text under a version that exists: the start fails and names the file.
    (folder / "a.yaml").write_text(contract_doc(project, "v1", overlap="{min: 2, max: 4}"))
    runtime = build(config(), settings)
    with pytest.raises(ConfigError, match=r"a\.yaml: version 'v1' of project"):
        runtime.start()
    runtime.db.close()
