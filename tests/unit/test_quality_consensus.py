"""The consensus policy: posteriors from confusion matrices, and adaptive overlap."""

from __future__ import annotations

import numpy as np
import pytest
from strata.quality.consensus import (
    ACCEPTED,
    MORE,
    REVIEW,
    decide,
    item_posterior,
    overturned_agreement,
    prior_confusion,
    voter_weight,
)


def test_posterior_is_bayes_rule_over_the_votes() -> None:
    good = np.array([[0.9, 0.1], [0.2, 0.8]])
    spam = np.full((2, 2), 0.5)
    priors = np.array([0.5, 0.5])
    post = item_posterior([0, 0], [good, good], priors)
    expected = np.array([0.9 * 0.9, 0.2 * 0.2]) * 0.5
    np.testing.assert_allclose(post, expected / expected.sum())
    # A spammer's vote carries no information.
    np.testing.assert_allclose(item_posterior([1], [spam], priors), priors)
    # A reliable annotator outweighs two coin-flippers.
    assert item_posterior([1, 0, 0], [good, spam, spam], priors).argmax() == 1


def test_prior_confusion_and_weights() -> None:
    c = prior_confusion(4, 0.7)
    np.testing.assert_allclose(c.sum(1), 1.0)
    assert c[2, 2] == pytest.approx(0.7) and c[2, 0] == pytest.approx(0.1)
    assert voter_weight(c, np.full(4, 0.25)) == pytest.approx(0.7)
    with pytest.raises(ValueError):
        prior_confusion(1)


def test_decisions_follow_the_contract() -> None:
    sure, unsure = np.array([0.95, 0.05]), np.array([0.6, 0.4])
    kw = {"overlap_min": 3, "overlap_max": 5, "threshold": 0.9}
    assert decide(sure, 2, **kw) is None
    accepted = decide(sure, 3, **kw)
    assert accepted is not None and accepted.status == ACCEPTED and accepted.score == 0.95
    more = decide(unsure, 3, **kw)
    assert more is not None and more.status == MORE and more.requested_overlap == 4
    review = decide(unsure, 5, **kw)
    assert review is not None and review.status == REVIEW and review.value == 0


def test_adaptive_overlap_spends_fewer_labels_than_fixed_max_at_equal_accuracy() -> None:
    rng = np.random.default_rng(11)
    k, n_items, o_min, o_max = 4, 3000, 3, 5
    accuracies = rng.choice([0.95, 0.8, 0.6], 30, p=[0.3, 0.5, 0.2])
    confusions = [prior_confusion(k, a) for a in accuracies]
    priors = np.full(k, 1 / k)
    truth = rng.integers(0, k, n_items)

    def vote(i: int, j: int) -> int:
        return int(truth[i] if rng.random() < accuracies[j] else rng.integers(0, k))

    fixed_correct = adaptive_correct = fixed_labels = adaptive_labels = 0
    for i in range(n_items):
        crowd = rng.choice(len(accuracies), o_max, replace=False)
        votes = [vote(i, j) for j in crowd]
        post = item_posterior(votes, [confusions[j] for j in crowd], priors)
        fixed_correct += int(post.argmax() == truth[i])
        fixed_labels += o_max
        n = o_min
        while True:
            post = item_posterior(votes[:n], [confusions[j] for j in crowd[:n]], priors)
            d = decide(post, n, overlap_min=o_min, overlap_max=o_max, threshold=0.97)
            assert d is not None
            if d.status != MORE:
                break
            n = d.requested_overlap
        adaptive_correct += int(d.value == truth[i])
        adaptive_labels += n
    assert adaptive_labels < 0.8 * fixed_labels
    assert adaptive_correct >= fixed_correct - 0.01 * n_items


def test_an_expert_overturning_a_unanimous_crowd_needs_a_second_opinion() -> None:
    crowd = [("a1", "cat"), ("a2", "cat")]
    assert overturned_agreement(crowd, "e1", "dog", ["e1"], at_least=2) == "cat"
    # Agreeing with the crowd, or a crowd too small or split: the answer stands.
    assert overturned_agreement(crowd, "e1", "cat", ["e1"], at_least=2) is None
    assert overturned_agreement(crowd, "e1", "dog", ["e1"], at_least=3) is None
    assert overturned_agreement([*crowd, ("a3", "dog")], "e1", "dog", ["e1"], 2) is None
    assert overturned_agreement([], "e1", "dog", ["e1"], at_least=2) is None
    # One annotator voting twice is one annotator.
    assert overturned_agreement([("a1", "cat"), ("a1", "cat")], "e1", "dog", ["e1"], 2) is None
    # The second expert decides, whichever way; 0 turns the rule off.
    assert overturned_agreement(crowd, "e2", "dog", ["e1", "e2"], at_least=2) is None
    assert overturned_agreement(crowd, "e1", "dog", ["e1"], at_least=0) is None
