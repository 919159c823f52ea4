"""Assignment and submission policy, and bearer-token auth, without any server."""

import itertools
import random
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from strata.gateway.auth import Authenticator, AuthError, bearer_token, hash_token, new_token
from strata.gateway.policy import (
    Accept,
    Candidate,
    Membership,
    Principal,
    Reject,
    TaskSnapshot,
    check_submission,
    check_value,
    choose_unit,
    gold_rate_for,
    refill_plan,
    roll_gold,
)
from strata.v1 import common_pb2

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ANN = Principal("ann", memberships=(("p", Membership("annotator")),))
ANNOTATOR = Membership("annotator")
REVIEWER = Membership("reviewer")
REG = Candidate(1, "item-1", "label")
GOLD = Candidate(2, "gold-1", "gold")
REVIEW = Candidate(3, "item-9", "review")
CLASSES = ["cat", "dog"]


def test_annotator_gets_regular_work_unless_gold_is_rolled() -> None:
    assert choose_unit(ANNOTATOR, regular=REG, gold=GOLD, review=REVIEW, gold_roll=False) == REG
    assert choose_unit(ANNOTATOR, regular=REG, gold=GOLD, review=REVIEW, gold_roll=True) == GOLD
    # No gold left for this annotator: the regular task, never nothing.
    assert choose_unit(ANNOTATOR, regular=REG, gold=None, review=None, gold_roll=True) == REG


def test_empty_queue_never_serves_gold() -> None:
    # Gold arriving when nothing else does would tell annotators it is gold.
    assert choose_unit(ANNOTATOR, regular=None, gold=GOLD, review=None, gold_roll=True) is None


def test_review_tasks_go_to_reviewers_only() -> None:
    assert choose_unit(REVIEWER, regular=REG, gold=GOLD, review=REVIEW, gold_roll=True) == REVIEW
    assert choose_unit(ANNOTATOR, regular=None, gold=None, review=REVIEW, gold_roll=False) is None


def test_blocked_gets_nothing_and_retrain_gets_gold_only() -> None:
    blocked = Membership("annotator", "blocked")
    retrain = Membership("annotator", "retrain")
    assert choose_unit(blocked, regular=REG, gold=GOLD, review=None, gold_roll=True) is None
    assert choose_unit(retrain, regular=REG, gold=GOLD, review=None, gold_roll=False) == GOLD
    assert choose_unit(retrain, regular=REG, gold=None, review=None, gold_roll=False) is None


def test_gold_roll_has_the_contract_rate_and_no_pattern() -> None:
    rng = random.Random(7)
    rolls = [roll_gold(rng, 0.1) for _ in range(20_000)]
    rate = sum(rolls) / len(rolls)
    assert abs(rate - 0.1) < 4 * (0.1 * 0.9 / len(rolls)) ** 0.5
    # Not "the first n" nor every tenth: gold positions are spread irregularly.
    positions = [i for i, r in enumerate(rolls) if r]
    gaps = {b - a for a, b in itertools.pairwise(positions)}
    assert positions[0] != 0 or positions[1] != 1
    assert len(gaps) > 20
    assert not any(roll_gold(rng, 0.0) for _ in range(1000))


def snapshot(**over: object) -> TaskSnapshot:
    base = dict(
        task_id="t1",
        annotator_id="ann",
        state="leased",
        kind="label",
        lease_expires_at=NOW + timedelta(minutes=5),
        ontology_version="v1",
        unit_state="open",
        unit_slots_open=0,
        project="p",
    )
    base.update(over)
    return TaskSnapshot(**base)  # type: ignore[arg-type]


def code(outcome: Accept | Reject) -> grpc.StatusCode | None:
    return outcome.code if isinstance(outcome, Reject) else None


def test_valid_label_on_live_lease_is_accepted() -> None:
    assert check_submission(snapshot(), ANN, "cat", CLASSES, NOW, task_id="t1") == Accept()


