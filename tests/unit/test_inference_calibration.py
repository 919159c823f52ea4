"""Calibration against independent references: torchmetrics' ECE, a torch optimiser's T."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from strata.inference.calibration import (
    auto_accept_gate,
    calibrate,
    calibrated,
    expected_calibration_error,
    fit_temperature,
    nll,
)
from torchmetrics.functional.classification import multiclass_calibration_error


def overconfident(n: int, classes: int, seed: int, scale: float = 4.0):  # type: ignore[no-untyped-def]
    """Logits of a model that is right ~75% of the time but says so with ~99% confidence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    signal = rng.normal(size=(n, classes))
    signal[np.arange(n), y] += 1.6
    return signal * scale, y


@pytest.mark.parametrize("seed", range(5))
def test_ece_matches_torchmetrics(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, classes = int(rng.integers(50, 2000)), int(rng.integers(2, 12))
    logits = rng.normal(size=(n, classes)) * rng.uniform(0.5, 5)
    y = rng.integers(0, classes, n)
    probs = calibrated(logits, 1.0)
    ours = expected_calibration_error(probs, y, n_bins=15)
    ref = multiclass_calibration_error(
        torch.tensor(probs, dtype=torch.float64),
        torch.tensor(y),
        num_classes=classes,
        n_bins=15,
        norm="l1",
    )
    assert ours == pytest.approx(float(ref), abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_temperature_matches_a_torch_optimiser_and_lowers_ece(seed: int) -> None:
    logits, y = overconfident(3000, 10, seed)
    t = fit_temperature(logits, y)
    # Reference: LBFGS on log T with torch autograd.
    z = torch.tensor(logits, dtype=torch.float64)
    target = torch.tensor(y)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, tolerance_grad=1e-12)

    def closure():  # type: ignore[no-untyped-def]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    assert t == pytest.approx(float(log_t.detach().exp()), rel=1e-3)
    assert t > 1.5  # an over-confident model is cooled down
    assert nll(logits, y, t) < nll(logits, y, 1.0)
    before = expected_calibration_error(calibrated(logits, 1.0), y)
    after = expected_calibration_error(calibrated(logits, t), y)
    assert before > 0.15 and after < before / 3


def test_calibrate_says_why_when_gold_is_too_small() -> None:
    logits, y = overconfident(12, 3, 0)
    result = calibrate(logits, y, min_gold=30)
    assert not result.calibrated and result.temperature == 1.0 and result.n_gold == 12
    assert "need at least 30" in result.note
    empty = calibrate(np.zeros((0, 3)), np.zeros(0, dtype=int))
    assert not empty.calibrated and empty.n_gold == 0
    good = calibrate(*overconfident(500, 4, 1))
    assert good.calibrated and good.ece_after < good.ece_before


def test_bad_shapes_are_refused_with_a_reason() -> None:
    with pytest.raises(ValueError, match="logits must be"):
        fit_temperature(np.zeros(5), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="finite"):
        fit_temperature(np.full((2, 2), np.nan), np.array([0, 1]))


def test_auto_accept_gate_uses_a_lower_bound_and_support() -> None:
    conf = np.array([0.99] * 100 + [0.5] * 100)
    correct = np.array([True] * 97 + [False] * 3 + [False] * 100)
    gate = auto_accept_gate(conf, correct, threshold=0.95, min_precision=0.9)
    assert gate.open and gate.n_above == 100 and gate.precision == pytest.approx(0.97)
    strict = auto_accept_gate(conf, correct, threshold=0.95, min_precision=0.96)
    assert not strict.open and "lower bound" in strict.reason  # 0.97 observed, bound < 0.96
    few = auto_accept_gate(conf[:10], correct[:10], threshold=0.95, min_precision=0.5)
    assert not few.open and "need 20" in few.reason
