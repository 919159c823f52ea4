"""The dataset quality report, computed from a project's votes and decisions (pure).

`ProjectData` is what the store reads; `build_report` turns it into plain JSON:
agreement overall, by class, by annotator and by time window; the error
taxonomy (which true class gets which wrong answer); per-annotator scores;
coverage per class; reviews; crowd accuracy on gold (majority vote vs
Dawid-Skene); and the limitations a reader should know about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from strata.common import trust
from strata.quality.agreement import (
    AgreementError,
    counts_from_votes,
    fleiss_kappa,
    krippendorff_alpha_counts,
    pairwise_cohen_from_votes,
)
from strata.quality.consensus import prior_confusion, score_item
from strata.quality.gold import wilson_interval

METRICS = ("krippendorff_alpha", "fleiss_kappa", "cohen_kappa")


@dataclass
class ProjectData:
    project: str
    classes: list[str]
    agreement_metric: str
    agreement_threshold: float
    gold_threshold: float
    # One entry per human vote.
    vote_item: list[str]
    vote_annotator: list[str]
    vote_value: list[str]
    vote_time: list[float]  # submitted_at, epoch seconds
    vote_duration_ms: list[int]
    vote_gold_answer: list[str | None]
    # Decided and pending items (not gold).
    item_state: dict[str, str]
    item_value: dict[str, str | None]
    # Per annotator.
    gold: dict[str, tuple[int, int]]  # annotator -> (answered, correct)
    status: dict[str, str]
    confusions: dict[str, NDArray[np.float64]]
    class_priors: NDArray[np.float64] | None
    open_reviews: dict[str, int]  # kind -> count
    review_items: list[str] = field(default_factory=list)
    predictions: int = 0
    # Items accepted on the model's word (auto-accept), and the spot checks: for each
    # item drawn from auto-accept for humans and decided by them, (model, human) class.
    model_labels: int = 0
    spot_checks: list[tuple[str, str]] = field(default_factory=list)
    # annotator -> (wrong pre-labels followed, wrong pre-labels shown), on gold.
    anchoring: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Agreement:
    krippendorff_alpha: float | None
    fleiss_kappa: float | None
    mean_cohen_kappa: float | None
    items: int

    def metric(self, name: str) -> float | None:
        return {
            "krippendorff_alpha": self.krippendorff_alpha,
            "fleiss_kappa": self.fleiss_kappa,
            "cohen_kappa": self.mean_cohen_kappa,
        }.get(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "krippendorff_alpha": self.krippendorff_alpha,
            "fleiss_kappa": self.fleiss_kappa,
            "mean_cohen_kappa": self.mean_cohen_kappa,
            "items": self.items,
        }


def _safe(f: Any, *args: Any) -> float | None:
    try:
        value = float(f(*args))
    except AgreementError:
        return None
    return None if np.isnan(value) else value


def agreement(
    item_idx: NDArray[np.int64],
    annotator_idx: NDArray[np.int64],
    labels: NDArray[np.int64],
    n_classes: int,
) -> Agreement:
    """All three measures over the items with two or more votes."""
    if item_idx.size == 0:
        return Agreement(None, None, None, 0)
    _, compact = np.unique(item_idx, return_inverse=True)
    counts = counts_from_votes(compact, labels, int(compact.max()) + 1, n_classes)
    rated = counts[counts.sum(1) >= 2]
    return Agreement(
        _safe(krippendorff_alpha_counts, rated) if rated.size else None,
        _safe(fleiss_kappa, rated) if rated.size else None,
        _safe(pairwise_cohen_from_votes, compact, annotator_idx, labels, n_classes),
        int(rated.shape[0]),
    )


def class_agreement(
    item_idx: NDArray[np.int64], labels: NDArray[np.int64], n_classes: int, cls: int
) -> Agreement:
    """Agreement on "this class or not" (Fleiss' per-category kappa, binary alpha)."""
    if item_idx.size == 0:
        return Agreement(None, None, None, 0)
    _, compact = np.unique(item_idx, return_inverse=True)
    counts = counts_from_votes(compact, labels, int(compact.max()) + 1, n_classes)
    counts = counts[counts.sum(1) >= 2]
    binary = np.stack([counts[:, cls], counts.sum(1) - counts[:, cls]], axis=1)
    return Agreement(
        _safe(krippendorff_alpha_counts, binary) if binary.size else None,
        _safe(fleiss_kappa, binary) if binary.size else None,
        None,
        int(binary.shape[0]),
    )


@dataclass(frozen=True)
class Coded:
    """The votes as integer codes."""

    item: NDArray[np.int64]
    annotator: NDArray[np.int64]
    label: NDArray[np.int64]
    time: NDArray[np.float64]
    items: list[str]
    annotators: list[str]


def code_votes(data: ProjectData) -> Coded:
    index = {c: i for i, c in enumerate(data.classes)}
    keep = [n for n, v in enumerate(data.vote_value) if v in index]
    items, item_codes = np.unique(
        np.asarray([data.vote_item[n] for n in keep], dtype=object), return_inverse=True
    )
    annotators, annotator_codes = np.unique(
        np.asarray([data.vote_annotator[n] for n in keep], dtype=object), return_inverse=True
    )
    return Coded(
        item_codes.astype(np.int64),
        annotator_codes.astype(np.int64),
        np.asarray([index[data.vote_value[n]] for n in keep], dtype=np.int64),
        np.asarray([data.vote_time[n] for n in keep], dtype=float),
        [str(x) for x in items],
        [str(x) for x in annotators],
    )


def agreement_slices(data: ProjectData, coded: Coded, window_s: float = 0) -> list[dict[str, Any]]:
    """Agreement by class, by annotator (items they labeled) and by time window."""
    k = len(data.classes)
    slices: list[dict[str, Any]] = []
    for c, name in enumerate(data.classes):
        a = class_agreement(coded.item, coded.label, k, c)
        slices.append({"dimension": "class", "key": name, **a.as_dict()})
    for j, annotator in enumerate(coded.annotators):
        theirs = np.unique(coded.item[coded.annotator == j])
        on = np.isin(coded.item, theirs)
        a = agreement(coded.item[on], coded.annotator[on], coded.label[on], k)
        slices.append({"dimension": "annotator", "key": annotator, **a.as_dict()})
    if coded.item.size:
        # An item belongs to the window of its first vote.
        first = np.full(len(coded.items), np.inf)
        np.minimum.at(first, coded.item, coded.time)
        start = float(first.min())
        width = window_s if window_s > 0 else max(1.0, float(first.max()) - start + 1)
        window_of_item = ((first - start) // width).astype(np.int64)
        for w in np.unique(window_of_item):
            on = window_of_item[coded.item] == w
            a = agreement(coded.item[on], coded.annotator[on], coded.label[on], k)
            value = a.metric(data.agreement_metric)
            slices.append(
                {
                    "dimension": "window",
                    "key": f"{start + w * width:.0f}",
                    **a.as_dict(),
                    "done": value is not None and value >= data.agreement_threshold,
                }
            )
    return slices


def error_taxonomy(data: ProjectData) -> dict[str, Any]:
    """counts[consensus class][given class] over votes on decided items, and the top errors."""
    index = {c: i for i, c in enumerate(data.classes)}
    k = len(data.classes)
    table = np.zeros((k, k), dtype=np.int64)
    for item, value in zip(data.vote_item, data.vote_value, strict=True):
        truth = data.item_value.get(item)
        if (
            truth in index
            and value in index
            and data.item_state.get(item) in ("accepted", "expert")
        ):
            table[index[truth], index[value]] += 1
    cells = sorted(
        ((int(table[t, g]), t, g) for t in range(k) for g in range(k) if t != g and table[t, g]),
        reverse=True,
    )
    errors = [{"true": data.classes[t], "given": data.classes[g], "count": n} for n, t, g in cells]
    return {"classes": data.classes, "counts": table.tolist(), "top_errors": errors[:20]}


def annotator_scores(data: ProjectData) -> list[dict[str, Any]]:
    """Per annotator: gold accuracy with its bound, agreement with consensus, anchoring on
    wrong pre-labels, volume, speed."""
    rows: dict[str, dict[str, Any]] = {}
    durations: dict[str, list[int]] = {}
    matches: dict[str, list[int]] = {}
    for item, annotator, value, duration, gold in zip(
        data.vote_item,
        data.vote_annotator,
        data.vote_value,
        data.vote_duration_ms,
        data.vote_gold_answer,
        strict=True,
    ):
        durations.setdefault(annotator, []).append(duration)
        truth = data.item_value.get(item) if gold is None else None
        if truth is not None and data.item_state.get(item) in ("accepted", "expert"):
            matches.setdefault(annotator, []).append(int(value == truth))
    for annotator in sorted(set(data.vote_annotator) | set(data.gold)):
        answered, correct = data.gold.get(annotator, (0, 0))
        lower, upper = wilson_interval(correct, answered)
        agreed = matches.get(annotator, [])
        spent = durations.get(annotator, [])
        confusion = data.confusions.get(annotator)
        followed, shown = data.anchoring.get(annotator, (0, 0))
        a_low, a_high = wilson_interval(followed, shown)
        rows[annotator] = {
            "annotator_id": annotator,
            "gold_answered": answered,
            "gold_accuracy": correct / answered if answered else None,
            "gold_accuracy_interval": [lower, upper] if answered else None,
            "agreement_with_consensus": float(np.mean(agreed)) if agreed else None,
            "labels": len(spent),
            "median_seconds": float(np.median(spent)) / 1000 if spent else None,
            "status": data.status.get(annotator, "active"),
            "wrong_prelabels_shown": shown,
            "anchoring_rate": followed / shown if shown else None,
            "anchoring_interval": [a_low, a_high] if shown else None,
            "confusion": confusion.tolist() if confusion is not None else None,
            "estimated_accuracy": (
                float(np.diag(confusion) @ data.class_priors)
                if confusion is not None and data.class_priors is not None
                else None
            ),
        }
    return list(rows.values())


def _gold_items(
    items: Sequence[str],
    annotators: Sequence[str],
    values: Sequence[str],
    gold_answers: Sequence[str | None],
    classes: Sequence[str],
) -> list[tuple[int, list[int], list[str]]]:
    """(true class, labels, annotators) of every gold item with two votes or more."""
    index = {c: i for i, c in enumerate(classes)}
    by_item: dict[str, tuple[int, list[int], list[str]]] = {}
    for item, annotator, value, gold in zip(items, annotators, values, gold_answers, strict=True):
        if gold is None or gold not in index or value not in index:
            continue
        entry = by_item.setdefault(item, (index[gold], [], []))
        entry[1].append(index[value])
        entry[2].append(annotator)
    return [entry for entry in by_item.values() if len(entry[1]) >= 2]


def gold_trust_observations(
    items: Sequence[str],
    annotators: Sequence[str],
    values: Sequence[str],
    gold_answers: Sequence[str | None],
    classes: Sequence[str],
    confusions: dict[str, NDArray[np.float64]],
    class_priors: NDArray[np.float64] | None,
) -> tuple[list[float], list[bool]]:
    """The trust curve's evidence: for every gold item with two votes or more, the
    consensus its votes alone give (scored as any item is, `score_item`, its answer
    unknown): (score, whether the consensus value is the gold answer)."""
    k = len(classes)
    priors = class_priors if class_priors is not None else np.full(k, 1.0 / k)
    prior = prior_confusion(k)
    scores: list[float] = []
    right: list[bool] = []
    for truth, labels, voters in _gold_items(items, annotators, values, gold_answers, classes):
        posterior = score_item(labels, voters, confusions, priors, prior).posterior
        scores.append(float(np.max(posterior)))
        right.append(int(np.argmax(posterior)) == truth)
    return scores, right


def gold_crowd_accuracy(data: ProjectData) -> dict[str, Any]:
    """On gold items: how often majority vote and Dawid-Skene recover the known answer."""
    k = len(data.classes)
    priors = data.class_priors if data.class_priors is not None else np.full(k, 1.0 / k)
    prior = prior_confusion(k)
    mv_right = ds_right = n = 0
    for truth, labels, annotators in _gold_items(
        data.vote_item, data.vote_annotator, data.vote_value, data.vote_gold_answer, data.classes
    ):
        scored = score_item(labels, annotators, data.confusions, priors, prior)
        n += 1
        mv_right += int(scored.majority == truth)
        ds_right += int(int(np.argmax(scored.posterior)) == truth)
    return {
        "items": n,
        "majority_vote_accuracy": mv_right / n if n else None,
        "dawid_skene_accuracy": ds_right / n if n else None,
    }


def trust_curve(data: ProjectData) -> dict[str, Any]:
    """The trust curve fitted on the project's gold, as training's learned governance
    applies it: P(right | consensus score) at its knots."""
    scores, right = gold_trust_observations(
        data.vote_item,
        data.vote_annotator,
        data.vote_value,
        data.vote_gold_answer,
        data.classes,
        data.confusions,
        data.class_priors,
    )
    curve = trust.fit(scores, right)
    return {
        "gold_items": curve.gold,
        "gold_right": int(sum(right)),
        "prior_strength": curve.prior_strength,
        "scores": list(curve.scores),
        "right": list(curve.right),
    }


def coverage(data: ProjectData) -> dict[str, int]:
    """Decided items per class."""
    found = dict.fromkeys(data.classes, 0)
    for item, state in data.item_state.items():
        value = data.item_value.get(item)
        if state in ("accepted", "expert") and value in found:
            found[value] += 1
    return found


def model_labels(data: ProjectData) -> dict[str, Any]:
    """Auto-accepted items and how the humans' spot checks agree with the model."""
    checked = len(data.spot_checks)
    agreed = sum(model == human for model, human in data.spot_checks)
    lower, upper = wilson_interval(agreed, checked) if checked else (None, None)
    return {
        "auto_accepted": data.model_labels,
        "spot_checked": checked,
        "spot_check_agreement": agreed / checked if checked else None,
        "spot_check_agreement_95": [lower, upper],
    }


def limitations(
    data: ProjectData, scores: Sequence[dict[str, Any]], overall: Agreement
) -> list[str]:
    notes = []
    thin = [s["annotator_id"] for s in scores if s["labels"] < 20]
    if thin:
        notes.append(
            f"{len(thin)} annotator(s) have fewer than 20 labels; their confusion matrices "
            "lean on the prior and their figures are uncertain"
        )
    no_gold = [s["annotator_id"] for s in scores if s["gold_answered"] < 5]
    if no_gold:
        notes.append(
            f"{len(no_gold)} annotator(s) answered fewer than 5 gold items; gold accuracy "
            "cannot block or clear them yet"
        )
    if overall.items == 0:
        notes.append("no item has two human votes yet: agreement is undefined")
    if data.predictions == 0:
        notes.append(
            "no model predictions received: label-error detection (confident learning) has not run"
        )
    if data.class_priors is None:
        notes.append(
            "no Dawid-Skene estimate yet: consensus used the prior annotator model "
            "(equivalent to a weighted majority vote)"
        )
    empty = [c for c, n in coverage(data).items() if n == 0]
    if empty:
        notes.append(f"classes with no decided item: {', '.join(empty)}")
    if data.model_labels:
        found = model_labels(data)
        verdict = (
            f"humans agreed with the model on {found['spot_check_agreement']:.1%} of "
            f"{found['spot_checked']} spot checks"
            if found["spot_checked"]
            else "no spot check has been decided by humans yet"
        )
        notes.append(
            f"{data.model_labels} accepted item(s) carry model labels (auto-accept, method "
            f"model_auto_accept); {verdict}"
        )
    notes.append(
        "agreement is computed on human votes of items with two or more votes; expert and "
        "model labels are excluded"
    )
    return notes


def build_report(data: ProjectData, window_s: float = 3600) -> dict[str, Any]:
    """The whole report as JSON-ready data."""
    coded = code_votes(data)
    k = len(data.classes)
    overall = agreement(coded.item, coded.annotator, coded.label, k)
    value = overall.metric(data.agreement_metric)
    scores = annotator_scores(data)
    states: dict[str, int] = {}
    for state in data.item_state.values():
        states[state] = states.get(state, 0) + 1
    return {
        "project": data.project,
        "classes": data.classes,
        "agreement": {
            "overall": overall.as_dict(),
            "metric": data.agreement_metric,
            "threshold": data.agreement_threshold,
            "done": value is not None and value >= data.agreement_threshold,
            "slices": agreement_slices(data, coded, window_s),
        },
        "items": {
            "by_state": states,
            "votes": len(data.vote_item),
            "in_review": data.open_reviews,
            "review_items": data.review_items[:100],
        },
        "coverage": coverage(data),
        "model_labels": model_labels(data),
        "error_taxonomy": error_taxonomy(data),
        "annotators": scores,
        "gold_crowd_accuracy": gold_crowd_accuracy(data),
        "trust_curve": trust_curve(data),
        "gold_threshold": data.gold_threshold,
        "limitations": limitations(data, scores, overall),
    }
