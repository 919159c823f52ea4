"""The quality service against real Postgres, the real broker, real gRPC (with a real gateway)."""

from __future__ import annotations

import csv
import io
import json
import random
import time
import uuid
from collections.abc import Iterator

import grpc
import pandas as pd
import pytest
from strata.common.events import make_event
from strata.common.predictions import prediction_events
from strata.common.topics import (
    ANNOTATORS_STATUS,
    DEADLETTER,
    ITEMS_IMPORTED,
    LABELS_CONSENSUS,
    PREDICTIONS,
    REVIEWS_REQUESTED,
    TRAINING_FEEDBACK,
    TRUST_CURVES,
)
from strata.sampler.handlers import propagated_copy
from strata.v1 import common_pb2, events_pb2, quality_pb2

from .conftest import Infra, produce, read_topic, wait_until
from .quality_support import Stack, label_event, quality_contract, quality_stack

Code = grpc.StatusCode


@pytest.fixture
def stack(infra: Infra) -> Iterator[Stack]:
    with quality_stack(infra) as s:
        yield s


def new_project(stack: Stack, **sections: str) -> str:
    project = f"q{uuid.uuid4().hex[:8]}"
    stack.gateway.load_contract(quality_contract(project, **sections))

    def arrived() -> bool:
        with stack.quality.db.transaction() as conn:
            return bool(
                conn.execute("SELECT 1 FROM contracts WHERE project = %s", (project,)).fetchone()
            )

    wait_until(arrived, 20, "the contract to reach quality over strata.contracts")
    return project


def consensus_for(stack: Stack, item_id: str, expect: int = 1, **kw: float) -> list:
    return read_topic(
        stack.quality.config.kafka_bootstrap,
        LABELS_CONSENSUS,
        lambda m: m.consensus.item_id == item_id,
        expect,
        **kw,
    )


def item_state(stack: Stack, item_id: str) -> tuple | None:
    with stack.quality.db.transaction() as conn:
        return conn.execute(
            "SELECT state, votes, value FROM items WHERE item_id = %s", (item_id,)
        ).fetchone()


def test_consensus_adaptive_overlap_review_and_expert(stack: Stack) -> None:
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    a, b, c = (f"{project}-{n}" for n in "abc")
    produce(boot, [label_event(project, a, f"ann{i}", "cat") for i in range(3)])
    produce(boot, [label_event(project, b, "ann0", "cat"), label_event(project, b, "ann1", "cat")])
    produce(boot, [label_event(project, b, "ann2", "dog")])

    accepted = consensus_for(stack, a)
    assert len(accepted) == 1
    msg = accepted[0]
    assert msg.consensus.status == common_pb2.CONSENSUS_STATUS_ACCEPTED
    assert msg.consensus.value == "cat"
    assert msg.consensus.consensus_score >= 0.9
    assert msg.consensus.method == common_pb2.CONSENSUS_METHOD_DAWID_SKENE
    assert sorted(v.annotator_id for v in msg.consensus.votes) == ["ann0", "ann1", "ann2"]
    assert all(0 < v.weight <= 1 for v in msg.consensus.votes)
    assert msg.routing.project == project and msg.routing.ontology_version == "v1"

    # 2 vs 1 stays under 0.9: one more annotator is asked for, not more.
    more = consensus_for(stack, b)
    assert [m.requested_overlap for m in more] == [4]
    assert more[0].consensus.status == common_pb2.CONSENSUS_STATUS_NEEDS_REVIEW
    produce(boot, [label_event(project, b, "ann3", "cat")])
    decided = consensus_for(stack, b, expect=2)
    assert decided[-1].consensus.status == common_pb2.CONSENSUS_STATUS_ACCEPTED
    assert decided[-1].consensus.value == "cat"

    # Total disagreement up to overlap.max: expert review.
    votes = ["cat", "dog", "bird", "cat", "dog"]
    produce(boot, [label_event(project, c, f"ann{i}", v) for i, v in enumerate(votes)])
    reviews = read_topic(boot, REVIEWS_REQUESTED, lambda m: m.item_id == c, 1)
    assert len(reviews) == 1
    assert reviews[0].kind == events_pb2.REVIEW_KIND_EXPERT
    assert reviews[0].routing.reason == common_pb2.ROUTING_REASON_REVIEW
    assert "overlap.max" in reviews[0].detail
    assert item_state(stack, c)[0] == "review"

    gw = stack.gateway
    reviewer = gw.annotator(f"rev-{project}", common_pb2.ROLE_REVIEWER, project)
    annotator = gw.annotator(f"ann-{project}", project=project)
    resolve = stack.stub.ResolveReview
    request = quality_pb2.ResolveReviewRequest(item_id=c, value="dog", note="tail visible")
    with pytest.raises(grpc.RpcError) as err:
        resolve(request)
    assert err.value.code() == Code.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as err:
        resolve(request, metadata=annotator)
    assert err.value.code() == Code.PERMISSION_DENIED
    assert "needs the reviewer role" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        resolve(quality_pb2.ResolveReviewRequest(item_id=c, value="fish"), metadata=reviewer)
    assert err.value.code() == Code.INVALID_ARGUMENT
    assert "cat, dog, bird" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        resolve(quality_pb2.ResolveReviewRequest(item_id=a, value="dog"), metadata=reviewer)
    assert err.value.code() == Code.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as err:
        resolve(quality_pb2.ResolveReviewRequest(item_id="nope", value="dog"), metadata=reviewer)
    assert err.value.code() == Code.NOT_FOUND

    reply = resolve(request, metadata=reviewer)
    assert reply.consensus.status == common_pb2.CONSENSUS_STATUS_EXPERT
    assert reply.consensus.value == "dog"
    expert = consensus_for(stack, c)
    assert [m.consensus.status for m in expert] == [common_pb2.CONSENSUS_STATUS_EXPERT]
    assert item_state(stack, c)[0] == "expert"
    with pytest.raises(grpc.RpcError) as err:
        resolve(request, metadata=reviewer)
    assert err.value.code() == Code.FAILED_PRECONDITION

    shown = stack.stub.ItemConsensus(quality_pb2.ItemConsensusRequest(item_id=a), metadata=reviewer)
    assert shown.consensus.value == "cat" and len(shown.consensus.votes) == 3


