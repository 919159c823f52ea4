"""Confident-learning label-error detection against cleanlab, the reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.count import compute_confident_joint, get_confident_thresholds
from strata.quality.label_errors import (
    class_thresholds,
    confident_joint,
    find_label_issues,
)


def noisy_problem(seed: int, n: int = 400, k: int = 5, noise: float = 0.2):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    labels = truth.copy()
    flip = rng.random(n) < noise
    labels[flip] = (truth[flip] + rng.integers(1, k, flip.sum())) % k
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += rng.uniform(0.5, 4, n)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return truth, labels, probs, flip


@pytest.mark.parametrize("seed", range(8))
def test_thresholds_joint_and_issues_match_cleanlab(seed: int) -> None:
    _, labels, probs, _ = noisy_problem(seed)
    np.testing.assert_allclose(
        class_thresholds(labels, probs), get_confident_thresholds(labels, probs), atol=1e-12
    )
    joint, off_diagonal = compute_confident_joint(
        labels, probs, calibrate=False, return_indices_of_off_diagonals=True
    )
    np.testing.assert_array_equal(confident_joint(labels, probs), joint)
    found = sorted(issue.index for issue in find_label_issues(labels, probs))
    assert found == sorted(int(i) for i in off_diagonal)


def test_issues_are_mostly_the_flipped_labels_most_suspicious_first() -> None:
    _, labels, probs, flip = noisy_problem(11, n=2000, noise=0.15)
    issues = find_label_issues(labels, probs)
    flagged = np.asarray([i.index for i in issues])
    precision = flip[flagged].mean()
    recall = flip[flagged].sum() / flip.sum()
    assert precision > 0.6 and recall > 0.4
    confidences = [i.self_confidence for i in issues]
    assert confidences == sorted(confidences)
    assert all(i.given == labels[i.index] and i.suggested != i.given for i in issues)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="labels\\[n\\] and probs\\[n, k\\]"):
        find_label_issues([0, 1], np.ones((3, 2)) / 2)
    with pytest.raises(ValueError, match="class indices"):
        find_label_issues([0, 2], np.ones((2, 2)) / 2)
