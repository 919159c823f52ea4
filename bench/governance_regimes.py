"""Noise regimes for `bench/governance.py`: training labels made the way the product
makes them, from simulated annotators' votes aggregated by quality's Dawid-Skene
(`strata.quality.aggregation.dawid_skene`, quality's default priors). Each regime
gives, per training item, its consensus value and score; `describe` says how wrong
they are and where the wrong ones sit. The regimes are described in
`bench/governance.py`'s docstring."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from strata.demo.crowd import DIGIT_LOOKALIKES, Annotator, confusion, digits_crowd, spammer
from strata.quality.aggregation import dawid_skene
from strata.quality.config import QualityConfig
from strata.training.arms import DROP_BELOW

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]

K = 10  # classes, in both families
LOOKALIKE = np.array([DIGIT_LOOKALIKES[c] for c in range(K)], dtype=np.int64)
CAREFUL = (0.95, 0.93, 0.92, 0.9, 0.88, 0.86)  # the demo crowd's good annotators
WEAK_ACCURACY, WEAK_ANNOTATORS, VENDOR_SHARE = 0.3, 3, 0.5
RING, COLLUDED_SHARE = 3, 0.2
EXTRA_SPAMMERS, OVERLAP_MIN, OVERLAP_MAX, CONSENSUS_THRESHOLD = 3, 2, 4, 0.9


@dataclass(frozen=True)
class Labels:
    """One regime's training labels: the consensus value and score of each item."""

    value: Ints
    score: Floats
    votes_per_item: float
    extra: dict[str, float] = field(default_factory=dict)


def _answers(confusions: Floats, annotator: Ints, truth: Ints, rng: np.random.Generator) -> Ints:
    """Each vote's answer, drawn from its annotator's confusion row for the truth (as
    `Annotator.answer` draws it, without pre-labels), vectorised."""
    cdf = np.cumsum(confusions[annotator, truth], axis=1)
    drawn = (rng.random(len(truth))[:, None] > cdf).sum(axis=1)
    return np.minimum(drawn, K - 1).astype(np.int64)


def _consensus(
    item: Ints, annotator: Ints, answer: Ints, n_items: int, n_annotators: int
) -> tuple[Ints, Floats]:
    """Dawid-Skene over the votes, with quality's default priors: (value, score) per item."""
    config = QualityConfig()
    result = dawid_skene(
        item,
        annotator,
        answer,
        K,
        n_items=n_items,
        n_annotators=n_annotators,
        prior_strength=config.prior_strength,
        prior_accuracy=config.prior_accuracy,
    )
    return result.posteriors.argmax(axis=1).astype(np.int64), result.posteriors.max(axis=1)


def _distinct(rng: np.random.Generator, among: int, count: int, rows: int) -> Ints:
    """`count` distinct annotators in [0, among) for each of `rows` items."""
    return np.argsort(rng.random((rows, among)), axis=1)[:, :count].astype(np.int64)


def _vendor_votes(truth: Ints, seed: int) -> Labels:
    """Careful annotators and a weak vendor (see the module's docstring)."""
    rng = np.random.default_rng((seed, 1))
    n = len(truth)
    careful = [confusion(a, K, DIGIT_LOOKALIKES) for a in CAREFUL]
    weak = [confusion(WEAK_ACCURACY, K) for _ in range(WEAK_ANNOTATORS)]
    matrices = np.stack(careful + weak)
    first_weak = len(careful)
    vendor = rng.random(n) < VENDOR_SHARE
    voters = np.empty((n, 3), dtype=np.int64)
    voters[vendor] = first_weak + _distinct(rng, WEAK_ANNOTATORS, 3, int(vendor.sum()))
    mixed = int((~vendor).sum())
    voters[~vendor, :2] = _distinct(rng, first_weak, 2, mixed)
    voters[~vendor, 2] = first_weak + rng.integers(0, WEAK_ANNOTATORS, mixed)
    item = np.repeat(np.arange(n), 3)
    annotator = voters.ravel()
    answer = _answers(matrices, annotator, truth[item], rng)
    value, score = _consensus(item, annotator, answer, n, len(matrices))
    return Labels(value, score, 3.0)


def low_consensus_noise(truth: Ints, seed: int) -> Labels:
    return _vendor_votes(truth, seed)