@pytest.mark.parametrize(
    ("task", "value", "expected"),
    [
        (None, "cat", grpc.StatusCode.NOT_FOUND),
        (snapshot(annotator_id="someone-else"), "cat", grpc.StatusCode.NOT_FOUND),
        (snapshot(state="labeled"), "cat", grpc.StatusCode.ALREADY_EXISTS),
        (snapshot(state="skipped"), "cat", grpc.StatusCode.FAILED_PRECONDITION),
        (snapshot(), "horse", grpc.StatusCode.INVALID_ARGUMENT),
        (snapshot(state="expired", unit_slots_open=0), "cat", grpc.StatusCode.FAILED_PRECONDITION),
        (
            snapshot(state="expired", unit_state="done", unit_slots_open=1),
            "cat",
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
    ],
)
def test_submission_rejections(
    task: TaskSnapshot | None, value: str, expected: grpc.StatusCode
) -> None:
    outcome = check_submission(task, ANN, value, CLASSES, NOW, task_id="t1")
    assert code(outcome) == expected
    assert isinstance(outcome, Reject) and outcome.message


def test_someone_elses_task_looks_exactly_like_a_missing_one() -> None:
    theirs = check_submission(snapshot(annotator_id="x"), ANN, "cat", CLASSES, NOW, task_id="t1")
    missing = check_submission(None, ANN, "cat", CLASSES, NOW, task_id="t1")
    assert theirs == missing


def test_expired_lease_not_yet_reassigned_takes_its_slot_back() -> None:
    outcome = check_submission(
        snapshot(state="expired", unit_slots_open=1), ANN, "cat", CLASSES, NOW, task_id="t1"
    )
    assert outcome == Accept(reclaim_slot=True)
    # Past expiry but not swept yet: the slot was never given away.
    late = snapshot(lease_expires_at=NOW - timedelta(seconds=1))
    assert check_submission(late, ANN, "cat", CLASSES, NOW, task_id="t1") == Accept()


def test_blocked_annotator_cannot_submit() -> None:
    blocked_in_p = Principal(
        "ann",
        memberships=(
            ("p", Membership("annotator", "blocked", "gold accuracy 0.40")),
            ("q", Membership("annotator")),
        ),
    )
    outcome = check_submission(snapshot(), blocked_in_p, "cat", CLASSES, NOW, task_id="t1")
    assert code(outcome) == grpc.StatusCode.PERMISSION_DENIED
    assert "gold accuracy 0.40" in outcome.message  # type: ignore[union-attr]
    # Status is per project: the same person labels on in project q.
    in_q = snapshot(project="q")
    assert check_submission(in_q, blocked_in_p, "cat", CLASSES, NOW, task_id="t1") == Accept()


def test_a_task_of_a_project_left_behind_looks_like_a_missing_one() -> None:
    removed = Principal("ann", memberships=(("q", Membership("annotator")),))
    outcome = check_submission(snapshot(), removed, "cat", CLASSES, NOW, task_id="t1")
    assert outcome == check_submission(None, removed, "cat", CLASSES, NOW, task_id="t1")


def test_an_admin_works_in_any_project_as_its_manager() -> None:
    admin = Principal("root", admin=True)
    assert admin.membership("anything") == Membership("manager")
    assert Principal("x").membership("anything") is None


def test_value_checks_before_any_lookup() -> None:
    assert check_value("cat", 100, 256) is None
    assert check_value("", 100, 256).code == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[union-attr]
    assert check_value("   ", 100, 256).code == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[union-attr]
    assert "at most 256" in check_value("x" * 257, 100, 256).message  # type: ignore[union-attr]
    assert check_value("cat", -1, 256).code == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[union-attr]


# -- auth --------------------------------------------------------------------


def test_tokens_are_random_and_only_their_hash_is_kept() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith("stk_") and len(a) > 40
    assert hash_token(a) != a and len(hash_token(a)) == 64


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("authorization", "stk_abc")],
        [("authorization", "Basic dXNlcjpwdw==")],
        [("authorization", "Bearer ")],
        [("authorization", "Bearer not-a-strata-token")],
        [("authorization", "Bearer stk_a"), ("authorization", "Bearer stk_b")],
    ],
)
def test_malformed_authorization_is_refused(metadata: list[tuple[str, str]]) -> None:
    with pytest.raises(AuthError):
        bearer_token(metadata)


