"""Changing an answer already given: the gateway's rule and quality's gold correction."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from strata.gateway.amend import Change, LabelRow, check_amendment
from strata.gateway.policy import Membership, Principal, Reject
from strata.gateway.store import TaskContext
from strata.quality.amendments import VoteChange, gold_delta
from strata.quality.store import GoldDelta, NewVote

from tests.unit.test_gateway_policy import NOW, snapshot

ANN = Principal("ann", memberships=(("p", Membership("annotator")),))
CLASSES = ["cat", "dog", "bird"]
LABEL = LabelRow("l1", "cat", 0, "c1", 1200, 800, 1, False)


def task(**over: object) -> TaskContext:
    return TaskContext(snapshot(**{"state": "labeled", **over}), 1, "item-1", "p", b"", None, None)


def check(
    ctx: TaskContext | None = None,
    label: LabelRow | None = LABEL,
    value: str = "dog",
    revision: int = 0,
    who: Principal = ANN,
) -> Change | Reject:
    return check_amendment(
        task() if ctx is None else ctx, label, who, value, revision, CLASSES, NOW, task_id="t1"
    )


def test_an_answer_changes_while_its_lease_holds() -> None:
    assert check() == Change()
    # Gold and pool tasks alike: the rule never tells them apart.
    assert check(task(kind="gold")) == check()


def test_a_retry_of_the_change_that_landed_is_a_duplicate_and_the_same_value_no_change() -> None:
    changed = LabelRow("l1", "dog", 1, "c1", 1200, 800, 1, False)
    assert check(label=changed, value="dog", revision=0) == Change(duplicate=True)
    assert check(label=changed, value="dog", revision=1) == Change(unchanged=True)
    # A retry lands as a duplicate even once the lease has run out: it did land.
    late = task(lease_expires_at=NOW - timedelta(seconds=1))
    assert check(late, label=changed, value="dog", revision=0) == Change(duplicate=True)


@pytest.mark.parametrize(
    ("what", "kwargs", "expected"),
    [
        ("someone else's", {"ctx": task(annotator_id="bob")}, grpc.StatusCode.NOT_FOUND),
        (
            "a project left behind",
            {"who": Principal("ann", memberships=())},
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            "blocked",
            {"who": Principal("ann", memberships=(("p", Membership("annotator", "blocked")),))},
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        ("nothing answered", {"label": None}, grpc.StatusCode.FAILED_PRECONDITION),
        ("a review's decision", {"ctx": task(kind="review")}, grpc.StatusCode.FAILED_PRECONDITION),
        ("a stale revision", {"revision": 2}, grpc.StatusCode.ABORTED),
        ("not a class", {"value": "horse"}, grpc.StatusCode.INVALID_ARGUMENT),
        (
            "the lease ran out",
            {"ctx": task(lease_expires_at=NOW)},
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
def test_what_is_refused(what: str, kwargs: dict, expected: grpc.StatusCode) -> None:
    outcome = check(**kwargs)
    assert isinstance(outcome, Reject), what
    assert outcome.code == expected, (what, outcome.message)
    assert len(outcome.message) > 20


def test_someone_elses_answer_looks_exactly_like_a_missing_task() -> None:
    missing = check_amendment(None, None, ANN, "dog", 0, CLASSES, NOW, task_id="t1")
    assert check(task(annotator_id="bob")) == missing


def change(old: str, new: str, answer: str | None = "cat", shown: str | None = None) -> VoteChange:
    vote = NewVote("l1", "g1", "p", "ann", new, "v1", "human", True, answer, NOW, 1000, shown)
    return VoteChange(vote, 1, old, answer, shown, "human")


@pytest.mark.parametrize(
    ("old", "new", "shown", "expected"),
    [
        ("dog", "cat", None, GoldDelta(correct=1)),
        ("cat", "dog", None, GoldDelta(correct=-1)),
        ("dog", "bird", None, GoldDelta()),
        # Shown a wrong pre-label (dog): following it, then leaving it, and back.
        ("dog", "cat", "dog", GoldDelta(correct=1, wrong_prelabels_followed=-1)),
        ("cat", "dog", "dog", GoldDelta(correct=-1, wrong_prelabels_followed=1)),
        # A right pre-label is not anchoring either way.
        ("dog", "cat", "cat", GoldDelta(correct=1)),
    ],
)
def test_a_changed_gold_answer_corrects_the_record_by_the_difference(
    old: str, new: str, shown: str | None, expected: GoldDelta
) -> None:
    assert gold_delta(change(old, new, shown=shown)) == expected


def test_a_pool_answer_or_an_expert_is_no_gold_change() -> None:
    assert gold_delta(change("dog", "cat", answer=None)) is None
    expert = change("dog", "cat")
    assert gold_delta(VoteChange(expert.vote, 1, "dog", "cat", None, "expert")) is None