def test_expert_label_from_a_review_task_decides(stack: Stack) -> None:
    project = new_project(stack, overlap="{min: 2, max: 2}")
    boot = stack.quality.config.kafka_bootstrap
    item = f"{project}-x"
    produce(
        boot, [label_event(project, item, "a1", "cat"), label_event(project, item, "a2", "dog")]
    )
    read_topic(boot, REVIEWS_REQUESTED, lambda m: m.item_id == item, 1)
    produce(
        boot,
        [label_event(project, item, "expert1", "bird", source=common_pb2.LABEL_SOURCE_EXPERT)],
    )
    decided = consensus_for(stack, item)
    assert [(m.consensus.status, m.consensus.value) for m in decided] == [
        (common_pb2.CONSENSUS_STATUS_EXPERT, "bird")
    ]


def test_an_expert_against_a_unanimous_crowd_gets_a_second_opinion(stack: Stack) -> None:
    # Two agreeing votes stay under 0.95 with unknown annotators: review after overlap.max.
    project = new_project(stack, overlap="{min: 2, max: 2}", consensus_threshold="0.95")
    boot = stack.quality.config.kafka_bootstrap
    item = f"{project}-x"
    first, second = f"rev1-{project}", f"rev2-{project}"
    first_md = stack.gateway.annotator(first, common_pb2.ROLE_REVIEWER, project)
    produce(
        boot, [label_event(project, item, "a1", "cat"), label_event(project, item, "a2", "cat")]
    )
    read_topic(boot, REVIEWS_REQUESTED, lambda m: m.item_id == item, 1)
    expert = common_pb2.LABEL_SOURCE_EXPERT
    produce(boot, [label_event(project, item, first, "bird", source=expert)])

    reviews = read_topic(boot, REVIEWS_REQUESTED, lambda m: m.item_id == item, 2)
    assert len(reviews) == 2
    again = reviews[1]
    assert again.kind == events_pb2.REVIEW_KIND_EXPERT
    assert first in again.detail and "2 agreeing votes for 'cat'" in again.detail
    assert again.current.value == "cat"
    assert item_state(stack, item)[0] == "review"
    with stack.quality.db.transaction() as conn:
        rows = conn.execute(
            "SELECT resolved_by, value FROM reviews WHERE item_id = %s ORDER BY review_id",
            (item,),
        ).fetchall()
    assert rows == [(first, "bird"), (None, None)]
    # The first expert cannot settle their own dispute through the API either.
    with pytest.raises(grpc.RpcError) as err:
        stack.stub.ResolveReview(
            quality_pb2.ResolveReviewRequest(item_id=item, value="bird"), metadata=first_md
        )
    assert err.value.code() == Code.FAILED_PRECONDITION
    assert "second opinion" in err.value.details()

    produce(boot, [label_event(project, item, second, "cat", source=expert)])
    decided = consensus_for(stack, item)
    assert [(m.consensus.status, m.consensus.value) for m in decided] == [
        (common_pb2.CONSENSUS_STATUS_EXPERT, "cat")
    ]
    assert [v.annotator_id for v in decided[0].consensus.votes if v.weight == 1.0] == [second]
    with stack.quality.db.transaction() as conn:
        row = conn.execute(
            "SELECT state, value, decided_by FROM items WHERE item_id = %s", (item,)
        ).fetchone()
    assert row == ("expert", "cat", second)


def snapshot(stack: Stack) -> dict[str, list]:
    tables = {
        "items": "SELECT item_id, state, votes, value, consensus_score, requested_overlap "
        "FROM items ORDER BY 1",
        "votes": "SELECT label_id, item_id, annotator_id, value FROM votes ORDER BY 1",
        "annotators": "SELECT project, annotator_id, gold_answered, gold_correct, status "
        "FROM annotators ORDER BY 1, 2",
        "reviews": "SELECT item_id, kind, resolved_at FROM reviews ORDER BY 1",
        "outbox": "SELECT topic, count(*) FROM outbox GROUP BY 1 ORDER BY 1",
    }
    with stack.quality.db.transaction() as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in tables.items()}


