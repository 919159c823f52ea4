"""The campaign report's figures, from plain data with known answers."""

from __future__ import annotations

import math

from strata.demo.analysis import (
    annotator_ranking,
    crowd_accuracy,
    labels_to_reach,
    majority,
    memorization_vs_corruption,
    observed_accuracy,
)
from strata.demo.campaign import CurvePoint, Submitted

CLASSES = ["0", "1", "2"]


def record(item: str, value: str, method: str, *votes: str) -> dict:  # type: ignore[type-arg]
    return {
        "item_id": item,
        "value": value,
        "method": method,
        "votes": [{"value": v, "source": "human"} for v in votes],
    }


def test_majority_breaks_ties_by_class_order() -> None:
    assert majority(["2", "1"], CLASSES) == "1"
    assert majority(["2", "2", "0"], CLASSES) == "2"


def test_crowd_accuracy_compares_majority_vote_and_dawid_skene_on_the_same_items() -> None:
    truth = {"a": 0, "b": 1, "c": 2, "d": 1}
    records = [
        record("a", "0", "dawid_skene", "0", "0"),
        # Majority vote takes the tie to "0"; Dawid-Skene, trusting the better voter, "1".
        record("b", "1", "dawid_skene", "0", "1"),
        record("c", "2", "expert", "1", "0"),
        record("d", "2", "dawid_skene", "2", "2"),
        record("unseen", "0", "propagated"),
    ]
    got = crowd_accuracy(records, truth, CLASSES)
    assert got["accepted_labels"] == 4 and got["accepted_label_accuracy"] == 0.75
    assert got["crowd_decided_items"] == 3
    assert math.isclose(got["majority_vote_accuracy"], 1 / 3)
    assert math.isclose(got["dawid_skene_accuracy"], 2 / 3)
    assert got["expert_resolved_items"] == 1 and got["expert_resolved_accuracy"] == 1.0


def test_labels_to_reach_takes_the_first_version_at_or_above() -> None:
    curve = [
        CurvePoint("v1", 100, 0.80, 0.0, 1.0),
        CurvePoint("v3", 300, 0.95, 0.0, 3.0),
        CurvePoint("v2", 200, 0.93, 0.0, 2.0),
    ]
    assert labels_to_reach(curve, 0.93) == 200
    assert labels_to_reach(curve, 0.95) == 300
    assert labels_to_reach(curve, 0.99) is None


def test_annotator_ranking_is_spearman_over_the_annotators_both_know() -> None:
    rho, order = annotator_ranking(
        {"a": 0.9, "b": 0.7, "c": 0.5, "x": 0.1}, {"a": 1, "b": 0.8, "c": 0.2}
    )
    assert math.isclose(rho, 1.0) and order == ["a", "b", "c"]
    rho, _ = annotator_ranking({"a": 0.5, "b": 0.7, "c": 0.9}, {"a": 1, "b": 0.8, "c": 0.2})
    assert math.isclose(rho, -1.0)
    assert math.isnan(annotator_ranking({"a": 1.0}, {"a": 1.0})[0])


def test_memorization_flags_are_scored_against_the_truth() -> None:
    truth = {"a": 0, "b": 1, "c": 2, "d": 0}
    trained = {"a": "0", "b": "0", "c": "1", "d": "0"}  # b and c are wrong
    given = [
        Submitted(0.0, "spam", "b", 0, 1),
        Submitted(0.0, "spam", "d", 1, 0),  # corrupted, but consensus got it right
        Submitted(0.0, "good", "c", 2, 2),
    ]
    got = memorization_vs_corruption(["b", "a"], trained, truth, CLASSES, given, ["spam"])
    assert got["wrong_training_labels"] == 2 and got["flagged"] == 2
    assert got["precision"] == 0.5 and got["recall"] == 0.5
    assert got["spammer_corrupted_labels"] == 2 and got["of_which_trained_on"] == 2
    assert got["of_which_trained_with_the_wrong_class"] == 1 and got["of_which_flagged"] == 1
    assert observed_accuracy(given) == {"spam": 0.0, "good": 1.0}
