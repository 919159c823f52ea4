"""The trust curve: how often a consensus label with a given score is right (pure).

Quality fits it from gold: for every gold item that has votes, the consensus the
votes alone would give (the item's Dawid-Skene posterior without its known answer)
is one observation, (score, whether its value is the gold answer). Training applies
it: the learned governance policy turns each label's trust into how deep and how
strongly its gradient reaches (`strata.training.governance`).

The fit is isotonic (a label scored higher is never trusted less) over the gold
observations plus a prior: `prior_strength` pseudo-observations spread evenly over
[0, 1], each saying "a label is right as often as gold labels are overall" (the
pooled rate, counting one pseudo right answer). Until gold shows that scores tell
right labels from wrong ones, the curve stays flat, and governance treats every label
alike (with no gold at all, as fully trusted: an ungoverned run). A prior that took
the score at its word (the identity) cost 1-2 points where noise is spread evenly
over the scores: 120 gold answers cannot undo its slope (`bench/governance.py`).
Between the fitted blocks the curve is interpolated linearly through each block's
mean score, so it is monotone and continuous.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
from numpy.typing import NDArray

from strata.v1 import common_pb2

Floats = NDArray[np.float64]

PRIOR_STRENGTH = 10.0  # pseudo-observations: about 10 gold answers move the curve halfway
PRIOR_POINTS = 21  # where they sit: 0, 0.05, ..., 1


@dataclass(frozen=True)
class TrustCurve:
    """P(right | score) at increasing `scores` (linear in between, flat outside)."""

    scores: tuple[float, ...]
    right: tuple[float, ...]
    gold: int  # gold observations it was fitted on
    prior_strength: float
    fitted_at: datetime | None = None

    def __call__(self, score: Floats | Sequence[float] | float) -> Floats:
        s = np.clip(np.asarray(score, dtype=np.float64), 0.0, 1.0)
        return np.interp(s, self.scores, self.right)


def isotonic(x: Floats, y: Floats, weight: Floats) -> tuple[Floats, Floats, Floats]:
    """Weighted pool-adjacent-violators: y fitted non-decreasing in x (ties in x pooled
    first, as scikit-learn's IsotonicRegression does). Returns the unique x, their
    fitted y and their total weight, in increasing x."""
    ux, inverse = np.unique(x, return_inverse=True)
    uw = np.bincount(inverse, weights=weight, minlength=len(ux))
    uy = np.bincount(inverse, weights=weight * y, minlength=len(ux)) / uw
    means: list[float] = []
    weights: list[float] = []
    sizes: list[int] = []
    for yi, wi in zip(uy.tolist(), uw.tolist(), strict=True):
        means.append(yi)
        weights.append(wi)
        sizes.append(1)
        while len(means) > 1 and means[-2] >= means[-1]:
            w = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w
            weights[-2] = w
            sizes[-2] += sizes[-1]
            del means[-1], weights[-1], sizes[-1]
    return ux, np.repeat(np.asarray(means), sizes).astype(np.float64), uw.astype(np.float64)


def fit(
    scores: Sequence[float] | Floats,
    right: Sequence[bool] | NDArray[np.bool_],
    prior_strength: float = PRIOR_STRENGTH,
) -> TrustCurve:
    """The curve through gold observations (score, whether the label was right)."""
    s = np.clip(np.asarray(scores, dtype=np.float64), 0.0, 1.0)
    r = np.asarray(right, dtype=np.float64)
    if s.shape != r.shape:
        raise ValueError(f"{len(s)} scores but {len(r)} outcomes")
    grid = np.linspace(0.0, 1.0, PRIOR_POINTS)
    x = np.concatenate([s, grid])
    level = (r.sum() + 1.0) / (len(r) + 1.0)
    y = np.concatenate([r, np.full(PRIOR_POINTS, level)])
    w = np.concatenate([np.ones(len(s)), np.full(PRIOR_POINTS, prior_strength / PRIOR_POINTS)])
    ux, fitted, uw = isotonic(x, y, w)
    # One knot per block of equal fitted values, at the block's weighted mean score;
    # and the ends at 0 and 1, so that the curve covers the whole range.
    starts = np.flatnonzero(np.diff(fitted, prepend=-1.0) != 0)
    bx = np.add.reduceat(ux * uw, starts) / np.add.reduceat(uw, starts)
    by = fitted[starts]
    bx = np.concatenate([[0.0], bx, [1.0]])
    by = np.concatenate([[by[0]], by, [by[-1]]])
    return TrustCurve(
        tuple(round(float(v), 6) for v in bx),
        tuple(round(float(v), 6) for v in by),
        len(s),
        prior_strength,
    )


def to_message(
    curve: TrustCurve, project: str, fitted_at: datetime | None = None
) -> common_pb2.TrustCurve:
    """The curve as a message, fitted at `fitted_at` (default: when it was)."""
    msg = common_pb2.TrustCurve(
        project=project,
        scores=curve.scores,
        right=curve.right,
        gold=curve.gold,
        prior_strength=curve.prior_strength,
    )
    at = fitted_at or curve.fitted_at
    if at is not None:
        msg.fitted_at.FromDatetime(at)
    return msg


def from_message(msg: common_pb2.TrustCurve) -> TrustCurve:
    """The curve of a message (ValueError when it is not a curve: knots out of
    order, out of [0, 1], or of different counts)."""
    scores, right = tuple(msg.scores), tuple(msg.right)
    if len(scores) < 2 or len(scores) != len(right):
        raise ValueError(f"a trust curve needs >= 2 knots of (score, right), got {len(scores)}")
    if any(b < a for a, b in pairwise(scores)) or any(b < a for a, b in pairwise(right)):
        raise ValueError("a trust curve's scores and values must not decrease")
    if not all(0.0 <= v <= 1.0 for v in scores + right):
        raise ValueError("a trust curve's scores and values must be in [0, 1]")
    fitted = msg.fitted_at.ToDatetime(tzinfo=UTC) if msg.HasField("fitted_at") else None
    return TrustCurve(scores, right, int(msg.gold), float(msg.prior_strength), fitted)