def test_same_events_twice_leave_every_table_unchanged(stack: Stack) -> None:
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    events = [label_event(project, f"{project}-{i % 5}", f"ann{i // 5}", "cat") for i in range(15)]
    events += [
        label_event(project, f"{project}-gold-{i}", "ann0", "dog", gold_answer="dog")
        for i in range(3)
    ]
    produce(boot, events)
    wait_until(lambda: len(consensus_for(stack, f"{project}-4", timeout_s=1)) == 1, 30, "consensus")
    wait_until(lambda: len(snapshot(stack)["votes"]) >= 18, 20, "every vote stored")
    before = snapshot(stack)
    # The same events again (a redelivery), and the same labels under new event ids
    # (a republish): nothing may change.
    produce(boot, events)
    republished = []
    for e in events:
        msg = events_pb2.LabelSubmitted.FromString(e.payload)
        republished.append(make_event(e.topic, e.key, msg))
    produce(boot, republished)
    marker = label_event(project, f"{project}-marker", "ann9", "cat")
    produce(boot, [marker])
    wait_until(lambda: item_state(stack, f"{project}-marker") is not None, 20, "marker vote")
    after = snapshot(stack)
    after["items"] = [r for r in after["items"] if r[0] != f"{project}-marker"]
    after["votes"] = [r for r in after["votes"] if r[1] != f"{project}-marker"]
    assert after == before
    assert [m.consensus.item_id for m in consensus_for(stack, f"{project}-0")] == [f"{project}-0"]


def test_spammer_is_blocked_through_gold_and_careful_annotator_is_not(stack: Stack) -> None:
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    rng = random.Random(7)
    events = []
    for i in range(20):
        answer = rng.choice(["cat", "dog", "bird"])
        events.append(
            label_event(project, f"{project}-g{i}", "careful", answer, gold_answer=answer)
        )
        spam = "cat" if i % 3 else "dog"  # answers without looking
        events.append(label_event(project, f"{project}-g{i}", "spammer", spam, gold_answer=answer))
    produce(boot, events)

    def changes() -> list:
        return read_topic(boot, ANNOTATORS_STATUS, lambda m: m.project == project, 1, timeout_s=2)

    # Under the threshold but not surely so: retrain first; blocked once the bound is clear.
    wait_until(
        lambda: [c.status for c in changes()][-1:] == [common_pb2.ANNOTATOR_STATUS_BLOCKED],
        30,
        "spammer blocked",
    )
    seen = changes()
    assert {m.annotator_id for m in seen} == {"spammer"}
    assert set(m.status for m in seen) <= {
        common_pb2.ANNOTATOR_STATUS_RETRAIN,
        common_pb2.ANNOTATOR_STATUS_BLOCKED,
    }
    blocked = seen[-1]
    assert blocked.gold_answered >= 5
    assert blocked.gold_accuracy_lower_bound < blocked.gold_accuracy < 0.8
    assert "threshold 0.80" in blocked.reason


def quality_standing(stack: Stack, project: str, annotator_id: str) -> tuple | None:
    with stack.quality.db.transaction() as conn:
        return conn.execute(
            "SELECT status, gold_answered FROM annotators WHERE project = %s AND annotator_id = %s",
            (project, annotator_id),
        ).fetchone()


def test_a_block_holds_against_late_gold_until_a_person_lifts_it(stack: Stack) -> None:
    """Gold answers in flight when the block landed (right ones, even) do not let the
    spammer back in; a manager's unblock, published by the gateway, does, and then gold
    judges afresh."""
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap

    def gold(n: int, right: bool, start: int) -> list:
        return [
            label_event(
                project, f"{project}-g{i}", "spammer", "cat" if right else "dog", gold_answer="cat"
            )
            for i in range(start, start + n)
        ]

    def statuses() -> list:
        return [
            m.status
            for m in read_topic(
                boot, ANNOTATORS_STATUS, lambda m: m.project == project, 1, timeout_s=2
            )
        ]

    produce(boot, gold(5, False, 0))
    wait_until(lambda: statuses()[-1:] == [common_pb2.ANNOTATOR_STATUS_BLOCKED], 30, "blocked")
    # Right answers after the block: 5 of 10 would be "retrain" by the figures alone.
    produce(boot, gold(5, True, 5))
    wait_until(lambda: quality_standing(stack, project, "spammer") == ("blocked", 10), 30, "10")
    assert statuses() == [common_pb2.ANNOTATOR_STATUS_BLOCKED]
    # A manager unblocks (the gateway publishes what it applied); quality records it
    # and, on the next wrong gold answers, blocks again.
    unblock = make_event(
        ANNOTATORS_STATUS.name,
        "spammer",
        events_pb2.AnnotatorStatusChanged(
            routing=common_pb2.RoutingMetadata(source_service="gateway", project=project),
            annotator_id="spammer",
            project=project,
            status=common_pb2.ANNOTATOR_STATUS_ACTIVE,
            reason="set by boss: second chance",
        ),
    )
    produce(boot, [unblock])
    wait_until(lambda: quality_standing(stack, project, "spammer") == ("active", 10), 30, "active")
    produce(boot, gold(5, False, 10))
    wait_until(lambda: statuses()[-1:] == [common_pb2.ANNOTATOR_STATUS_BLOCKED], 30, "again")
    assert statuses()[0] == common_pb2.ANNOTATOR_STATUS_BLOCKED


