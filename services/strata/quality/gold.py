"""Gold scoring: an annotator's accuracy on gold items, with a confidence bound."""

from __future__ import annotations

from dataclasses import dataclass

from strata.common.stats import Z_95, wilson_interval

__all__ = ["Z_95", "Anchoring", "GoldVerdict", "gold_verdict", "wilson_interval"]


@dataclass(frozen=True)
class GoldVerdict:
    status: str  # active | retrain | blocked
    accuracy: float
    lower: float
    upper: float
    reason: str


@dataclass(frozen=True)
class Anchoring:
    """How often an annotator agreed with a wrong pre-label shown on gold."""

    followed: int
    shown: int

    @property
    def rate(self) -> float | None:
        return self.followed / self.shown if self.shown else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.followed, self.shown)


# Fewer wrong pre-labels than this say nothing about anchoring.
MIN_WRONG_PRELABELS = 4


def gold_verdict(
    correct: int,
    answered: int,
    threshold: float,
    min_answered: int = 5,
    anchoring: Anchoring | None = None,
    max_anchoring: float = 0.0,
) -> GoldVerdict:
    """Block only when even the optimistic bound is under the threshold.

    Below the threshold but not surely so: retrain (gold tasks until it is clear).
    Too few answers to say anything: active. An annotator who agrees with wrong
    pre-labels surely more often than `max_anchoring` (the lower bound of the rate is
    above it) rubber-stamps them, and is blocked like a spammer; 0 turns this off.
    """
    lower, upper = wilson_interval(correct, answered)
    accuracy = correct / answered if answered else 0.0
    figures = (
        f"gold accuracy {accuracy:.2f} on {answered} items "
        f"(95% interval {lower:.2f}-{upper:.2f}) vs threshold {threshold:.2f}"
    )
    if (
        anchoring is not None
        and max_anchoring > 0
        and anchoring.shown >= MIN_WRONG_PRELABELS
        and anchoring.interval[0] > max_anchoring
    ):
        low, high = anchoring.interval
        return GoldVerdict(
            "blocked",
            accuracy,
            lower,
            upper,
            f"anchoring: agreed with {anchoring.followed} of {anchoring.shown} wrong pre-labels "
            f"(95% interval {low:.2f}-{high:.2f}) vs at most {max_anchoring:.2f}; {figures}",
        )
    if answered < min_answered:
        return GoldVerdict("active", accuracy, lower, upper, f"too few gold answers: {figures}")
    if upper < threshold:
        return GoldVerdict("blocked", accuracy, lower, upper, figures)
    if accuracy < threshold:
        return GoldVerdict("retrain", accuracy, lower, upper, figures)
    return GoldVerdict("active", accuracy, lower, upper, figures)
