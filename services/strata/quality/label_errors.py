"""Label-error detection, confident-learning style (Northcutt et al., 2021).

Given the consensus label of each item and the model's out-of-sample class
probabilities, an item is a suspected error when the model is *confidently*
in another class: its probability for that class reaches the class's
threshold (the mean probability the model gives that class on items labeled
with it), and that class wins among the confident ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _inputs(labels: ArrayLike, probs: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"need labels[n] and probs[n, k], got {y.shape} and {p.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be class indices in [0, {p.shape[1]})")
    return y, p


def class_thresholds(labels: ArrayLike, probs: ArrayLike) -> NDArray[np.float64]:
    """Per class: the mean probability of that class over the items labeled with it.

    A class nobody labeled gets threshold 1 (no item is confidently in it on that evidence).
    """
    y, p = _inputs(labels, probs)
    k = p.shape[1]
    sums = np.zeros(k)
    np.add.at(sums, y, p[np.arange(y.size), y])
    counts = np.bincount(y, minlength=k)
    return np.divide(sums, counts, out=np.ones(k), where=counts > 0)


def confident_classes(labels: ArrayLike, probs: ArrayLike) -> NDArray[np.int64]:
    """Per item: the class the model is confidently in, or -1 when none reaches its threshold."""
    y, p = _inputs(labels, probs)
    confident = p >= class_thresholds(y, p) - 1e-6
    n_confident = confident.sum(1)
    # One confident class: that one; several: the most probable overall.
    guess = np.where(n_confident > 1, p.argmax(1), confident.argmax(1))
    return np.where(n_confident > 0, guess, -1).astype(np.int64)


def confident_joint(labels: ArrayLike, probs: ArrayLike) -> NDArray[np.int64]:
    """joint[given, confident]: counts of items by consensus label and confident class.

    Each diagonal entry is at least 1, so every class keeps one clean example.
    """
    y, p = _inputs(labels, probs)
    k = p.shape[1]
    guess = confident_classes(y, p)
    keep = guess >= 0
    joint = np.bincount(y[keep] * k + guess[keep], minlength=k * k).reshape(k, k)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    return joint


@dataclass(frozen=True)
class LabelIssue:
    index: int  # position in the input
    given: int  # the consensus label
    suggested: int  # the class the model is confidently in
    self_confidence: float  # the model's probability of the given label (low = likelier error)


def find_label_issues(labels: ArrayLike, probs: ArrayLike) -> list[LabelIssue]:
    """Items off the confident joint's diagonal, most suspicious (lowest self-confidence) first."""
    y, p = _inputs(labels, probs)
    guess = confident_classes(y, p)
    off = np.nonzero((guess >= 0) & (guess != y))[0]
    issues = [LabelIssue(int(i), int(y[i]), int(guess[i]), float(p[i, y[i]])) for i in off]
    issues.sort(key=lambda issue: (issue.self_confidence, issue.index))
    return issues
