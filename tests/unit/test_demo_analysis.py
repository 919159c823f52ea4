"""The campaign report's figures, from plain data with known answers."""

from __future__ import annotations

import math

import pytest
from strata.demo.analysis import (
    annotator_ranking,
    crowd_accuracy,
    labels_to_reach,
    majority,
    memorization_vs_corruption,
    observed_accuracy,
    savings_by_budget,
    trailing_mean,
)
from strata.demo.campaign import CampaignResult, CampaignSettings, CurvePoint, Submitted
from strata.demo.run import comparison

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


def curve(*points: tuple[int, float]) -> list[CurvePoint]:
    return [CurvePoint(f"v{i}", n, a, 0.0, float(i)) for i, (n, a) in enumerate(points)]


def test_trailing_mean_averages_each_version_with_the_ones_before() -> None:
    points = curve((300, 0.9), (100, 0.6), (200, 0.9), (400, 0.6))
    got = trailing_mean(points, 3)
    assert [n for n, _ in got] == [100, 200, 300, 400]
    expected = [0.6, 0.75, 0.8, 0.8]  # (0.6), (0.6+0.9)/2, (0.6+0.9+0.9)/3, (0.9+0.9+0.6)/3
    assert all(math.isclose(a, e) for (_, a), e in zip(got, expected, strict=True))
    assert trailing_mean(points, 1) == [(100, 0.6), (200, 0.9), (300, 0.9), (400, 0.6)]


def test_savings_by_budget_matches_each_baseline_version_on_smoothed_curves() -> None:
    # A lucky single active-learning model (0.95 at 200) does not count once smoothed.
    active = curve((100, 0.80), (200, 0.95), (300, 0.90), (400, 0.94), (500, 0.96))
    baseline = curve((200, 0.80), (400, 0.86), (600, 0.90), (800, 0.92), (1000, 0.99))
    rows = savings_by_budget(active, baseline, window=3)
    assert [r.baseline_labels for r in rows] == [200, 400, 600, 800, 1000]
    # Smoothed baseline: 0.80, 0.83, 0.8533, 0.8933, 0.9367;
    # smoothed active: 0.80, 0.875, 0.8833, 0.93, 0.9333.
    assert [r.active_labels for r in rows] == [100, 200, 200, 400, None]
    assert math.isclose(rows[2].baseline_accuracy, (0.80 + 0.86 + 0.90) / 3)
    assert rows[0].share == 0.5 and rows[3].share == 0.5 and rows[-1].share is None
    # Unsmoothed, the lucky model alone matches the baseline's 0.92 at 800.
    raw = savings_by_budget(active, baseline, window=1)
    assert [r.active_labels for r in raw] == [100, 200, 200, 200, None]


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


def campaign(strategy: str, points: list[tuple[int, float]], stopped: str) -> CampaignResult:
    settings = CampaignSettings(strategy=strategy, target_accuracy=0.98)
    curve = [CurvePoint(f"v{i + 1}", n, a, a, 0.0) for i, (n, a) in enumerate(points)]
    labels = points[-1][0] if points else 0
    return CampaignResult(settings, {}, {"a": labels}, curve, {}, stopped, 1.0)


def test_the_verdict_compares_the_campaigns_at_the_baseline_s_final_accuracy() -> None:
    baseline = campaign(
        "random", [(500, 0.90), (1000, 0.95), (1500, 0.97), (2000, 0.975)], "label budget"
    )
    active = campaign(
        "margin", [(300, 0.93), (600, 0.96), (800, 0.976), (900, 0.974), (950, 0.981)], "target"
    )
    result = comparison(active, baseline)
    assert result["active_labels_to_reach_baseline_final"] == 800
    assert result["share_of_baseline_labels"] == 0.4
    assert result["active_labels_to_reach_target"] == 950
    assert result["baseline_labels_to_reach_target"] is None
    # Smoothed over 3 models: the baseline ends at (0.95 + 0.97 + 0.975) / 3, which the
    # active campaign's 3-model mean first reaches at 900 labels (0.97; 0.955 at 800).
    assert result["smoothed"]["baseline_accuracy"] == pytest.approx(0.965)
    assert result["smoothed"]["active_labels"] == 900
    assert "with 800 human labels, 40% of the baseline's 2000" in result["verdict"]


def test_the_verdict_says_why_active_learning_did_not_reach_the_baseline() -> None:
    baseline = campaign("random", [(1000, 0.96), (1500, 0.975), (2000, 0.985)], "label budget")
    stopped = campaign("margin", [(600, 0.96), (700, 0.95), (800, 0.982)], "target accuracy")
    verdict = comparison(stopped, baseline)["verdict"]
    assert verdict.startswith("Active learning stopped at the target (0.98) before the baseline")
    assert "did not reach before one model stopped it at its target." in verdict
    spent = campaign("margin", [(1000, 0.95), (2000, 0.97)], "label budget")
    verdict = comparison(spent, baseline)["verdict"]
    assert "did not reach the baseline's final accuracy (0.985) within its budget" in verdict
    assert verdict.endswith("which active learning did not reach.")


def test_observed_anchoring_counts_agreement_with_wrong_prelabels_only() -> None:
    from strata.demo.analysis import observed_anchoring

    given = [
        Submitted(0.0, "copycat", "i1", answer=3, truth=5, prelabel=3),  # wrong, copied
        Submitted(0.0, "copycat", "i2", answer=5, truth=5, prelabel=5),  # right pre-label
        Submitted(0.0, "careful", "i1", answer=5, truth=5, prelabel=3),  # wrong, resisted
        Submitted(0.0, "careful", "i3", answer=2, truth=1, prelabel=None),  # none shown
    ]
    assert observed_anchoring(given) == {"copycat": (1, 1), "careful": (0, 1)}


def test_the_anchoring_plot_takes_rates_at_the_edges() -> None:
    from strata.demo.report import anchoring_plot
    from strata.quality.gold import wilson_interval

    rows = [
        {
            "annotator_id": name,
            "kind": kind,
            "anchoring_rate_on_gold": rate,
            "anchoring_interval_on_gold": list(wilson_interval(k, n)) if n else None,
            "blocked": blocked,
        }
        for name, kind, rate, k, n, blocked in (
            ("copycat-1", "copycat", 1.0, 9, 9, True),
            ("good-1", "good", 0.0, 0, 7, False),
            ("new-1", "average", None, 0, 0, False),
        )
    ]
    picture = anchoring_plot({"digits": rows, "digits-random": rows})
    assert picture and picture.startswith(b"\x89PNG")
    assert anchoring_plot({"digits": []}) is None
