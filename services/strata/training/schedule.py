"""How long a run trains: its epochs and steps, and the epochs it snapshots (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.training.config import TrainingConfig


def epochs_for(asked: int, n_labels: int, batch_size: int, min_steps: int) -> int:
    """The epochs asked for, or more when a few labels would otherwise get too few steps."""
    per_epoch = max(1, -(-n_labels // batch_size))
    return max(asked, -(-min_steps // per_epoch))


def snapshot_epochs(epochs: int, keep: int) -> tuple[int, ...]:
    """Up to `keep` epochs spread over a run, the last always among them."""
    return tuple(sorted({max(1, round(e)) for e in np.linspace(epochs, epochs / keep, keep)}))


@dataclass(frozen=True)
class Schedule:
    """An in-process training run's length and optimizer (`strata.training.arms`)."""

    steps: int
    batch: int = 64
    lr: float = 3e-3  # the service's default (STRATA_TRAINING_LR)
    average_decay: float = 0.0  # >0: measure the weights' moving average, as runs publish


def service_schedule(n_labels: int, config: TrainingConfig | None = None) -> Schedule:
    """The steps, batch, learning rate and averaging a training run on `n_labels` uses."""
    c = config or TrainingConfig()
    epochs = epochs_for(c.epochs, n_labels, c.batch_size, c.min_steps)
    steps = epochs * -(-n_labels // c.batch_size)
    return Schedule(steps, c.batch_size, c.lr, c.average_decay)
