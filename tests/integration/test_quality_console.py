"""The console's views of quality (pairwise agreement, a pair's disagreements, progress)
against real Postgres, the real broker and real gRPC with real tokens."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from strata.common.events import OutgoingEvent, make_event
from strata.common.topics import LABELS_SUBMITTED
from strata.v1 import common_pb2, events_pb2, quality_pb2

from .conftest import Infra, produce, wait_until
from .quality_support import Stack, label_event, quality_stack
from .test_quality import model_prediction, new_project

Code = grpc.StatusCode
CLASSES = ["cat", "dog", "bird"]
DAY = 86_400


@pytest.fixture(scope="module")
def stack(infra: Infra) -> Iterator[Stack]:
    with quality_stack(infra) as s:
        yield s


def at(event: OutgoingEvent, epoch_s: float) -> OutgoingEvent:
    """The same label, submitted at `epoch_s`."""
    msg = events_pb2.LabelSubmitted.FromString(event.payload)
    msg.label.submitted_at.FromNanoseconds(int(epoch_s * 1e9))
    return make_event(LABELS_SUBMITTED, event.key, msg)


def sklearn_kappa(x: list[str], y: list[str]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(cohen_kappa_score(x, y, labels=CLASSES))


def db_rows(stack: Stack, sql: str, *args: object) -> list[tuple]:
    with stack.quality.db.transaction() as conn:
        return conn.execute(sql, args).fetchall()


def test_pairwise_agreement_disagreements_and_progress(stack: Stack) -> None:
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    gw = stack.gateway
    manager = gw.annotator(f"mgr-{project}", common_pb2.ROLE_MANAGER, project)
    reviewer = gw.annotator(f"rev-{project}", common_pb2.ROLE_REVIEWER, project)
    annotator = gw.annotator(f"ann-{project}", project=project)

    # Four annotators of different skill and coverage on 20 items: a labels them all, b
    # 0-17, c 5-19, d 0-5 (three days ago); a labels item 0 again, last.
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 20)
    coverage = {"a": range(20), "b": range(18), "c": range(5, 20), "d": range(6)}
    skill = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.8}
    now = time.time()
    item = [f"{project}-{i}" for i in range(20)]
    latest: dict[str, dict[int, tuple[str, float]]] = {name: {} for name in coverage}
    events = []
    for j, (name, items) in enumerate(coverage.items()):
        for i in items:
            right = rng.random() < skill[name]
            value = CLASSES[truth[i] if right else rng.integers(0, 3)]
            t = now - 3 * DAY + i if name == "d" else now - 1800 + 10 * i + j
            latest[name][i] = (value, t)
            events.append(at(label_event(project, item[i], name, value), t))
    redo = "dog" if latest["a"][0][0] != "dog" else "bird"
    latest["a"][0] = (redo, now - 60)
    events.append(at(label_event(project, item[0], "a", redo), now - 60))
    # Gold (a and b disagree on it) and a model-sourced vote: neither counts between people.
    gold = f"{project}-gold"
    events += [
        at(label_event(project, gold, name, v, gold_answer="cat"), now - 900)
        for name, v in zip("abcd", ["cat", "dog", "bird", "cat"], strict=True)
    ]
    model = common_pb2.LABEL_SOURCE_MODEL
    events.append(at(label_event(project, item[19], "model:m0", "dog", source=model), now - 600))
    produce(boot, events)
    auto = f"{project}-auto"
    produce(boot, [model_prediction(project, auto, "dog")])

    def stored() -> bool:
        votes = db_rows(stack, "SELECT count(*) FROM votes WHERE project = %s", project)
        accepted = db_rows(stack, "SELECT state FROM items WHERE item_id = %s", auto)
        return votes[0][0] == len(events) and accepted == [("accepted",)]

    wait_until(stored, 30, "every vote and the model label stored")

    # -- PairwiseAgreement: every pair against scikit-learn on the latest votes ----------
    reply = stack.stub.PairwiseAgreement(
        quality_pb2.PairwiseAgreementRequest(project=project), metadata=manager
    )
    assert list(reply.annotators) == ["a", "b", "c", "d"]  # by labels given: 21, 18, 15, 6
    pairs = {(p.a, p.b): p for p in reply.pairs}
    assert sorted(pairs) == [("a", "b"), ("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")]
    for (a, b), pair in pairs.items():
        shared = sorted(set(latest[a]) & set(latest[b]))
        x = [latest[a][i][0] for i in shared]
        y = [latest[b][i][0] for i in shared]
        assert pair.shared_items == len(shared)
        assert pair.agreed == sum(u == v for u, v in zip(x, y, strict=True))
        if len(shared) < 2:
            assert math.isnan(pair.cohen_kappa)
        else:
            assert pair.cohen_kappa == pytest.approx(sklearn_kappa(x, y), abs=1e-9)
    assert pairs[("c", "d")].shared_items == 1
    top = stack.stub.PairwiseAgreement(
        quality_pb2.PairwiseAgreementRequest(project=project, max_annotators=2), metadata=manager
    )
    assert list(top.annotators) == ["a", "b"] and [(p.a, p.b) for p in top.pairs] == [("a", "b")]

    # -- PairDisagreements: newest first, total beyond the limit, never gold ---------------
    differ = [i for i in range(18) if latest["a"][i][0] != latest["b"][i][0]]
    differ.sort(key=lambda i: -max(latest["a"][i][1], latest["b"][i][1]))
    assert len(differ) >= 3
    items = {
        r[0]: (r[1] or "", r[2])
        for r in db_rows(
            stack, "SELECT item_id, value, state FROM items WHERE project = %s", project
        )
    }
    found = stack.stub.PairDisagreements(
        quality_pb2.PairDisagreementsRequest(project=project, a="a", b="b", limit=3),
        metadata=manager,
    )
    assert found.total == len(differ)
    assert [d.item_id for d in found.items] == [item[i] for i in differ[:3]]
    for d in found.items:
        i = item.index(d.item_id)
        assert (d.value_a, d.value_b) == (latest["a"][i][0], latest["b"][i][0])
        assert (d.consensus_value, d.state) == items[d.item_id]
    every = stack.stub.PairDisagreements(
        quality_pb2.PairDisagreementsRequest(project=project, a="b", b="a"), metadata=manager
    )
    assert len(every.items) == every.total == len(differ)
    assert gold not in {d.item_id for d in every.items}
    assert every.items[0].value_a == latest["b"][differ[0]][0]
    nobody = stack.stub.PairDisagreements(
        quality_pb2.PairDisagreementsRequest(project=project, a="a", b="zed"), metadata=manager
    )
    assert (list(nobody.items), nobody.total) == ([], 0)
    for a, b in (("a", "a"), ("a", ""), ("", "b")):
        with pytest.raises(grpc.RpcError) as err:
            stack.stub.PairDisagreements(
                quality_pb2.PairDisagreementsRequest(project=project, a=a, b=b), metadata=manager
            )
        assert err.value.code() == Code.INVALID_ARGUMENT

    # -- ContestedItems: behind a class's agreement, the items people split on ------------
    for cls in CLASSES:
        answers = {
            i: sorted(latest[name][i][0] for name in latest if i in latest[name]) for i in range(20)
        }
        split = [i for i, vals in answers.items() if len(set(vals)) > 1 and cls in vals]
        split.sort(key=lambda i: (-max(latest[n][i][1] for n in latest if i in latest[n]), item[i]))
        contested = stack.stub.ContestedItems(
            quality_pb2.ContestedItemsRequest(project=project, class_label=cls), metadata=reviewer
        )
        assert contested.total == len(split), cls
        assert [c.item_id for c in contested.items] == [item[i] for i in split], cls
        for c in contested.items:
            assert list(c.values) == answers[item.index(c.item_id)]
            assert (c.consensus_value, c.state) == items[c.item_id]
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ContestedItems(
            quality_pb2.ContestedItemsRequest(project=project), metadata=reviewer
        )
    assert err.value.code() == Code.INVALID_ARGUMENT

    # -- ProjectProgress: counts per bucket add up to what was sent -----------------------
    progress = stack.stub.ProjectProgress(
        quality_pb2.ProjectProgressRequest(project=project), metadata=reviewer
    )
    human = len(events) - 1  # all but the model-sourced vote (gold work is work)
    assert progress.bucket_seconds == 3600
    assert 72 <= len(progress.buckets) <= 74  # three days and a bit, in hours
    assert sum(b.human_labels for b in progress.buckets) == human
    assert sum(b.model_labels for b in progress.buckets) == 2  # the model vote, the auto label
    assert progress.human_labels_last_hour == human - len(coverage["d"])
    by_state = dict.fromkeys(["open", "accepted", "review", "expert"], 0)
    for state, n in db_rows(
        stack,
        "SELECT state, count(*) FROM items WHERE project = %s AND gold_answer IS NULL "
        "GROUP BY state",
        project,
    ):
        by_state[state] = n
    assert dict(progress.items_by_state) == by_state
    assert sum(by_state.values()) == 21  # the 20 pool items and the auto-accepted one
    decided = by_state["accepted"] + by_state["expert"]
    assert sum(b.decided for b in progress.buckets) == decided >= 1
    assert progress.decided_by_model == 1
    [(reviews, still_open)] = db_rows(
        stack,
        "SELECT count(*), count(*) FILTER (WHERE resolved_at IS NULL) FROM reviews "
        "WHERE project = %s",
        project,
    )
    assert sum(b.reviews_opened for b in progress.buckets) == reviews
    assert progress.open_reviews == still_open
    first = progress.buckets[0].start.seconds
    assert first <= now - 3 * DAY < first + 3600
    starts = [b.start.seconds for b in progress.buckets]
    assert starts == list(range(first, first + 3600 * len(starts), 3600))
    # A minute over three days is more than 500 buckets: the bucket doubles to fit.
    fine = stack.stub.ProjectProgress(
        quality_pb2.ProjectProgressRequest(project=project, bucket_seconds=60), metadata=reviewer
    )
    assert fine.bucket_seconds == 60 * 16 and len(fine.buckets) <= 500
    old = [b for b in fine.buckets if b.start.seconds < now - 2 * DAY]
    assert sum(b.human_labels for b in old) == len(coverage["d"])
    assert sum(b.human_labels for b in fine.buckets) == human

    # -- who may ask ------------------------------------------------------------------------
    for metadata in (annotator, reviewer):
        with pytest.raises(grpc.RpcError) as err:
            stack.stub.PairwiseAgreement(
                quality_pb2.PairwiseAgreementRequest(project=project), metadata=metadata
            )
        assert err.value.code() in (Code.PERMISSION_DENIED, Code.NOT_FOUND)
        with pytest.raises(grpc.RpcError) as err:
            stack.stub.PairDisagreements(
                quality_pb2.PairDisagreementsRequest(project=project, a="a", b="b"),
                metadata=metadata,
            )
        assert err.value.code() in (Code.PERMISSION_DENIED, Code.NOT_FOUND)
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ProjectProgress(
            quality_pb2.ProjectProgressRequest(project=project), metadata=annotator
        )
    assert err.value.code() in (Code.PERMISSION_DENIED, Code.NOT_FOUND)
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ContestedItems(
            quality_pb2.ContestedItemsRequest(project=project, class_label="cat"),
            metadata=annotator,
        )
    assert err.value.code() in (Code.PERMISSION_DENIED, Code.NOT_FOUND)


def test_empty_unknown_and_missing_projects(stack: Stack) -> None:
    project = new_project(stack)
    admin = stack.gateway.admin
    progress = stack.stub.ProjectProgress(
        quality_pb2.ProjectProgressRequest(project=project), metadata=admin
    )
    assert list(progress.buckets) == [] and progress.bucket_seconds == 3600
    assert dict(progress.items_by_state) == {"open": 0, "accepted": 0, "review": 0, "expert": 0}
    assert (progress.decided_by_model, progress.open_reviews) == (0, 0)
    assert progress.human_labels_last_hour == 0
    pairwise = stack.stub.PairwiseAgreement(
        quality_pb2.PairwiseAgreementRequest(project=project), metadata=admin
    )
    assert (list(pairwise.annotators), list(pairwise.pairs)) == ([], [])
    none = stack.stub.PairDisagreements(
        quality_pb2.PairDisagreementsRequest(project=project, a="a", b="b"), metadata=admin
    )
    assert (list(none.items), none.total) == ([], 0)

    calls = [
        lambda p: stack.stub.PairwiseAgreement(
            quality_pb2.PairwiseAgreementRequest(project=p), metadata=admin
        ),
        lambda p: stack.stub.PairDisagreements(
            quality_pb2.PairDisagreementsRequest(project=p, a="a", b="b"), metadata=admin
        ),
        lambda p: stack.stub.ProjectProgress(
            quality_pb2.ProjectProgressRequest(project=p), metadata=admin
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as err:
            call("")
        assert err.value.code() == Code.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as err:
            call("no-such-project")
        assert err.value.code() == Code.NOT_FOUND
