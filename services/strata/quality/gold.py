"""Gold scoring: an annotator's accuracy on gold items, with a confidence bound."""

from __future__ import annotations

from dataclasses import dataclass

from strata.common.stats import Z_95, wilson_interval

__all__ = ["Z_95", "GoldVerdict", "gold_verdict", "wilson_interval"]


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
