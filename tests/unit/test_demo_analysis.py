"""The campaign report's figures, from plain data with known answers."""

from __future__ import annotations

import math
from typing import Any

import pytest
from strata.demo.analysis import (
    annotator_ranking,
    crowd_accuracy,
    influence_rank,
    labels_to_reach,
    majority,
    memorization_vs_corruption,
    observed_accuracy,
    savings_by_budget,
    trailing_mean,
    twin_tracin,
    wrong_label_sources,
)
from strata.demo.results import CampaignResult, CampaignSettings, CurvePoint, Submitted
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


KINDS = {"spam": "spammer", "ring1": "corruptor", "ring2": "corruptor", "good": "good"}


def test_memorization_flags_are_scored_against_the_truth() -> None:
    truth = {"a": 0, "b": 1, "c": 2, "d": 0}
    trained = {"a": "0", "b": "0", "c": "1", "d": "0"}  # b and c are wrong
    given = [
        Submitted(0.0, "spam", "b", 0, 1),
        Submitted(0.0, "spam", "d", 1, 0),  # corrupted, but consensus got it right
        Submitted(0.0, "good", "c", 2, 2),
    ]
    got = memorization_vs_corruption(["b", "a"], trained, truth, CLASSES, given, KINDS)
    assert got["wrong_training_labels"] == 2 and got["flagged"] == 2
    assert got["precision"] == 0.5 and got["recall"] == 0.5
    (spam,) = [k for k in got["corrupted_by_kind"] if k["kind"] == "spammer"]
    assert spam["wrong_answers"] == 2 and spam["items"] == 2 and spam["trained_on"] == 2
    assert spam["trained_with_their_wrong_class"] == 1 and spam["flagged"] == 1
    assert observed_accuracy(given) == {"spam": 0.0, "good": 1.0}
    # No flags and no wrong labels: precision and recall are undefined, not zero.
    clean = memorization_vs_corruption([], {"a": "0"}, truth, CLASSES, [], KINDS)
    assert clean["precision"] is None and clean["recall"] is None


def test_the_ring_s_labels_count_as_corrupted_and_twins_as_planted() -> None:
    truth = {"r": 1, "s": 0, "t": 0, "h": 2, "u": 1, "ok": 0}
    # r: the ring agreed on "2"; s: the ring answered "1" but consensus took the truth;
    # t: a planted twin everyone misread as "1"; h: an honest mistake (a good annotator's
    # "1"); u: trained on a value nobody here answered.
    trained = {"r": "2", "s": "0", "t": "1", "h": "1", "u": "2", "ok": "0"}
    given = [
        Submitted(0.0, "ring1", "r", 2, 1),
        Submitted(0.0, "ring2", "r", 2, 1),
        Submitted(0.0, "ring1", "s", 1, 0),
        Submitted(0.0, "good", "s", 0, 0),
        Submitted(0.0, "ring2", "t", 1, 0),
        Submitted(0.0, "good", "t", 1, 0),
        Submitted(0.0, "good", "h", 1, 2),
        Submitted(0.0, "spam", "h", 0, 2),  # wrong too, but not the value trained on
        Submitted(0.0, "good", "u", 1, 1),
    ]
    wrong = {"r": "2", "t": "1", "h": "1", "u": "2"}
    assert wrong_label_sources(wrong, given, CLASSES, KINDS, planted=["t"]) == {
        "r": "corruptor",
        "t": "planted twin",
        "h": "honest mistake",
        "u": "nobody answered it",
    }
    # An earlier run trained on s with the ring's "1" (an audit sent it to an expert since).
    ever = {"r": ["2"], "s": ["0", "1"], "t": ["1"], "h": ["1"], "u": ["2"]}
    got = memorization_vs_corruption(
        ["r", "t", "ok"], trained, truth, CLASSES, given, KINDS, ["t"], ever
    )
    assert got["wrong_training_labels"] == 4 and got["wrong_labels_in_any_run"] == 5
    assert got["flagged"] == 3
    assert got["precision"] == pytest.approx(2 / 3) and got["recall"] == 0.5
    sources = {row["source"]: row for row in got["wrong_by_source"]}
    assert sources["corruptor"]["in_any_run"] == 2
    assert sources["corruptor"]["wrong_training_labels"] == 1
    assert sources["corruptor"]["flagged"] == 1 and sources["planted twin"]["recall"] == 1.0
    assert sources["honest mistake"]["flagged"] == 0
    ring = next(k for k in got["corrupted_by_kind"] if k["kind"] == "corruptor")
    # The twin aside: three wrong answers, on r and s; some run trained on both with the
    # ring's class, the final model on r only.
    assert ring["wrong_answers"] == 3 and ring["items"] == 2 and ring["trained_on"] == 2
    assert ring["in_any_run_with_their_wrong_class"] == 2
    assert ring["trained_with_their_wrong_class"] == 1 and ring["flagged"] == 1
    # Without the runs' lineage, the final model's labels alone.
    alone = memorization_vs_corruption(["r"], trained, truth, CLASSES, given, KINDS, ["t"])
    assert alone["wrong_labels_in_any_run"] == alone["wrong_training_labels"] == 4