def test_a_changed_answer_replaces_its_vote_everywhere_it_counted(stack: Stack) -> None:
    """AmendLabel's events: the vote is replaced (never added), an undecided item is
    decided on the new answer, an accepted item whose deciding answer was withdrawn goes
    back to review, gold is corrected by the difference, and a redelivery does nothing."""
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    open_item, decided, gold_item = (f"{project}-{n}" for n in ("open", "decided", "gold"))
    ids = {name: uuid.uuid4().hex for name in ("open", "decided", "gold")}
    produce(
        boot,
        [
            label_event(project, open_item, "ann0", "cat"),
            label_event(project, open_item, "ann1", "dog", label_id=ids["open"]),
            *(label_event(project, decided, f"ann{i}", "cat") for i in range(2)),
            label_event(project, decided, "ann2", "cat", label_id=ids["decided"]),
            label_event(project, gold_item, "ann5", "dog", gold_answer="cat", label_id=ids["gold"]),
        ],
    )
    assert consensus_for(stack, decided)[0].consensus.value == "cat"
    wait_until(lambda: quality_standing(stack, project, "ann5") == ("active", 1), 20, "gold")
    changes = [
        label_event(project, open_item, "ann1", "cat", label_id=ids["open"], revision=1),
        label_event(project, decided, "ann2", "dog", label_id=ids["decided"], revision=1),
        label_event(
            project, gold_item, "ann5", "cat", gold_answer="cat", label_id=ids["gold"], revision=1
        ),
    ]
    produce(boot, changes)
    reviews = read_topic(boot, REVIEWS_REQUESTED, lambda m: m.item_id == decided, 1)
    assert [r.kind for r in reviews] == [events_pb2.REVIEW_KIND_RELABEL]
    assert "changed their answer from 'cat' to 'dog'" in reviews[0].detail
    assert list(reviews[0].suspected_label_ids) == [ids["decided"]]
    produce(boot, [label_event(project, open_item, "ann2", "cat")])
    settled = consensus_for(stack, open_item)
    assert settled[-1].consensus.status == common_pb2.CONSENSUS_STATUS_ACCEPTED
    assert {v.annotator_id: v.value for v in settled[-1].consensus.votes} == {
        "ann0": "cat",
        "ann1": "cat",
        "ann2": "cat",
    }
    with stack.quality.db.transaction() as conn:
        gold = conn.execute(
            "SELECT gold_answered, gold_correct FROM annotators "
            "WHERE project = %s AND annotator_id = 'ann5'",
            (project,),
        ).fetchone()
    assert gold == (1, 1)

    # Redelivered, the changes do nothing more; a change of a label never stored is
    # dead-lettered (one after each change, on its key: once they are, all were read).
    def tables() -> dict[str, list]:
        return {k: v for k, v in snapshot(stack).items() if k != "outbox"}

    before = tables()
    strays = [label_event(project, i, "ann9", "dog", revision=1) for i in (open_item, decided)]
    strays.append(label_event(project, gold_item, "ann9", "dog", gold_answer="cat", revision=1))
    produce(boot, [*changes, *strays])
    letters = read_topic(
        boot,
        DEADLETTER,
        lambda m: (
            m.service.startswith("quality")
            and "nothing to change" in m.reason
            and m.key.decode() in (open_item, decided, gold_item)
        ),
        3,
    )
    assert len(letters) == 3
    assert tables() == before
    assert item_state(stack, open_item)[1] == 3 and item_state(stack, decided)[0] == "review"


def test_bad_labels_are_dead_lettered_and_the_rest_flow(stack: Stack) -> None:
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    item = f"{project}-mixed"
    bad_class = label_event(project, item, "ann0", "fish")
    bad_version = label_event(project, item, "ann1", "cat", version="v9")
    no_annotator = label_event(project, item, "", "cat")
    good = [label_event(project, item, f"ann{i}", "cat") for i in range(3)]
    produce(boot, [bad_class, *good[:1], bad_version, no_annotator, *good[1:]])
    assert consensus_for(stack, item)[0].consensus.status == common_pb2.CONSENSUS_STATUS_ACCEPTED
    letters = read_topic(
        boot,
        DEADLETTER,
        lambda m: m.key.decode() == item and m.service.startswith("quality"),
        3,
    )
    reasons = sorted(m.reason for m in letters)
    assert len(reasons) == 3
    assert any("'fish' is not in contract" in r for r in reasons)
    assert any("'v9'" in r and "has not received" in r for r in reasons)
    assert any("missing annotator_id" in r for r in reasons)
    assert item_state(stack, item)[1] == 3


def exported(stack: Stack, project: str, fmt: int) -> bytes:
    """The project's accepted labels as ExportLabels streams them (as an admin)."""
    request = quality_pb2.ExportLabelsRequest(project=project, format=fmt)  # type: ignore[arg-type]
    return b"".join(r.chunk for r in stack.stub.ExportLabels(request, metadata=stack.gateway.admin))