def test_authenticator_caches_and_rejects_revoked_and_expired() -> None:
    token = new_token()
    calls: list[str] = []
    state = {"revoked": False, "expires": NOW + timedelta(days=1)}

    def lookup(h: str):  # type: ignore[no-untyped-def]
        calls.append(h)
        if h != hash_token(token):
            return None
        return Principal("ann"), state["expires"], state["revoked"]

    clock = [0.0]
    auth = Authenticator(lookup, cache_s=2.0, clock=lambda: clock[0])
    md = [("authorization", f"Bearer {token}")]
    assert auth.principal(md, NOW).annotator_id == "ann"
    assert auth.principal(md, NOW).annotator_id == "ann"
    assert len(calls) == 1  # cached
    state["revoked"] = True
    auth.forget("ann")
    with pytest.raises(AuthError, match="revoked"):
        auth.principal(md, NOW)
    state["revoked"] = False
    clock[0] = 5.0
    with pytest.raises(AuthError, match="expired"):
        auth.principal(md, NOW + timedelta(days=2))
    with pytest.raises(AuthError, match="unknown"):
        auth.principal([("authorization", f"Bearer {new_token()}")], NOW)


def test_the_ready_queue_holds_about_one_active_learning_batch() -> None:
    contract = common_pb2.LabelingContract()
    contract.overlap.min = 2
    contract.active_learning.batch_size = 16
    assert refill_plan(contract, low_water=200, batch=100) == (32, 16)
    # The configured mark is a ceiling: a large batch does not deepen the queue past it.
    contract.active_learning.batch_size = 500
    assert refill_plan(contract, low_water=200, batch=100) == (200, 100)
    # Without an active-learning batch size, the configured values apply.
    contract.active_learning.batch_size = 0
    assert refill_plan(contract, low_water=200, batch=100) == (200, 100)


def test_new_annotators_see_gold_at_the_probation_rate_first() -> None:
    contract = common_pb2.LabelingContract(
        gold_rate=0.1, gold_probation_tasks=12, gold_probation_rate=0.5
    )
    assert [gold_rate_for(contract, n) for n in (0, 11, 12, 500)] == [0.5, 0.5, 0.1, 0.1]
    assert gold_rate_for(common_pb2.LabelingContract(gold_rate=0.1), 0) == 0.1


# -- gold pre-labels ---------------------------------------------------------------


def test_gold_shows_what_the_pool_task_it_replaces_would_and_honeypots_are_plausible() -> None:
    from strata.gateway.policy import (
        ShownProfile,
        agreement_rate,
        gold_prelabel,
        plausible_confusion,
    )
    from strata.v1 import common_pb2

    rng = random.Random(3)
    classes = ["0", "1", "7", "9"]
    shown = common_pb2.PreLabel(value="9", confidence=0.62, model_version="v3", calibrated=True)
    wrong = honey = 0
    for _ in range(20_000):
        prelabel, honeypot = gold_prelabel(shown, 0.8, "7", "7", "1", classes, 0.25, rng)
        assert prelabel is not None
        # The replaced pool task's confidence and version: nothing tells gold apart.
        assert (prelabel.confidence, prelabel.model_version, prelabel.calibrated) == (
            0.62,
            "v3",
            True,
        )
        honey += honeypot
        if prelabel.value != "7":
            wrong += 1
            assert prelabel.value == "1"  # the model's second choice: a plausible mistake
        else:
            assert not honeypot
    assert abs(honey / 20_000 - 0.25) < 0.015
    # Wrong: every honeypot, and the pool's own 20% of the rest.
    assert abs(wrong / 20_000 - (0.25 + 0.75 * 0.2)) < 0.015
    # No pre-label where the pool task would have shown none.
    assert gold_prelabel(None, 0.8, "7", "7", "1", classes, 0.25, rng) == (None, False)
    # The model's own mistake is the most plausible confusion; a random class the last.
    assert plausible_confusion("7", "9", "1", classes, rng) == "9"
    assert plausible_confusion("7", None, None, classes, rng) in {"0", "1", "9"}
    # How often pool pre-labels of about that confidence were right; the confidence itself
    # (what calibration promises) until enough were decided.
    decided = [ShownProfile(0.6, i % 4 != 0) for i in range(40)] + [ShownProfile(0.95, True)] * 40
    assert agreement_rate(decided, 0.62) == 0.75
    assert agreement_rate(decided[:10], 0.62) == 0.62
