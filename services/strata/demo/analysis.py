"""What the campaign report says, computed from what the services returned (pure).

Inputs are plain data: export records (quality's JSONL with provenance), the
labels the simulated crowd gave with the truth the campaign knows, quality's
annotator scores, training's memorization flags and the learning curves. Nothing
here talks to a service.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from strata.demo.campaign import CurvePoint, Submitted

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


def memorization_vs_corruption(
    flagged_items: Iterable[str],
    trained: Mapping[str, str],
    truth: Mapping[str, int],
    classes: Sequence[str],
    submitted: Iterable[Submitted],
    spammers: Iterable[str],
) -> dict[str, Any]:
    """Training's memorization flags against the truth: how many flagged training labels
    are wrong (precision), how many wrong training labels were flagged (recall), and
    how the labels a spammer corrupted fared (kept out by consensus, or trained on)."""
    flagged = {i for i in flagged_items if i in trained and i in truth}
    wrong = {i for i, v in trained.items() if i in truth and v != classes[truth[i]]}
    spam = set(spammers)
    corrupted = {s.item_id for s in submitted if s.annotator_id in spam and s.answer != s.truth}
    corrupted_trained = {i for i in corrupted if i in trained}
    corrupted_wrong = corrupted_trained & wrong
    return {
        "training_labels": sum(1 for i in trained if i in truth),
        "wrong_training_labels": len(wrong),
        "flagged": len(flagged),
        "flagged_wrong": len(flagged & wrong),
        "precision": len(flagged & wrong) / len(flagged) if flagged else 0.0,
        "recall": len(flagged & wrong) / len(wrong) if wrong else 0.0,
        "spammer_corrupted_labels": sum(
            1 for s in submitted if s.annotator_id in spam and s.answer != s.truth
        ),
        "spammer_corrupted_items": len(corrupted),
        "of_which_trained_on": len(corrupted_trained),
        "of_which_trained_with_the_wrong_class": len(corrupted_wrong),
        "of_which_flagged": len(corrupted_wrong & flagged),
    }
