"""Pool-based active-learning simulation on a labeled data set: learning curves per strategy.

Used by the label-efficiency test and the benchmark; the model is any
scikit-learn-style classifier factory (fit / predict_proba).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from strata.sampler.strategies import STRATEGIES, select_batch


def learning_curve(
    x_pool: NDArray[np.float64],
    y_pool: NDArray[np.int64],
    x_test: NDArray[np.float64],
    y_test: NDArray[np.int64],
    make_model: Callable[[], Any],
    strategy: str,
    *,
    budget: int,
    start: int,
    step: int,
    seed: int,
    diversity: str = "none",
) -> list[tuple[int, float]]:
    """(labels spent, test accuracy) after each round; `strategy="random"` is the baseline."""
    rng = np.random.default_rng(seed)
    labeled = list(rng.choice(len(x_pool), start, replace=False))
    curve = []
    while True:
        model = make_model()
        model.fit(x_pool[labeled], y_pool[labeled])
        curve.append((len(labeled), float((model.predict(x_test) == y_test).mean())))
        if len(labeled) >= budget:
            return curve
        rest = np.setdiff1d(np.arange(len(x_pool)), labeled)
        k = min(step, budget - len(labeled))
        if strategy == "random":
            picked = rng.choice(rest, k, replace=False)
        else:
            probs = model.predict_proba(x_pool[rest])
            picked = rest[select_batch(STRATEGIES[strategy](probs), x_pool[rest], k, diversity)]
        labeled.extend(int(i) for i in picked)


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """The fewest labels at which the curve reaches `target` accuracy."""
    return next((n for n, acc in curve if acc >= target), None)
