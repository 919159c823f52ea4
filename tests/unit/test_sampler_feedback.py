"""Training's depth profiles as class boosts, and what they do to the hand-out."""

from __future__ import annotations

import math
import random
from typing import Any, cast

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from strata.common.consumer import HandlerContext
from strata.common.contracts import ContractCache
from strata.common.events import Event
from strata.sampler import store
from strata.sampler.feedback import confusion_weights, depth_confusion
from strata.sampler.handlers import SamplerHandlers
from strata.sampler.handout import choose
from strata.sampler.metrics import SamplerMetrics
from strata.sampler.store import Candidate
from strata.v1 import common_pb2, events_pb2

# Profiles as training publishes them on digits (the product's MLP, 60 labels): head,
# hidden, input side. The 8s are mistaken for other digits (accuracy 0.1 on gold).
DIGITS_60_LABELS = {
    "0": [0.234, 0.092, 0.075],
    "1": [0.342, 0.183, 0.166],
    "5": [0.477, 0.324, 0.273],
    "8": [0.693, 0.572, 0.536],
}


def test_when_every_class_is_learned_no_class_gets_a_large_boost() -> None:
    """Min-max across classes gave the least-bad class the full boost; an absolute
    scale does not."""
    learned = {
        "0": [0.072, 0.021, 0.015],
        "1": [0.187, 0.087, 0.079],
        "5": [0.188, 0.120, 0.097],
        "9": [0.176, 0.082, 0.064],
    }
    weights = confusion_weights(learned)
    assert set(weights) == set(learned)
    assert max(weights.values()) < 0.1


def test_a_class_confused_deep_in_the_network_gets_the_highest_boost() -> None:
    weights = confusion_weights(DIGITS_60_LABELS)
    assert max(weights, key=weights.__getitem__) == "8"
    assert weights["8"] == 1.0
    assert weights["0"] < 0.05
    assert weights["1"] < weights["5"] < weights["8"]


def test_head_only_confusion_ranks_below_deep_confusion_of_the_same_size() -> None:
    weights = confusion_weights(
        {"head": [0.6, 0.05, 0.05], "deep": [0.05, 0.05, 0.6], "fine": [0.05, 0.05, 0.05]}
    )
    assert weights["fine"] == 0.0
    assert weights["head"] < weights["deep"]
    assert weights["head"] < 0.15  # the representation separates it: few labels will do


def test_the_full_boost_needs_genuine_confusion_and_the_ramp_is_absolute() -> None:
    weights = confusion_weights(
        {"chance": [1.0, 1.0, 1.0], "half": [0.5, 0.5, 0.5], "some": [0.3, 0.3, 0.3]}
    )
    assert weights == {"chance": 1.0, "half": 1.0, "some": pytest.approx(0.5)}
    # A class's boost does not depend on the other classes in the feedback.
    assert confusion_weights({"some": [0.3, 0.3, 0.3]}) == {"some": pytest.approx(0.5)}


def test_depth_confusion_matches_a_weighted_average_reference() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        k = int(rng.integers(1, 7))
        profile = rng.uniform(-0.2, 1.2, k)
        profile[rng.random(k) < 0.2] = np.nan
        finite = np.isfinite(profile)
        got = depth_confusion(profile.tolist())
        if not finite.any():
            assert got is None
            continue
        reference = np.average(
            np.clip(profile[finite], 0.0, 1.0), weights=np.arange(1, k + 1)[finite]
        )
        assert got == pytest.approx(float(reference))


def test_empty_nan_and_ragged_profiles() -> None:
    weights = confusion_weights(
        {
            "empty": [],
            "nan": [math.nan, math.nan],
            "inf": [math.inf],
            "short": [0.6],  # the head only: its deeper groups are unknown
            "gap": [math.nan, 0.6, 0.6],  # a group whose probe could not be fitted
            "long": [0.6, 0.0, 0.0, 0.0],
            "over": [3.0, 2.0],  # not normalised: clipped to the maximum
        }
    )
    assert set(weights) == {"short", "gap", "long", "over"}
    assert weights["short"] == 1.0 and weights["gap"] == 1.0 and weights["over"] == 1.0
    assert weights["long"] == 0.0  # (0.6 x 1) / (1 + 2 + 3 + 4) = 0.06


