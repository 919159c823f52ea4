"""Label efficiency on scikit-learn's digits: margin sampling against random sampling."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from strata.sampler.simulate import labels_to_reach, learning_curve

SEEDS = (0, 1, 2)


def model() -> LogisticRegression:
    return LogisticRegression(max_iter=300, C=0.5)


def test_margin_reaches_randoms_600_label_accuracy_with_at_most_70_percent() -> None:
    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    random_at_600, margin_curves = [], []
    for seed in SEEDS:
        xp, xt, yp, yt = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
        common = dict(budget=600, start=50, step=50, seed=seed)
        random_at_600.append(learning_curve(xp, yp, xt, yt, model, "random", **common)[-1][1])
        margin_curves.append(learning_curve(xp, yp, xt, yt, model, "margin", **common))
    target = float(np.mean(random_at_600))
    grid = sorted({n for curve in margin_curves for n, _ in curve})
    mean_curve = [(n, float(np.mean([dict(c)[n] for c in margin_curves]))) for n in grid]
    needed = labels_to_reach(mean_curve, target)
    assert needed is not None and needed <= 0.7 * 600, (target, mean_curve)