def even_noise(truth: Ints, seed: int) -> Labels:
    """The vendor's scores; as many wrong labels as it gives, flipped at random."""
    votes = _vendor_votes(truth, seed)
    rng = np.random.default_rng((seed, 2))
    n = len(truth)
    flipped = rng.permutation(n)[: int((votes.value != truth).sum())]
    value = truth.copy()
    value[flipped] = (truth[flipped] + rng.integers(1, K, len(flipped))) % K
    return Labels(value, votes.score, votes.votes_per_item)


def clean(truth: Ints, seed: int) -> Labels:
    votes = _vendor_votes(truth, seed)
    return Labels(truth.copy(), votes.score, votes.votes_per_item)


def colluding(truth: Ints, seed: int) -> Labels:
    """A ring that takes some items between them and agrees on the look-alike class."""
    rng = np.random.default_rng((seed, 3))
    n = len(truth)
    accuracies = list(CAREFUL) + [0.92] * RING
    matrices = np.stack([confusion(a, K, DIGIT_LOOKALIKES) for a in accuracies])
    ring = np.arange(len(CAREFUL), len(accuracies))
    colluded = rng.random(n) < COLLUDED_SHARE
    voters = _distinct(rng, len(accuracies), 3, n)
    voters[colluded] = ring
    item = np.repeat(np.arange(n), 3)
    annotator = voters.ravel()
    answer = _answers(matrices, annotator, truth[item], rng)
    planted = colluded[item]
    answer[planted] = LOOKALIKE[truth[item][planted]]
    value, score = _consensus(item, annotator, answer, n, len(matrices))
    return Labels(value, score, 3.0, {"colluded_share": float(colluded.mean())})


def spammers(truth: Ints, seed: int) -> Labels:
    """The demo's crowd and more of its spammers, with the demo's adaptive overlap."""
    rng = np.random.default_rng((seed, 4))
    n = len(truth)
    favourites = rng.choice(K, EXTRA_SPAMMERS, replace=False)
    crowd = [a for a in digits_crowd(K) if not a.reviewer] + [
        Annotator(f"spammer-{i + 2}", "spammer", spammer(K, int(f)), 0.5)
        for i, f in enumerate(favourites)
    ]
    matrices = np.stack([a.confusion for a in crowd])
    speed = np.array([1.0 / a.seconds_per_label for a in crowd])
    # The order annotators reach each item: drawn in proportion to speed, without
    # replacement (Gumbel top-k); vote j of an item is from its j-th annotator.
    keys = np.log(speed)[None, :] + rng.gumbel(size=(n, len(crowd)))
    order = np.argsort(-keys, axis=1)[:, :OVERLAP_MAX].astype(np.int64)
    answers = _answers(matrices, order.ravel(), np.repeat(truth, OVERLAP_MAX), rng)
    answers = answers.reshape(n, OVERLAP_MAX)
    count = np.full(n, OVERLAP_MIN)
    while True:
        cast = np.arange(OVERLAP_MAX)[None, :] < count[:, None]
        item = np.nonzero(cast)[0].astype(np.int64)
        value, score = _consensus(item, order[cast], answers[cast], n, len(crowd))
        more = (score < CONSENSUS_THRESHOLD) & (count < OVERLAP_MAX)
        if not more.any():
            break
        count[more] += 1
    is_spammer = np.array([a.kind == "spammer" for a in crowd])
    share = float(is_spammer[order[cast]].mean())
    return Labels(value, score, float(count.mean()), {"spammer_vote_share": share})


REGIMES: dict[str, Callable[[Ints, int], Labels]] = {
    "low-consensus-noise": low_consensus_noise,
    "even-noise": even_noise,
    "clean": clean,
    "colluding": colluding,
    "spammers": spammers,
}


def describe(labels: Labels, truth: Ints) -> dict[str, float]:
    wrong = labels.value != truth
    low = labels.score < DROP_BELOW
    shares = {
        "wrong_share": float(wrong.mean()),
        "under_0.7_share": float(low.mean()),
        "wrong_labels_under_0.7_share": float(low[wrong].mean()) if wrong.any() else 0.0,
        "wrong_among_under_0.7": float(wrong[low].mean()) if low.any() else 0.0,
        "votes_per_item": labels.votes_per_item,
        **labels.extra,
    }
    return {key: round(value, 4) for key, value in shares.items()}
