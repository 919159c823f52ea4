"""Pairwise agreement between annotators against scikit-learn's Cohen's kappa."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from strata.quality.pairwise import code_labels, kappa_from_counts, pair_agreements


def sklearn_kappa(a: np.ndarray, b: np.ndarray, k: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined when chance agreement is total
        return float(cohen_kappa_score(a, b, labels=list(range(k))))


@pytest.mark.parametrize("seed", range(12))
def test_every_pair_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, n_annotators, k = int(rng.integers(5, 200)), int(rng.integers(2, 9)), 4
    truth = rng.integers(0, k, n_items)
    skill = rng.random(n_annotators)
    # A dense matrix (-1: not labelled) as the reference; flat votes for the function.
    matrix = np.full((n_items, n_annotators), -1)
    for j in range(n_annotators):
        labelled = rng.random(n_items) < rng.uniform(0.2, 1.0)
        given = np.where(rng.random(n_items) < skill[j], truth, rng.integers(0, k, n_items))
        matrix[labelled, j] = given[labelled]
    items, annotators = np.nonzero(matrix >= 0)
    order = rng.permutation(items.size)  # the function must not rely on any order
    found = {
        (p.a, p.b): p
        for p in pair_agreements(
            items[order], annotators[order], matrix[items, annotators][order], k
        )
    }
    expected = set()
    for a in range(n_annotators):
        for b in range(a + 1, n_annotators):
            both = (matrix[:, a] >= 0) & (matrix[:, b] >= 0)
            if not both.any():
                continue
            expected.add((a, b))
            x, y = matrix[both, a], matrix[both, b]
            pair = found[(a, b)]
            assert pair.shared_items == both.sum()
            assert pair.agreed == (x == y).sum()
            if both.sum() < 2:
                assert math.isnan(pair.cohen_kappa)
            else:
                reference = sklearn_kappa(x, y, k)
                if math.isnan(reference):
                    assert math.isnan(pair.cohen_kappa)
                else:
                    assert pair.cohen_kappa == pytest.approx(reference, abs=1e-9)
    assert set(found) == expected
    assert list(found) == sorted(found)


def test_kappa_is_nan_when_undefined() -> None:
    # One shared item.
    [one] = pair_agreements([0, 0], [0, 1], [2, 2], 3)
    assert (one.shared_items, one.agreed) == (1, 1) and math.isnan(one.cohen_kappa)
    # Both always gave one and the same class: chance agreement is total.
    [same] = pair_agreements([0, 0, 1, 1, 2, 2], [0, 1] * 3, [1] * 6, 3)
    assert (same.shared_items, same.agreed) == (3, 3) and math.isnan(same.cohen_kappa)
    assert math.isnan(sklearn_kappa(np.ones(3, int), np.ones(3, int), 3))
    # Each constant but in different classes: defined (0), as scikit-learn says.
    [apart] = pair_agreements([0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 0, 1], 3)
    assert apart.cohen_kappa == pytest.approx(sklearn_kappa(np.zeros(2, int), np.ones(2, int), 3))
    assert math.isnan(kappa_from_counts([0], [0], [[0, 0]], [[0, 0]])[0])


def test_near_total_chance_agreement_is_still_a_number() -> None:
    # 100,000 shared items, one of which differs: p_e is 0.99999, not 1.
    n = 100_000
    a, b = np.zeros(n, int), np.zeros(n, int)
    b[0] = 1
    [pair] = pair_agreements(np.r_[np.arange(n), np.arange(n)], np.r_[a, a + 1], np.r_[a, b], 2)
    assert pair.cohen_kappa == pytest.approx(sklearn_kappa(a, b, 2), abs=1e-9)


def test_items_with_one_annotator_and_no_votes_give_no_pairs() -> None:
    assert pair_agreements([], [], [], 3) == []
    assert pair_agreements([0, 1, 2], [0, 1, 2], [0, 1, 2], 3) == []


def test_a_second_vote_of_one_annotator_on_an_item_is_refused() -> None:
    with pytest.raises(ValueError, match="one vote per"):
        pair_agreements([0, 0], [1, 1], [0, 1], 2)


def test_labels_outside_the_classes_get_their_own_codes() -> None:
    codes, k = code_labels(["dog", "cat", "owl", "dog", "owl"], ["cat", "dog", "bird"])
    assert codes.tolist() == [1, 0, 3, 1, 3] and k == 4
    assert code_labels([], []) == (pytest.approx([]), 1)