def trace(
    twin: str, label: str | None, predicted: str | None, opposing: list[str]
) -> dict[str, Any]:
    return {
        "original_item": f"orig-{twin}",
        "twin_item": twin,
        "true_class": "0",
        "twin_label": label,
        "predicted_class": predicted,
        "opposing": opposing,
        "supporting": [twin] if predicted == label else [],
    }


def test_twin_ranks_among_the_labels_opposing_the_original() -> None:
    assert influence_rank("b", ["a", "b", "c"]) == 2 and influence_rank("x", ["a"]) is None
    got = twin_tracin(
        [
            trace("t1", "1", "0", ["t1", "x"]),  # rank 1
            trace("t2", "1", "0", ["x", "y", "z", "t2"]),  # rank 4
            trace("t3", "1", "0", ["x"] * 7 + ["t3"]),  # rank 8: beyond the top 5
            trace("t4", "1", "1", ["orig-t4"]),  # the model took the twin's class: supports
            trace("t5", None, None, []),  # not trained on: not traced
            trace("t6", "0", "0", ["x", "t6"]),  # labelled right after all: not measured
        ],
        near=5,
        top_k=20,
    )
    assert got["planted"] == 6 and got["measured"] == 4
    # Ranks 1, 4, 8 and beyond every opposing label: the median is between 4 and 8.
    assert got["median_rank"] == 6.0
    assert got["in_top_near"] == 0.5 and got["in_top_k"] == 0.75 and got["not_in_top_k"] == 1
    assert got["original_predicted_as_twin"] == 1
    sides = {r["twin_item"]: r["side"] for r in got["by_twin"]}
    assert sides == {
        "t1": "opposing",
        "t2": "opposing",
        "t3": "opposing",
        "t4": "supporting",
        "t5": "twin not trained on",
        "t6": "opposing",
    }
    # Most twins not opposing at all: no finite median.
    none = twin_tracin([trace("t4", "1", "1", []), trace("t1", "1", "0", ["t1"])])
    assert none["median_rank"] is None and none["in_top_near"] == 0.5
    assert twin_tracin([])["median_rank"] is None


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


def test_the_report_shows_the_wrong_labels_and_the_twins_ranks() -> None:
    from strata.demo.report import wrong_labels_section
    from strata.demo.run import wrong_labels_line

    truth = {"r": 1, "t": 0, "ok": 0}
    trained = {"r": "2", "t": "1", "ok": "0"}
    given = [Submitted(0.0, "ring1", "r", 2, 1), Submitted(0.0, "ring2", "r", 2, 1)]
    findings = {
        "settings": {"project": "digits"},
        "memorization": memorization_vs_corruption(
            ["r"], trained, truth, CLASSES, given, KINDS, ["t"]
        ),
        "twins": twin_tracin([trace("t", "1", "0", ["t"])], near=5, top_k=20),
    }
    line = wrong_labels_line(findings)
    assert line.startswith(
        "2 wrong of the final model's 3 training labels (2 wrong in some run, 1 of them the "
        "ring's); memorization flags 1, precision 1.00"
    )
    assert "recall 0.50" in line and "1 mislabeled twins at median 1" in line
    assert "100% in the top 5" in line
    page = "\n".join(wrong_labels_section(findings))
    assert "planted twin" in page and "corruptor" in page and "opposing" in page
    # Nothing flagged, nothing traced: said so, not shown as zero.
    empty = {
        "settings": {"project": "digits"},
        "memorization": memorization_vs_corruption([], {}, {}, CLASSES, [], KINDS),
        "twins": twin_tracin([]),
    }
    assert "precision undefined, recall undefined" in wrong_labels_line(empty)


def test_a_second_demo_on_the_same_database_runs_in_fresh_projects() -> None:
    from strata.demo.run import fresh_projects, plan

    p = plan(fast=True)
    assert fresh_projects(p, {"other"}) == p
    second = fresh_projects(p, {"digits", "digits-random", "other"})
    assert (second.active.project, second.baseline.project) == ("digits-2", "digits-random-2")
    assert second.active.strategy == p.active.strategy and second.baseline.strategy == "random"
    # Either name taken moves both, to the first number free for the pair.
    third = fresh_projects(p, {"digits-random", "digits-2"})
    assert (third.active.project, third.baseline.project) == ("digits-3", "digits-random-3")
