"""Active-learning strategies: uncertainty scores and diverse batch selection (pure numpy).

Every score is "higher = more worth a human label", so strategies compare and
combine directly. Probabilities are [n, k] arrays (rows sum to one); MC-dropout
samples for BALD are [t, n, k].
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

_TINY = 1e-12


def _probs(probs: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be [n_items, n_classes >= 2], got {p.shape}")
    return p


def least_confidence(probs: ArrayLike) -> NDArray[np.float64]:
    """1 - p(top class)."""
    return 1.0 - _probs(probs).max(1)


def margin(probs: ArrayLike) -> NDArray[np.float64]:
    """1 - (p(top class) - p(second class)): a small gap between the top two is uncertain."""
    p = _probs(probs)
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(probs: ArrayLike) -> NDArray[np.float64]:
    """Shannon entropy of the predicted distribution, in nats."""
    p = _probs(probs)
    return -(p * np.log(np.clip(p, _TINY, None))).sum(1)


def bald(mc_probs: ArrayLike) -> NDArray[np.float64]:
    """Mutual information between prediction and weights (BALD), from [t, n, k] MC samples.

    Entropy of the mean prediction minus the mean entropy of the samples: high
    when the samples disagree with each other, not merely when each is unsure.
    """
    s = np.asarray(mc_probs, dtype=float)
    if s.ndim != 3 or s.shape[0] < 2:
        raise ValueError(f"MC samples must be [t >= 2, n_items, n_classes], got {s.shape}")
    mean = s.mean(0)
    expected = -(s * np.log(np.clip(s, _TINY, None))).sum(2).mean(0)
    return np.clip(entropy(mean) - expected, 0.0, None)


STRATEGIES = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}


def select_batch(
    scores: ArrayLike,
    embeddings: ArrayLike | None,
    k: int,
    diversity: str = "kcenter",
    candidates: int | None = None,
) -> NDArray[np.int64]:
    """Indices of `k` items to label: informative, and (with k-center) spread out.

    `diversity="kcenter"` takes the `candidates` best-scored items (default 10k)
    and picks greedily the one whose score times its distance to everything
    already chosen is largest, so a batch covers several confusions instead of
    twenty copies of one. `diversity="none"` is plain top-k by score.
    """
    s = np.asarray(scores, dtype=float)
    n = s.size
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if diversity not in ("kcenter", "none"):
        raise ValueError(f"diversity must be 'kcenter' or 'none', got {diversity!r}")
    m = min(n, max(k, candidates if candidates is not None else max(10 * k, 10_000)))
    top = np.argpartition(-s, m - 1)[:m] if m < n else np.arange(n)
    top = top[np.argsort(-s[top], kind="stable")]
    if diversity == "none" or embeddings is None or k == m:
        return top[:k].astype(np.int64)
    x = np.asarray(embeddings, dtype=np.float32)[top]
    if x.ndim != 2:
        raise ValueError(f"embeddings must be [n_items, dim], got {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
    weight = s[top] - s[top].min() + 1e-6
    weight = weight / weight.max()
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = 0
    # Squared distance to the nearest chosen item, kept up to date incrementally:
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, one matrix-vector product a step (not an
    # m x d difference array), clipped at 0 against rounding.
    squares = np.einsum("ij,ij->i", x, x)

    def distance_to(pick: int) -> NDArray[np.float32]:
        return np.maximum(squares + squares[pick] - 2.0 * (x @ x[pick]), 0.0)

    nearest = distance_to(0)
    nearest[0] = -1.0
    for step in range(1, k):
        pick = int(np.argmax(weight * nearest))
        chosen[step] = pick
        nearest = np.minimum(nearest, distance_to(pick))
        nearest[chosen[: step + 1]] = -1.0
    return top[chosen].astype(np.int64)


def class_boost(
    predicted: ArrayLike, n_classes: int, rare_weight: float = 0.5
) -> NDArray[np.float64]:
    """A multiplier per item that favours items predicted as rare classes (1 = common)."""
    c = np.asarray(predicted, dtype=np.int64)
    if c.size == 0:
        return np.ones(0)
    share = np.bincount(c, minlength=n_classes) / c.size
    rarity = 1.0 - share / max(share.max(), _TINY)
    return 1.0 + rare_weight * rarity[c]