def model_prediction(
    project: str,
    item: str,
    value: str,
    version: str = "m1",
    *,
    auto: bool = True,
    spot: bool = False,
    classes: tuple[str, ...] = ("cat", "dog", "bird"),
):  # type: ignore[no-untyped-def]
    """A `predictions` event as inference publishes it (auto-accepted or spot-checked)."""
    probs = [0.97 if c == value else 0.03 / (len(classes) - 1) for c in classes]
    msg = events_pb2.PredictionMade(
        routing=common_pb2.RoutingMetadata(project=project, source_service="inference"),
        prediction=common_pb2.Prediction(
            item_id=item,
            project=project,
            model_version=version,
            classes=list(classes),
            probabilities=probs,
            predicted_class=value,
            confidence=0.97,
            calibrated=True,
            auto_accept=auto,
            spot_check=spot,
        ),
    )
    msg.prediction.predicted_at.GetCurrentTime()
    return prediction_events(msg.routing, [msg.prediction])[0]


def test_duplicates_labelled_from_their_original_join_the_dataset_as_copies(
    stack: Stack,
) -> None:
    """The sampler's propagated labels (its own propagated_copy) become decided items,
    exported with their original's score and votes and marked as copies; a propagated
    label never overwrites an item people voted on."""
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    original, copy, voted = (f"{project}-{n}" for n in ("original", "copy", "voted"))
    produce(boot, [label_event(project, original, f"ann{i}", "cat") for i in range(3)])
    produce(boot, [label_event(project, voted, "ann0", "dog")])
    decided = consensus_for(stack, original)[0].consensus
    # The vote and the propagations travel under different keys (so partitions): the
    # propagation must not be read before the vote it is meant to lose against.
    wait_until(lambda: item_state(stack, voted) == ("open", 1, None), 20, "the vote")

    def propagate(to: str) -> object:
        # One key for both: the copy is stored after the other was read.
        return make_event(
            LABELS_CONSENSUS,
            copy,
            events_pb2.ConsensusUpdated(
                routing=common_pb2.RoutingMetadata(project=project, source_service="sampler"),
                consensus=propagated_copy(decided, to, project),
            ),
        )

    produce(boot, [propagate(voted), propagate(copy)])
    wait_until(lambda: item_state(stack, copy) == ("accepted", 0, "cat"), 20, "the copy")
    rows = {
        r["item_id"]: r
        for r in map(
            json.loads, exported(stack, project, quality_pb2.EXPORT_FORMAT_JSONL).splitlines()
        )
    }
    assert set(rows) == {original, copy}
    assert rows[copy]["propagated_from"] == original and rows[original]["propagated_from"] is None
    assert rows[copy]["method"] == "propagated"
    assert rows[copy]["consensus_score"] == rows[original]["consensus_score"]
    assert [(v["annotator_id"], v["value"]) for v in rows[copy]["votes"]] == [
        (v["annotator_id"], v["value"]) for v in rows[original]["votes"]
    ]
    assert item_state(stack, voted) == ("open", 1, None)


def test_export_rows_carry_what_each_item_is_and_what_each_voter_saw(stack: Stack) -> None:
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    item, gold = f"{project}-i", f"{project}-g"

    def imported(item_id: str, text: str, answer: str = "") -> object:
        msg = events_pb2.ItemImported(
            routing=common_pb2.RoutingMetadata(project=project, source_service="sampler"),
            item=common_pb2.Item(
                item_id=item_id,
                project=project,
                external_id=f"ext-{text}",
                content=common_pb2.ItemContent(text=text),
                metadata={"source": "forum"},
            ),
            gold_answer=answer,
        )
        # One key for both: once the pool item is kept, the gold one was read.
        return make_event(ITEMS_IMPORTED, item, events_pb2.ItemsImported(items=[msg]))

    def kept() -> list:
        with stack.quality.db.transaction() as conn:
            return conn.execute(
                "SELECT item_id, gold_answer FROM item_data WHERE project = %s ORDER BY 1",
                (project,),
            ).fetchall()

    produce(boot, [imported(gold, "a dog barks", "dog"), imported(item, "a cat naps")])
    wait_until(lambda: len(kept()) == 2, 20, "the items' content to reach quality")
    # A gold item is kept (an imported answer on it is scored), and never exported.
    assert kept() == sorted([(gold, "dog"), (item, None)])
    shown = common_pb2.PreLabel(value="dog", confidence=0.64, model_version="v7")
    produce(
        boot,
        [
            label_event(project, item, f"ann{i}", "cat", active_ms=900 + i, prelabel=shown)
            for i in range(3)
        ],
    )
    consensus_for(stack, item)
    rows = [
        json.loads(line)
        for line in exported(stack, project, quality_pb2.EXPORT_FORMAT_JSONL).splitlines()
    ]
    assert len(rows) == 1
    row = rows[0]
    assert (row["item_id"], row["external_id"]) == (item, "ext-a cat naps")
    assert row["data"] == {"text": "a cat naps", "metadata": {"source": "forum"}}
    assert sorted(v["active_ms"] for v in row["votes"]) == [900, 901, 902]
    assert all(
        v["prelabel"] == {"value": "dog", "confidence": 0.64, "model_version": "v7"}
        for v in row["votes"]
    )
    (task,) = json.loads(exported(stack, project, quality_pb2.EXPORT_FORMAT_LABEL_STUDIO))
    assert task["data"]["text"] == "a cat naps" and task["data"]["external_id"] == "ext-a cat naps"
    (line,) = csv.DictReader(
        io.StringIO(exported(stack, project, quality_pb2.EXPORT_FORMAT_CSV).decode())
    )
    assert (line["external_id"], line["text"], line["value"]) == (
        "ext-a cat naps",
        "a cat naps",
        "cat",
    )
    frame = pd.read_parquet(io.BytesIO(exported(stack, project, quality_pb2.EXPORT_FORMAT_PARQUET)))
    assert list(frame["external_id"]) == ["ext-a cat naps"] and len(frame["votes"][0]) == 3
    with pytest.raises(grpc.RpcError) as refused:
        exported(stack, project, 9)
    assert refused.value.code() == Code.INVALID_ARGUMENT


