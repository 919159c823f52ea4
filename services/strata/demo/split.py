"""The demo's data: scikit-learn's digits split into pool, gold and a test split nobody
labels, with planted twins (near-copies of pool images the crowd misreads)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from strata.v1 import common_pb2

EMPTY = np.zeros(0, dtype=np.int64)
# The sampler's default cosine from which two feature vectors are near-duplicates
# (STRATA_SAMPLER_VECTOR_DUP_THRESHOLD): a twin stays below it, or it would be merged.
NEAR_DUPLICATE_COSINE = 0.98
# Pixel noise (pixels are 0..1) that puts a twin at a cosine of about 0.95 to its
# original: below the threshold, and nearer to it than to any other digit (the median
# digit's nearest neighbour is at 0.97, but not nearer than its original).
TWIN_NOISE = 0.2


@dataclass(frozen=True)
class Split:
    x: NDArray[np.float32]
    y: NDArray[np.int64]  # a twin's is its original's class: the truth
    pool: NDArray[np.int64]  # twins included
    gold: NDArray[np.int64]
    test: NDArray[np.int64]
    # Pool images that have a planted twin, and their twins in the same order.
    originals: NDArray[np.int64] = field(default_factory=lambda: EMPTY)
    twins: NDArray[np.int64] = field(default_factory=lambda: EMPTY)

    @property
    def pairs(self) -> NDArray[np.int64]:
        """The pool items imported first: the originals and their twins."""
        return np.concatenate([self.originals, self.twins])


def _unit(rows: NDArray[np.float32]) -> NDArray[np.float64]:
    rows64 = np.atleast_2d(rows).astype(np.float64)
    return rows64 / np.maximum(np.linalg.norm(rows64, axis=1, keepdims=True), 1e-12)


def plant_twins(
    x: NDArray[np.float32],
    candidates: NDArray[np.int64],
    imported: NDArray[np.int64],
    n: int,
    seed: int,
    threshold: float = NEAR_DUPLICATE_COSINE,
    noise: float = TWIN_NOISE,
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Near-copies of `n` of the `candidates` (rows of `x`): each image plus pixel noise.
    An original has no near-duplicate among the `imported` rows (the sampler would
    merge it); its twin is below `threshold` to every imported row and to the other
    twins, and nearer to its original than to any other. Returns (originals, twin rows)."""
    rng = np.random.default_rng([seed, 1])
    units = _unit(x[imported])
    position = {int(i): p for p, i in enumerate(imported)}
    originals: list[int] = []
    rows: list[NDArray[np.float32]] = []
    for i in rng.permutation(candidates):
        if len(originals) == n:
            break
        own = units[position[int(i)]]
        if np.sum(units @ own >= threshold) > 1:
            continue  # a near-duplicate of another digit already
        row = np.clip(x[i] + rng.normal(0.0, noise, x.shape[1]), 0.0, 1.0).astype(np.float32)
        unit = _unit(row)[0]
        sims = units @ unit
        to_original = sims[position[int(i)]]
        sims[position[int(i)]] = -1.0
        planted = _unit(np.asarray(rows)) @ unit if rows else np.zeros(1)
        # A margin below the threshold: the sampler compares in float32.
        if to_original < threshold - 0.01 and max(sims.max(), planted.max()) < to_original:
            originals.append(int(i))
            rows.append(row)
    if len(originals) < n:
        raise ValueError(f"only {len(originals)} of {n} twins could be planted")
    return np.asarray(originals, dtype=np.int64), np.asarray(rows, dtype=np.float32).reshape(
        len(rows), x.shape[1]
    )


def digits_split(pool: int, gold: int, seed: int, twins: int = 0) -> Split:
    """Pool, gold and a test split nobody labels, from scikit-learn's bundled digits;
    with `twins` planted twins of pool images added to the pool (`plant_twins`)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    if pool + gold >= len(y) - 100:
        raise ValueError(f"digits has {len(y)} images: pool + gold must leave a test split")
    images, classes = (x / 16.0).astype(np.float32), y.astype(np.int64)
    pool_ix, gold_ix = order[:pool], order[pool : pool + gold]
    originals, rows = (
        plant_twins(images, pool_ix, order[: pool + gold], twins, seed)
        if twins
        else (EMPTY, np.zeros((0, images.shape[1]), dtype=np.float32))
    )
    twin_ix = np.arange(len(y), len(y) + len(originals), dtype=np.int64)
    return Split(
        np.concatenate([images, rows]),
        np.concatenate([classes, classes[originals]]),
        np.concatenate([pool_ix, twin_ix]),
        gold_ix,
        order[pool + gold :],
        originals,
        twin_ix,
    )


def features(row: NDArray[np.float32]) -> common_pb2.ItemContent:
    return common_pb2.ItemContent(features=common_pb2.FeatureVector(values=row.tolist()))
