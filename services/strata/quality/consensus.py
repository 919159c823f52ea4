"""Per-item consensus: posterior over classes from the votes, and what to do next.

The posterior uses each annotator's estimated confusion matrix (from the
project-wide Dawid-Skene re-estimation); annotators not estimated yet get
the prior matrix. The decision is the adaptive-overlap policy: accept when the
posterior of the best class reaches the contract's threshold, otherwise ask
for one more annotator up to `overlap.max`, then send the item to an expert.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

ACCEPTED = "accepted"
MORE = "more"
REVIEW = "review"


def prior_confusion(n_classes: int, accuracy: float = 0.7) -> NDArray[np.float64]:
    """The confusion matrix assumed for an annotator nothing is known about yet."""
    if n_classes < 2:
        raise ValueError("a contract has at least two classes")
    off = (1.0 - accuracy) / (n_classes - 1)
    return np.full((n_classes, n_classes), off) + np.eye(n_classes) * (accuracy - off)


def item_posterior(
    labels: Sequence[int],
    confusions: Sequence[NDArray[np.float64]],
    class_priors: NDArray[np.float64],
) -> NDArray[np.float64]:
    """p(true class | votes): prior times each voter's p(given label | true class)."""
    if len(labels) != len(confusions):
        raise ValueError("one confusion matrix per vote")
    log_post = np.log(np.clip(class_priors, 1e-300, None)).copy()
    for label, confusion in zip(labels, confusions, strict=True):
        log_post += np.log(np.clip(confusion[:, label], 1e-300, None))
    log_post -= log_post.max()
    post = np.exp(log_post)
    return post / post.sum()


def voter_weight(confusion: NDArray[np.float64], class_priors: NDArray[np.float64]) -> float:
    """An annotator's estimated accuracy: the prior-weighted diagonal of their matrix."""
    return float(np.diag(confusion) @ class_priors)


@dataclass(frozen=True)
class Decision:
    status: str  # accepted | more | review
    value: int  # index of the best class
    score: float  # its posterior probability
    requested_overlap: int  # votes wanted in all (for `more`)


def decide(
    posterior: NDArray[np.float64],
    votes: int,
    *,
    overlap_min: int,
    overlap_max: int,
    threshold: float,
) -> Decision | None:
    """None while fewer than `overlap_min` votes are in; otherwise what happens next."""
    if votes < overlap_min:
        return None
    best = int(np.argmax(posterior))
    score = float(posterior[best])
    if score >= threshold:
        return Decision(ACCEPTED, best, score, votes)
    if votes < overlap_max:
        return Decision(MORE, best, score, votes + 1)
    return Decision(REVIEW, best, score, votes)


@dataclass(frozen=True)
class ItemScore:
    posterior: NDArray[np.float64]
    weights: list[float]  # one per vote: the voter's estimated accuracy
    majority: int  # the plain majority-vote winner (ties to the lower class)


def score_item(
    labels: Sequence[int],
    annotators: Sequence[str],
    confusions: dict[str, NDArray[np.float64]],
    class_priors: NDArray[np.float64],
    prior: NDArray[np.float64],
) -> ItemScore:
    """Posterior, vote weights and majority for one item; unknown voters get `prior`."""
    matrices = [confusions.get(a, prior) for a in annotators]
    posterior = item_posterior(labels, matrices, class_priors)
    weights = [voter_weight(m, class_priors) for m in matrices]
    tally = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_priors))
    return ItemScore(posterior, weights, int(np.argmax(tally)))


def overturned_agreement(
    crowd: Sequence[tuple[str, str]],
    expert_id: str,
    answer: str,
    experts: Sequence[str],
    at_least: int,
) -> str | None:
    """The value a unanimous crowd gave that an expert's review answer overturns, when a
    second expert should decide; None when the answer stands.

    `crowd` holds (annotator, value) for the item's human votes; `experts` the annotators
    who answered its review tasks so far (`expert_id` among them). The answer stands when
    another expert has already answered (this one is the second opinion), when fewer than
    `at_least` distinct annotators voted (0 turns the rule off), or when they disagreed
    among themselves: one expert settles a split crowd, not a unanimous one.
    """
    if at_least < 1 or any(e != expert_id for e in experts):
        return None
    values = {value for _, value in crowd}
    if len(values) != 1 or len({annotator for annotator, _ in crowd}) < at_least:
        return None
    (agreed,) = values
    return None if agreed == answer else agreed