def test_model_labels_are_marked_and_humans_overrule_them(stack: Stack) -> None:
    project = new_project(stack)
    boot = stack.quality.config.kafka_bootstrap
    auto, human, newer, spot = (f"{project}-{n}" for n in ("auto", "human", "newer", "spot"))
    produce(boot, [label_event(project, human, f"ann{i}", "cat") for i in range(3)])
    assert consensus_for(stack, human)[0].consensus.value == "cat"
    produce(
        boot,
        [
            model_prediction(project, auto, "dog"),
            model_prediction(project, human, "dog"),  # humans decided it: the model does not
            model_prediction(project, newer, "bird"),
            model_prediction(project, spot, "dog", auto=False, spot=True),
            model_prediction(project, f"{project}-bad", "fish", classes=("cat", "fish")),
        ],
    )
    [label] = consensus_for(stack, auto)
    c = label.consensus
    assert c.method == common_pb2.CONSENSUS_METHOD_MODEL_AUTO_ACCEPT
    assert c.status == common_pb2.CONSENSUS_STATUS_ACCEPTED and c.value == "dog"
    assert c.consensus_score == pytest.approx(0.97)
    assert [(v.annotator_id, v.source) for v in c.votes] == [
        ("model:m1", common_pb2.LABEL_SOURCE_MODEL)
    ]
    assert label.routing.attributes["auto_accept"] == "model"
    assert label.routing.attributes["model_version"] == "m1"
    assert item_state(stack, auto) == ("accepted", 0, "dog")
    assert [m.consensus.value for m in consensus_for(stack, human)] == ["cat"]
    assert item_state(stack, spot) is None  # a spot check waits for humans
    # Only the bad prediction is dead-lettered, not the others of its message.
    dead = read_topic(
        boot,
        DEADLETTER,
        lambda m: m.original_topic == PREDICTIONS.name and f"{project}-".encode() in m.payload,
        1,
        timeout_s=20,
    )
    assert len(dead) == 1 and "'fish' is not in contract" in dead[0].reason
    (bad,) = events_pb2.PredictionsMade.FromString(dead[0].payload).predictions
    assert bad.item_id == f"{project}-bad"

    # A newer model's auto label replaces an older one; humans overrule both.
    produce(boot, [model_prediction(project, newer, "cat", "m2")])
    assert [m.consensus.value for m in consensus_for(stack, newer, 2)] == ["bird", "cat"]
    produce(boot, [label_event(project, auto, f"ann{i}", "bird") for i in range(3)])
    produce(boot, [label_event(project, spot, f"ann{i}", "dog") for i in range(3)])
    decided = consensus_for(stack, auto, 2)
    assert decided[-1].consensus.method == common_pb2.CONSENSUS_METHOD_DAWID_SKENE
    assert decided[-1].consensus.value == "bird"
    assert consensus_for(stack, spot)[0].consensus.value == "dog"
    wait_until(lambda: item_state(stack, auto) == ("accepted", 3, "bird"), 20, "human decision")

    admin = stack.gateway.admin
    report = json.loads(
        stack.stub.DatasetReport(
            quality_pb2.DatasetReportRequest(project=project), metadata=admin
        ).report_json
    )
    assert report["model_labels"]["auto_accepted"] == 1  # `newer`; `auto` is human now
    assert report["model_labels"]["spot_checked"] == 1
    assert report["model_labels"]["spot_check_agreement"] == 1.0
    assert any("carry model labels" in n for n in report["limitations"])
    rows = {
        r["item_id"]: r
        for r in map(
            json.loads,
            exported(stack, project, quality_pb2.EXPORT_FORMAT_JSONL).splitlines(),
        )
    }
    assert rows[newer]["model_label"] and rows[newer]["method"] == "model_auto_accept"
    assert [(v["annotator_id"], v["source"]) for v in rows[newer]["votes"]] == [
        ("model:m2", "model")
    ]
    assert not rows[auto]["model_label"] and len(rows[auto]["votes"]) == 3
    studio = {
        t["data"]["item_id"]: t
        for t in json.loads(exported(stack, project, quality_pb2.EXPORT_FORMAT_LABEL_STUDIO))
    }
    assert studio[newer]["annotations"] == []
    assert studio[newer]["predictions"][0]["model_version"] == "m2"


