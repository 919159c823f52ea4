"""What the campaign report says, computed from what the services returned (pure).

Inputs are plain data: export records (quality's JSONL with provenance), the
labels the simulated crowd gave with the truth the campaign knows, quality's
annotator scores, training's memorization flags and the learning curves. Nothing
here talks to a service.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from strata.demo.results import CurvePoint, Submitted

# Export methods decided from the crowd's votes (not by an expert, a model or a duplicate).
CROWD_METHODS = {"dawid_skene", "majority_vote"}


def majority(values: Sequence[str], classes: Sequence[str]) -> str:
    """Plain majority vote; a tie goes to the class listed first (quality's rule)."""
    tally = Counter(values)
    best = max(tally.values())
    return next(c for c in classes if tally.get(c, 0) == best)


def crowd_accuracy(
    records: Iterable[Mapping[str, Any]], truth: Mapping[str, int], classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy against the truth of: the project's accepted labels; and, on the items
    the crowd decided, majority vote over the same human votes vs the Dawid-Skene
    consensus quality published."""
    accepted = correct = crowd_items = mv_right = ds_right = expert = expert_right = 0
    for r in records:
        item = r["item_id"]
        if item not in truth:
            continue  # not seen through the gateway (a propagated duplicate)
        answer = classes[truth[item]]
        accepted += 1
        correct += r["value"] == answer
        if r["method"] == "expert":
            expert += 1
            expert_right += r["value"] == answer
        humans = [v["value"] for v in r["votes"] if v["source"] != "model"]
        if r["method"] in CROWD_METHODS and humans:
            crowd_items += 1
            mv_right += majority(humans, classes) == answer
            ds_right += r["value"] == answer
    return {
        "accepted_labels": accepted,
        "accepted_label_accuracy": correct / accepted if accepted else 0.0,
        "crowd_decided_items": crowd_items,
        "majority_vote_accuracy": mv_right / crowd_items if crowd_items else 0.0,
        "dawid_skene_accuracy": ds_right / crowd_items if crowd_items else 0.0,
        "expert_resolved_items": expert,
        "expert_resolved_accuracy": expert_right / expert if expert else 0.0,
    }


def observed_accuracy(submitted: Iterable[Submitted]) -> dict[str, float]:
    """Each annotator's accuracy on the labels they actually gave (truth known)."""
    given: dict[str, list[bool]] = defaultdict(list)
    for s in submitted:
        given[s.annotator_id].append(s.answer == s.truth)
    return {a: float(np.mean(v)) for a, v in given.items()}


@dataclass(frozen=True)
class RankingRow:
    annotator_id: str
    kind: str
    true_accuracy: float  # of the crowd model
    observed_accuracy: float  # on the labels given in this campaign
    estimated_accuracy: float  # quality's Dawid-Skene confusion matrix, mean diagonal
    gold_accuracy: float
    labels: int
    status: str


def observed_anchoring(submitted: Iterable[Submitted]) -> dict[str, tuple[int, int]]:
    """Per annotator, on every task whose pre-label was wrong (truth known): (times they
    answered the pre-label, wrong pre-labels shown)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for s in submitted:
        if s.prelabel is not None and s.prelabel != s.truth:
            counts[s.annotator_id][0] += int(s.answer == s.prelabel)
            counts[s.annotator_id][1] += 1
    return {a: (c[0], c[1]) for a, c in counts.items()}


def annotator_ranking(
    estimated: Mapping[str, float], truth: Mapping[str, float]
) -> tuple[float, list[str]]:
    """Spearman's rank correlation of quality's estimate with the true skill over the
    annotators both know (nan with fewer than three), and the estimated order."""
    common = sorted(set(estimated) & set(truth))
    order = sorted(common, key=lambda a: -estimated[a])
    if len(common) < 3:
        return float("nan"), order
    rho = spearmanr([estimated[a] for a in common], [truth[a] for a in common]).statistic
    return float(rho), order


def labels_to_reach(curve: Sequence[CurvePoint], accuracy: float) -> int | None:
    """Human labels spent for the first model version at or above `accuracy`."""
    return first_reach(trailing_mean(curve, 1), accuracy)


def trailing_mean(curve: Sequence[CurvePoint], window: int) -> list[tuple[int, float]]:
    """(human labels, mean test accuracy of this version and the `window` - 1 before
    it) in label order: one model's luck smoothed out. Early versions average what
    there is."""
    if window < 1:
        raise ValueError("window must be at least 1")
    pts = sorted(curve, key=lambda p: p.human_labels)
    acc = [p.test_accuracy for p in pts]
    return [
        (p.human_labels, float(np.mean(acc[max(0, i - window + 1) : i + 1])))
        for i, p in enumerate(pts)
    ]


def first_reach(points: Sequence[tuple[int, float]], accuracy: float) -> int | None:
    """Labels at the first (labels, accuracy) point at or above `accuracy`."""
    return next((n for n, a in points if a >= accuracy - 1e-12), None)


@dataclass(frozen=True)
class Saving:
    baseline_labels: int  # what random sampling had spent
    baseline_accuracy: float  # its smoothed accuracy there
    active_labels: int | None  # what active learning spent to reach it (smoothed)

    @property
    def share(self) -> float | None:
        return None if self.active_labels is None else self.active_labels / self.baseline_labels

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "share": self.share}


def savings_by_budget(
    active: Sequence[CurvePoint], baseline: Sequence[CurvePoint], window: int = 3
) -> list[Saving]:
    """For each of the baseline's versions: had the budget ended there, the labels
    active learning would have needed to match it, both curves smoothed over
    `window` consecutive versions. The share depends on the budget; this shows how."""
    smooth_active = trailing_mean(active, window)
    return [Saving(n, a, first_reach(smooth_active, a)) for n, a in trailing_mean(baseline, window)]


# Annotators who give wrong labels on purpose or without looking, in the order a wrong
# training label is put down to them when several answered its value; any other
# annotator's wrong label is an honest mistake.
CORRUPTING_KINDS = ("corruptor", "spammer", "copycat", "careless")
PLANTED = "planted twin"
HONEST = "honest mistake"
UNVOTED = "nobody answered it"


def wrong_label_sources(
    wrong: Mapping[str, str],
    submitted: Iterable[Submitted],
    classes: Sequence[str],
    kinds: Mapping[str, str],
    planted: Iterable[str] = (),
) -> dict[str, str]:
    """Where each wrong training label (item -> the value trained on) came from: a planted
    twin; else the first of CORRUPTING_KINDS among the annotators who answered that
    value; else an honest mistake."""
    twins = set(planted)
    gave: dict[str, set[str]] = defaultdict(set)
    for s in submitted:
        if s.item_id in wrong and classes[s.answer] == wrong[s.item_id]:
            gave[s.item_id].add(kinds.get(s.annotator_id, "?"))
    sources = {}
    for item in wrong:
        if item in twins:
            sources[item] = PLANTED
        elif not gave[item]:
            sources[item] = UNVOTED
        else:
            sources[item] = next((k for k in CORRUPTING_KINDS if k in gave[item]), HONEST)
    return sources


def memorization_vs_corruption(
    flagged_items: Iterable[str],
    trained: Mapping[str, str],
    truth: Mapping[str, int],
    classes: Sequence[str],
    submitted: Sequence[Submitted],
    kinds: Mapping[str, str],
    planted: Iterable[str] = (),
    ever_trained: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, Any]:
    """Training's memorization flags against the truth: how many of the final model's
    flagged training labels (`trained`: item -> value) are wrong (precision) and how
    many of its wrong training labels were flagged (recall; both None when undefined);
    the wrong labels by where they came from (`wrong_label_sources`), in the final
    model and in any run (`ever_trained`: item -> every value some run trained on; the
    final model's alone when not given), so that the ones caught before the final
    model show; and how the wrong answers each corrupting kind gave fared, planted
    twins aside (everyone misreads those)."""
    twins = set(planted)
    flagged = {i for i in flagged_items if i in trained and i in truth}
    wrong = {i: v for i, v in trained.items() if i in truth and v != classes[truth[i]]}
    # Each item's wrong value in the final model, else the first wrong value a run used.
    ever = {
        i: next(v for v in sorted(values) if v != classes[truth[i]])
        for i, values in (ever_trained or {}).items()
        if i in truth and any(v != classes[truth[i]] for v in values)
    } | wrong
    sources = wrong_label_sources(ever, submitted, classes, kinds, twins)
    ever_by_source = Counter(sources.values())
    final_by_source = Counter(sources[i] for i in wrong)
    caught = Counter(sources[i] for i in flagged if i in wrong)
    corrupted = []
    for kind in CORRUPTING_KINDS:
        who = {a for a, k in kinds.items() if k == kind}
        if not who:
            continue
        answers = [
            s
            for s in submitted
            if s.annotator_id in who and s.answer != s.truth and s.item_id not in twins
        ]
        items = {s.item_id for s in answers}
        in_any = {s.item_id for s in answers if ever.get(s.item_id) == classes[s.answer]}
        in_final = {s.item_id for s in answers if wrong.get(s.item_id) == classes[s.answer]}
        corrupted.append(
            {
                "kind": kind,
                "wrong_answers": len(answers),
                "items": len(items),
                "trained_on": sum(1 for i in items if i in trained),
                "in_any_run_with_their_wrong_class": len(in_any),
                "trained_with_their_wrong_class": len(in_final),
                "flagged": len(in_final & flagged),
            }
        )
    hits = len(flagged & wrong.keys())
    return {
        "training_labels": sum(1 for i in trained if i in truth),
        "wrong_training_labels": len(wrong),
        "wrong_labels_in_any_run": len(ever),
        "flagged": len(flagged),
        "flagged_wrong": hits,
        "precision": hits / len(flagged) if flagged else None,
        "recall": hits / len(wrong) if wrong else None,
        "wrong_by_source": [
            {
                "source": source,
                "in_any_run": n,
                "wrong_training_labels": final_by_source[source],
                "flagged": caught[source],
                "recall": caught[source] / final_by_source[source]
                if final_by_source[source]
                else None,
            }
            for source, n in sorted(ever_by_source.items(), key=lambda kv: (-kv[1], kv[0]))
        ],
        "corrupted_by_kind": corrupted,
    }


def influence_rank(item_id: str, ranked: Sequence[str]) -> int | None:
    """1-based place of `item_id` in `ranked` (most influential first), None if absent."""
    return next((n for n, i in enumerate(ranked, 1) if i == item_id), None)


def _twin_side(trace: Mapping[str, Any], rank: int | None) -> str:
    """Where the twin stands in its original's trace (or why there is no trace)."""
    if trace.get("predicted_class") is None:
        if trace["twin_label"] is None:
            return "twin not trained on"
        if trace.get("original_label") is None:
            return "original not trained on"
        return "not traced"
    if rank is not None:
        return "opposing"
    if influence_rank(trace["twin_item"], trace["supporting"]) is not None:
        return "supporting"
    return "neither"


def twin_tracin(
    traces: Iterable[Mapping[str, Any]], near: int = 5, top_k: int = 20
) -> dict[str, Any]:
    """How TracIn finds each planted twin when its original is traced: the twin's rank
    among the training labels opposing the model's prediction for the original (1: the
    strongest). A trace holds the pair's item ids and classes, the values trained on
    (None when not trained on), the prediction (None when not traced) and the opposing
    and supporting item ids in rank order. Summed up over the twins traced with a wrong
    label: the median rank (a twin that does not oppose counts as beyond every opposing
    label; None when that is the median) and the shares within the top `near` and
    `top_k`."""
    rows = []
    for t in traces:
        traced = t.get("predicted_class") is not None
        rank = influence_rank(t["twin_item"], t["opposing"]) if traced else None
        rows.append(
            {
                "original_item": t["original_item"],
                "twin_item": t["twin_item"],
                "true_class": t["true_class"],
                "twin_label": t["twin_label"],
                "predicted_class": t.get("predicted_class"),
                "opposing_labels": len(t["opposing"]) if traced else None,
                "rank_among_opposing": rank,
                "side": _twin_side(t, rank),
                "error": t.get("error", ""),
            }
        )
    measured = [
        r
        for r in rows
        if r["predicted_class"] is not None
        and r["twin_label"] is not None
        and r["twin_label"] != r["true_class"]
    ]
    ranks = sorted(r["rank_among_opposing"] or math.inf for r in measured)
    median = float(np.median(ranks)) if ranks else None
    return {
        "planted": len(rows),
        "measured": len(measured),
        "median_rank": median if median is not None and math.isfinite(median) else None,
        "near": near,
        "top_k": top_k,
        "in_top_near": sum(r <= near for r in ranks) / len(ranks) if ranks else None,
        "in_top_k": sum(r <= top_k for r in ranks) / len(ranks) if ranks else None,
        "not_in_top_k": sum(r > top_k for r in ranks),
        "original_predicted_as_twin": sum(
            1 for r in measured if r["predicted_class"] == r["twin_label"]
        ),
        "by_twin": rows,
    }
