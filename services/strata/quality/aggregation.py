"""Label aggregation: majority vote and Dawid-Skene, vectorised over flat vote arrays.

Votes are three parallel integer arrays: `item_idx`, `annotator_idx`, `labels`
(class indices). Everything is O(votes * classes) per iteration with bincount,
so a million votes aggregate in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from strata.quality.agreement import counts_from_votes

# Floor for expected counts, so no observed answer ever has probability zero.
_EPS = float(np.finfo(float).eps)


@dataclass(frozen=True)
class DawidSkeneResult:
    posteriors: NDArray[np.float64]  # [n_items, n_classes]
    confusions: NDArray[np.float64]  # [n_annotators, true class, given class]
    class_priors: NDArray[np.float64]  # [n_classes]
    iterations: int
    converged: bool


def _check(
    item_idx: ArrayLike, labels: ArrayLike, n_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    i, y = np.asarray(item_idx, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    if i.shape != y.shape or i.ndim != 1:
        raise ValueError("item_idx and labels must be 1-d arrays of the same length")
    if i.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be class indices in [0, {n_classes})")
    return i, y


def majority_vote(
    item_idx: ArrayLike,
    labels: ArrayLike,
    n_classes: int,
    n_items: int | None = None,
    weights: ArrayLike | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """(winner per item, share of the winner's (weighted) votes); ties go to the lower class.

    Items with no votes get class -1 and share 0.
    """
    i, y = _check(item_idx, labels, n_classes)
    n = int(n_items if n_items is not None else (i.max() + 1 if i.size else 0))
    w = np.ones(i.size) if weights is None else np.asarray(weights, dtype=float)
    tally = np.bincount(i * n_classes + y, weights=w, minlength=n * n_classes).reshape(n, n_classes)
    totals = tally.sum(1)
    winners = tally.argmax(1)
    share = np.divide(tally.max(1), totals, out=np.zeros(n), where=totals > 0)
    winners[totals == 0] = -1
    return winners.astype(np.int64), share


def dawid_skene(
    item_idx: ArrayLike,
    annotator_idx: ArrayLike,
    labels: ArrayLike,
    n_classes: int,
    *,
    n_items: int | None = None,
    n_annotators: int | None = None,
    max_iter: int = 200,
    tol: float = 1e-5,
    prior_strength: float = 2.0,
    prior_accuracy: float = 0.7,
    known_items: ArrayLike | None = None,
    known_classes: ArrayLike | None = None,
) -> DawidSkeneResult:
    """Dawid-Skene EM: per-annotator confusion matrices and item class posteriors.

    Starts from majority-vote shares. Each annotator's confusion matrix gets
    `prior_strength` pseudo-votes per true class, `prior_accuracy` of them on the
    diagonal, so an annotator with a handful of labels is assumed decent rather
    than perfect or useless; with many labels the data dominates. The class
    priors get `prior_strength` pseudo-items per class, so that early on, with a
    few items, no class is ruled out. Items whose true class is known (gold:
    `known_items` with `known_classes`) keep it throughout: they anchor the
    classes' meaning (no label switching) and measure each annotator on truth.
    Set `prior_strength=0` and give no known items for the classical
    (maximum-likelihood) algorithm. Stops when no posterior moves by more than
    `tol` in an iteration.
    """
    i, y = _check(item_idx, labels, n_classes)
    j = np.asarray(annotator_idx, dtype=np.int64)
    if j.shape != i.shape:
        raise ValueError("annotator_idx must have one entry per vote")
    k = n_classes
    n_i = int(n_items if n_items is not None else i.max() + 1)
    n_j = int(n_annotators if n_annotators is not None else j.max() + 1)

    counts = counts_from_votes(i, y, n_i, k).astype(float)
    totals = counts.sum(1, keepdims=True)
    posteriors = np.divide(counts, totals, out=np.full_like(counts, 1.0 / k), where=totals > 0)
    known = np.asarray([] if known_items is None else known_items, dtype=np.int64)
    truth = np.asarray([] if known_classes is None else known_classes, dtype=np.int64)
    if known.shape != truth.shape:
        raise ValueError("known_items and known_classes must have one entry each")
    if known.size and (
        known.min() < 0 or known.max() >= n_i or truth.min() < 0 or truth.max() >= k
    ):
        raise ValueError(f"known items must be in [0, {n_i}) and their classes in [0, {k})")
    pinned = np.zeros((known.size, k))
    pinned[np.arange(known.size), truth] = 1.0
    if known.size:
        # The first M-step learns the annotators from the known items alone: a majority
        # that agrees on a wrong answer then cannot define what the classes mean.
        posteriors = np.zeros_like(posteriors)
    posteriors[known] = pinned

    off = (1.0 - prior_accuracy) / (k - 1) if k > 1 else 0.0
    prior = prior_strength * (np.full((k, k), off) + np.eye(k) * (prior_accuracy - off))
    # Votes grouped by (annotator, given label): row index j*k + y.
    cell = j * k + y
    converged = False
    iterations = 0
    confusions = np.zeros((n_j, k, k))
    class_priors = np.full(k, 1.0 / k)
    for _ in range(max_iter):
        iterations += 1
        # M-step: expected counts of (true class t, given label l) per annotator.
        mass = np.stack(
            [np.bincount(cell, weights=posteriors[i, t], minlength=n_j * k) for t in range(k)],
            axis=1,
        )  # [n_j*k (annotator, given), true]
        expected = mass.reshape(n_j, k, k).transpose(0, 2, 1) + prior  # [annotator, true, given]
        np.clip(expected, _EPS, None, out=expected)
        row = expected.sum(2, keepdims=True)
        confusions = np.divide(expected, row, out=np.full_like(expected, 1.0 / k), where=row > 0)
        class_mass = posteriors.sum(0) + prior_strength
        class_priors = (
            class_mass / class_mass.sum() if class_mass.sum() > 0 else np.full(k, 1.0 / k)
        )
        # E-step: log p(true = t | votes) for every item.
        log_conf = np.log(np.clip(confusions, 1e-300, None))
        per_vote = log_conf.transpose(0, 2, 1).reshape(n_j * k, k)[cell]  # [votes, true]
        log_post = np.stack(
            [np.bincount(i, weights=per_vote[:, t], minlength=n_i) for t in range(k)], axis=1
        )
        log_post += np.log(np.clip(class_priors, 1e-300, None))
        log_post -= log_post.max(1, keepdims=True)
        new = np.exp(log_post)
        new /= new.sum(1, keepdims=True)
        new[known] = pinned
        delta = float(np.abs(new - posteriors).max()) if iterations > 1 or not known.size else 1.0
        posteriors = new
        if delta < tol:
            converged = True
            break
    return DawidSkeneResult(posteriors, confusions, class_priors, iterations, converged)