def test_report_export_and_label_errors(infra: Infra) -> None:
    with quality_stack(
        infra,
        estimate_interval_s=0.3,
        label_error_interval_s=0.3,
        label_error_min_items=10,
        label_error_min_model_accuracy=0.6,
    ) as stack:
        project = new_project(stack)
        boot = stack.quality.config.kafka_bootstrap
        classes = ["cat", "dog", "bird"]
        rng = random.Random(3)
        truth = {f"{project}-{i}": classes[i % 3] for i in range(30)}
        events = []
        for item, answer in truth.items():
            for ann in ("good1", "good2", "good3"):
                events.append(label_event(project, item, ann, answer))
        for i in range(10):
            answer = classes[i % 3]
            events.append(
                label_event(project, f"{project}-g{i}", "good1", answer, gold_answer=answer)
            )
            events.append(
                label_event(
                    project, f"{project}-g{i}", "good2", rng.choice(classes), gold_answer=answer
                )
            )
        produce(boot, events)
        wait_until(
            lambda: (
                len(
                    read_topic(
                        boot,
                        LABELS_CONSENSUS,
                        lambda m: m.consensus.project == project,
                        30,
                        timeout_s=2,
                    )
                )
                >= 30
            ),
            40,
            "30 accepted items",
        )
        admin = stack.gateway.admin

        def fetch() -> tuple[quality_pb2.DatasetReportResponse, dict]:  # type: ignore[type-arg]
            got = stack.stub.DatasetReport(
                quality_pb2.DatasetReportRequest(project=project), metadata=admin
            )
            return got, json.loads(got.report_json)

        # The gold votes travel on other partitions than the 30 items' votes: wait for
        # all twenty to be stored before reading the trust curve.
        wait_until(
            lambda: fetch()[1]["trust_curve"]["gold_items"] == 10, 30, "all ten gold items stored"
        )
        report, data = fetch()
        assert data["items"]["by_state"] == {"accepted": 30}
        assert data["agreement"]["overall"]["krippendorff_alpha"] > 0.5
        assert data["agreement"]["done"] is True
        assert {a["annotator_id"] for a in data["annotators"]} == {"good1", "good2", "good3"}
        assert data["coverage"] == {"cat": 10, "dog": 10, "bird": 10}
        assert report.html.startswith("<!doctype html>") and report.html.count("<img") >= 4
        # The trust curve on the ten gold items (two votes each), in the report and to
        # training (strata.quality.trust), monotone in the score.
        curve = data["trust_curve"]
        assert curve["gold_items"] == 10 and 0 < curve["gold_right"] <= 10
        assert curve["right"] == sorted(curve["right"])

        def on_all_gold() -> list[events_pb2.TrustCurveFitted]:
            every = read_topic(boot, TRUST_CURVES, lambda m: m.curve.project == project, 99, 2)
            return [m for m in every if m.curve.gold == 10]

        wait_until(lambda: bool(on_all_gold()), 30, "a trust curve on all ten gold items")
        sent = on_all_gold()[-1].curve
        assert list(sent.right) == sorted(sent.right) and sent.HasField("fitted_at")

        jsonl = exported(stack, project, quality_pb2.EXPORT_FORMAT_JSONL)
        rows = [json.loads(line) for line in jsonl.splitlines()]
        assert len(rows) == 30
        assert all(len(r["votes"]) == 3 and r["ontology_version"] == "v1" for r in rows)
        assert {r["value"] for r in rows if r["item_id"] == f"{project}-0"} == {"cat"}
        studio = json.loads(exported(stack, project, quality_pb2.EXPORT_FORMAT_LABEL_STUDIO))
        assert len(studio) == 30
        assert studio[0]["annotations"][0]["result"][0]["value"]["choices"] in (
            ["cat"],
            ["dog"],
            ["bird"],
        )

        # The model confidently disagrees with three accepted labels: they go to review,
        # but only from a model that gets the gold items right.
        wrong = [f"{project}-0", f"{project}-1", f"{project}-2"]
        gold = {f"{project}-g{i}": classes[i % 3] for i in range(10)}

        def predictions(version: str, gold_right: bool) -> list:  # type: ignore[type-arg]
            events = []
            for item, answer in [*truth.items(), *gold.items()]:
                probs = [0.05, 0.05, 0.05]
                if item in wrong or (item in gold and not gold_right):
                    probs[(classes.index(answer) + 1) % 3] = 0.9
                else:
                    probs[classes.index(answer)] = 0.9
                msg = events_pb2.PredictionMade(
                    prediction=common_pb2.Prediction(
                        item_id=item,
                        project=project,
                        model_version=version,
                        classes=classes,
                        probabilities=probs,
                    )
                )
                msg.prediction.predicted_at.GetCurrentTime()
                events.append(prediction_events(msg.routing, [msg.prediction])[0])
            return events

        produce(boot, predictions("m0", gold_right=False))
        time.sleep(2.0)  # several audit rounds
        assert not read_topic(
            boot,
            REVIEWS_REQUESTED,
            lambda m: m.project == project and m.kind == events_pb2.REVIEW_KIND_RELABEL,
            1,
            timeout_s=1,
        ), "a model wrong on the gold questioned accepted labels"
        produce(boot, predictions("m1", gold_right=True))
        relabels = read_topic(
            boot,
            REVIEWS_REQUESTED,
            lambda m: m.project == project and m.kind == events_pb2.REVIEW_KIND_RELABEL,
            3,
        )
        assert sorted(m.item_id for m in relabels) == sorted(wrong)
        assert all(m.routing.reason == common_pb2.ROUTING_REASON_RELABEL for m in relabels)
        assert all(len(m.suspected_label_ids) == 3 for m in relabels)

        # Memorization flags from training send their label back as well.
        flagged = f"{project}-10"
        feedback = events_pb2.TrainingFeedback(
            project=project,
            model_version="m1",
            run_id="run-1",
            memorization_flags=[
                common_pb2.MemorizationFlag(
                    item_id=flagged, label_id="", reason="fit late, loss spikes", score=0.9
                )
            ],
        )
        produce(boot, [make_event(TRAINING_FEEDBACK, project, feedback)])
        memo = read_topic(boot, REVIEWS_REQUESTED, lambda m: m.item_id == flagged, 1)
        assert len(memo) == 1 and "memorized" in memo[0].detail

        scores = stack.stub.AnnotatorScores(
            quality_pb2.AnnotatorScoresRequest(project=project), metadata=admin
        )
        by_id = {s.annotator_id: s for s in scores.annotators}
        assert by_id["good1"].gold_accuracy == 1.0
        assert by_id["good1"].gold_accuracy_lower_bound > by_id["good2"].gold_accuracy_lower_bound
        agreement = stack.stub.AgreementReport(
            quality_pb2.AgreementReportRequest(project=project), metadata=admin
        )
        assert agreement.done and agreement.metric == "krippendorff_alpha"
        assert {s.dimension for s in agreement.slices} == {"class", "annotator", "window"}


