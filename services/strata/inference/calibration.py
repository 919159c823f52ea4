"""Calibration and confidence routing: pure functions on arrays.

- `fit_temperature`: temperature scaling (Guo et al., 2017): the T > 0 that
  minimises the negative log-likelihood of softmax(logits / T) on held-out gold.
- `expected_calibration_error`: top-label ECE over equal-width bins, the bin of a
  confidence c being [b_i, b_i+1) (the last one closed), as torchmetrics bins it.
- `auto_accept_gate`: whether model labels above a confidence threshold may be
  accepted, from their measured precision on gold (a Wilson lower bound, not a
  raw ratio on few items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from strata.common.stats import wilson_interval


def _check(logits: NDArray[np.float64], labels: NDArray[np.int64]) -> None:
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"logits must be [n, classes >= 2], got shape {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must be [n] = [{logits.shape[0]}], got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError("calibration needs at least one example")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"labels must be class indices in [0, {logits.shape[1]})")
    if not np.isfinite(logits).all():
        raise ValueError("logits must be finite")


def nll(logits: ArrayLike, labels: ArrayLike, temperature: float = 1.0) -> float:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    return float(-log_softmax(z / temperature, axis=1)[np.arange(y.size), y].mean())


def fit_temperature(logits: ArrayLike, labels: ArrayLike) -> float:
    """The temperature minimising NLL; the NLL is convex in 1/T, searched on [0.01, 100]."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    _check(z, y)
    found = minimize_scalar(
        lambda inv_t: nll(z, y, 1.0 / inv_t),
        bounds=(0.01, 100.0),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(1.0 / found.x)


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Top-label ECE: sum over bins of |bin| / n * |accuracy - mean confidence|."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    _check(p, y)
    if n_bins < 1:
        raise ValueError("n_bins must be at least 1")
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    gap = np.abs(
        np.bincount(bins, weights=correct, minlength=n_bins)
        - np.bincount(bins, weights=confidence, minlength=n_bins)
    )
    return float(gap.sum() / y.size)


def calibrated(logits: ArrayLike, temperature: float) -> NDArray[np.float64]:
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Calibration:
    calibrated: bool
    temperature: float
    ece_before: float
    ece_after: float
    n_gold: int
    note: str


def calibrate(logits: ArrayLike, labels: ArrayLike, *, min_gold: int = 30) -> Calibration:
    """Fit temperature scaling on gold, or say why it cannot be fitted."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = int(y.size)
    if n < min_gold:
        before = expected_calibration_error(calibrated(z, 1.0), y) if n else 0.0
        return Calibration(
            False,
            1.0,
            before,
            before,
            n,
            f"not calibrated: {n} gold items with answers, need at least {min_gold}; "
            "confidence is the raw softmax",
        )
    t = fit_temperature(z, y)
    return Calibration(
        True,
        t,
        expected_calibration_error(calibrated(z, 1.0), y),
        expected_calibration_error(calibrated(z, t), y),
        n,
        "temperature scaling on gold (ECE measured on the same gold items)",
    )


def gold_accuracy(correct: ArrayLike) -> tuple[float, int]:
    """Share of gold predictions that were right, and how many there were (0.0 and 0:
    not measured)."""
    ok = np.asarray(correct, dtype=bool)
    return (float(ok.mean()), int(ok.size)) if ok.size else (0.0, 0)


@dataclass(frozen=True)
class AutoAcceptGate:
    open: bool
    precision: float
    lower_bound: float
    n_above: int
    reason: str


def auto_accept_gate(
    confidence: ArrayLike,
    correct: ArrayLike,
    threshold: float,
    min_precision: float,
    *,
    min_support: int = 20,
) -> AutoAcceptGate:
    """Open only if gold predictions at or above `threshold` are precise enough: the
    Wilson lower bound of their precision must reach `min_precision`."""
    c = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    above = c >= threshold
    n = int(above.sum())
    hits = int(ok[above].sum())
    precision = hits / n if n else 0.0
    lower, _ = wilson_interval(hits, n)
    if n < min_support:
        reason = f"{n} gold predictions at confidence >= {threshold}, need {min_support}"
        return AutoAcceptGate(False, precision, lower, n, reason)
    if lower < min_precision:
        reason = (
            f"precision on gold {precision:.3f} (lower bound {lower:.3f}) "
            f"is under the target {min_precision}"
        )
        return AutoAcceptGate(False, precision, lower, n, reason)
    return AutoAcceptGate(
        True, precision, lower, n, f"precision on gold {precision:.3f} >= {min_precision}"
    )