def _candidates(classes: int, n: int) -> list[Candidate]:
    """Scored items predicted as each class in turn, uncertainty falling with the index."""
    return [Candidate(f"i{i}", 0.9 - i / (2 * n), i % classes, None, None) for i in range(n)]


def _picked(candidates: list[Candidate], confused: dict[int, float]) -> list[Candidate]:
    return choose(
        candidates,
        [],
        12,
        cold=False,
        n_classes=3,
        confused=confused,
        rng=random.Random(0),
        explore_fraction=0.0,
    )


def _hand_out(candidates: list[Candidate], confused: dict[int, float]) -> list[str]:
    return [c.item_id for c in _picked(candidates, confused)]


def test_the_feedback_moves_the_confused_classes_items_up_the_hand_out() -> None:
    classes = ["cat", "dog", "fox"]
    profiles = {
        "cat": [0.3, 0.08, 0.06],
        "dog": [0.7, 0.6, 0.55],  # confused deep
        "fox": [0.25, 0.1, 0.07],
    }
    weights = confusion_weights(profiles)
    confused = {classes.index(c): w for c, w in weights.items()}
    candidates = _candidates(3, 60)
    dog = {c.item_id for c in candidates if c.predicted_class == 1}

    without = _hand_out(candidates, {})
    with_feedback = _hand_out(candidates, confused)
    assert without != with_feedback
    assert sum(i in dog for i in with_feedback) > sum(i in dog for i in without)
    # Every dog item handed out without the feedback comes out earlier with it.
    for item in (i for i in without if i in dog):
        assert with_feedback.index(item) < without.index(item)
    reasons = {c.item_id: c.reason for c in _picked(candidates, confused)}
    assert {reasons[i] for i in with_feedback if i in dog} == {
        common_pb2.ROUTING_REASON_DEPTH_FEEDBACK
    }


def test_a_feedback_where_every_class_is_learned_leaves_the_hand_out_as_it_was() -> None:
    learned = {"cat": [0.1, 0.03, 0.02], "dog": [0.15, 0.06, 0.05], "fox": [0.09, 0.02, 0.02]}
    classes = ["cat", "dog", "fox"]
    confused = {classes.index(c): w for c, w in confusion_weights(learned).items()}
    candidates = _candidates(3, 60)
    assert _hand_out(candidates, confused) == _hand_out(candidates, {})


def test_on_feedback_saves_the_rules_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    saved: list[tuple[str, dict[str, float], str]] = []
    monkeypatch.setattr(
        store,
        "save_confusion",
        lambda conn, project, weights, version: saved.append((project, weights, version)),
    )
    message = events_pb2.TrainingFeedback(
        project="p",
        model_version="v3",
        layer_groups=["head", "hidden", "input"],
        depth_profiles=[
            common_pb2.DepthProfile(class_label=c, entropy_by_group=v)
            for c, v in DIGITS_60_LABELS.items()
        ]
        + [common_pb2.DepthProfile(class_label="empty")],
    )
    event = Event("strata.training.feedback", 0, 0, b"p", "e1", "", "", "", message)
    handlers = SamplerHandlers(
        cast(ContractCache, None), SamplerMetrics("sampler", CollectorRegistry())
    )
    handlers.on_feedback(HandlerContext(cast(Any, None), event), event)
    assert saved == [("p", confusion_weights(DIGITS_60_LABELS), "v3")]

    saved.clear()
    empty = events_pb2.TrainingFeedback(project="p", model_version="v4")
    event = Event("strata.training.feedback", 0, 1, b"p", "e2", "", "", "", empty)
    handlers.on_feedback(HandlerContext(cast(Any, None), event), event)
    assert saved == []  # no profile: the last feedback's boosts stay