def test_labels_that_arrive_before_their_contract_wait_for_it(infra: Infra) -> None:
    # Long enough for the contract to come, short enough that old events of other
    # tests (for contracts this instance never sees) do not hold a partition for long.
    with quality_stack(infra, contract_wait_s=10.0) as stack:
        project = f"q{uuid.uuid4().hex[:8]}"
        boot = stack.quality.config.kafka_bootstrap
        item = f"{project}-early"
        produce(boot, [label_event(project, item, f"ann{i}", "dog") for i in range(3)])
        time.sleep(2)  # the labels are consumed first, and wait
        assert item_state(stack, item) is None
        stack.gateway.load_contract(quality_contract(project))
        decided = consensus_for(stack, item, timeout_s=45)
        assert [(m.consensus.status, m.consensus.value) for m in decided] == [
            (common_pb2.CONSENSUS_STATUS_ACCEPTED, "dog")
        ]
        letters = read_topic(boot, DEADLETTER, lambda m: m.key.decode() == item, 0, timeout_s=2)
        assert letters == []


def test_a_better_known_crowd_settles_waiting_items_without_more_labels(infra: Infra) -> None:
    # A light prior (2 pseudo-labels per class) so that 30 labels each teach Dawid-Skene
    # who the contrarian is; the mechanism under test is the re-decision.
    with quality_stack(infra, estimate_interval_s=0.3, prior_strength=2.0) as stack:
        project = new_project(stack)
        boot = stack.quality.config.kafka_bootstrap
        classes = ["cat", "dog", "bird"]
        events = []
        for i in range(30):
            truth = classes[i % 3]
            item = f"{project}-{i}"
            events.append(label_event(project, item, "steady1", truth))
            events.append(label_event(project, item, "steady2", truth))
            events.append(label_event(project, item, "contrarian", classes[(i + 1) % 3]))
        produce(boot, events)

        def accepted() -> list:
            return read_topic(
                boot,
                LABELS_CONSENSUS,
                lambda m: (
                    m.consensus.project == project
                    and m.consensus.status == common_pb2.CONSENSUS_STATUS_ACCEPTED
                ),
                30,
                timeout_s=2,
            )

        # 2 vs 1 under the prior is not enough (0.79 < 0.9): more labels are asked for.
        # Once Dawid-Skene has learnt the contrarian is wrong, the same votes suffice.
        wait_until(lambda: len(accepted()) >= 30, 40, "waiting items accepted")
        decided = accepted()
        assert len({m.consensus.item_id for m in decided}) == 30
        assert all(len(m.consensus.votes) == 3 for m in decided)
        assert all(
            m.consensus.value == classes[int(m.consensus.item_id.rsplit("-", 1)[1]) % 3]
            for m in decided
        )
        asked = read_topic(
            boot,
            LABELS_CONSENSUS,
            lambda m: m.consensus.project == project and m.requested_overlap == 4,
            30,
            timeout_s=2,
        )
        # Items consumed before the first estimate were asked for a 4th label, and then
        # accepted without it (items consumed after it were accepted at once).
        assert asked and {m.consensus.item_id for m in asked} <= {
            m.consensus.item_id for m in decided
        }
        # The latest decision (read order follows partitions, not time) used what
        # Dawid-Skene had learnt from every label.
        latest = max(decided, key=lambda m: m.consensus.decided_at.ToNanoseconds())
        weights = {v.annotator_id: v.weight for v in latest.consensus.votes}
        assert weights["contrarian"] < 0.3 < 0.8 < weights["steady1"]
