"""Small statistics shared by services: proportions with confidence bounds."""

from __future__ import annotations

import math

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
