"""Gold scoring: an annotator's accuracy on gold items, with a confidence bound."""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


def wilson_interval(correct: int, answered: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when nothing was answered."""
    if answered <= 0:
        return 0.0, 1.0
    if not 0 <= correct <= answered:
        raise ValueError(f"correct must be between 0 and answered ({answered}), got {correct}")
    p = correct / answered
    denom = 1 + z * z / answered
    centre = (p + z * z / (2 * answered)) / denom
    half = z * math.sqrt(p * (1 - p) / answered + z * z / (4 * answered * answered)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class GoldVerdict:
    status: str  # active | retrain | blocked
    accuracy: float
    lower: float
    upper: float
    reason: str


def gold_verdict(
    correct: int, answered: int, threshold: float, min_answered: int = 5
) -> GoldVerdict:
    """Block only when even the optimistic bound is under the threshold.

    Below the threshold but not surely so: retrain (gold tasks until it is clear).
    Too few answers to say anything: active.
    """
    lower, upper = wilson_interval(correct, answered)
    accuracy = correct / answered if answered else 0.0
    figures = (
        f"gold accuracy {accuracy:.2f} on {answered} items "
        f"(95% interval {lower:.2f}-{upper:.2f}) vs threshold {threshold:.2f}"
    )
    if answered < min_answered:
        return GoldVerdict("active", accuracy, lower, upper, f"too few gold answers: {figures}")
    if upper < threshold:
        return GoldVerdict("blocked", accuracy, lower, upper, figures)
    if accuracy < threshold:
        return GoldVerdict("retrain", accuracy, lower, upper, figures)
    return GoldVerdict("active", accuracy, lower, upper, figures)
