"""What weight averaging buys: the published model's test accuracy, run after run.

Digits as the demo splits it (1,000 pool items, a test split nobody labels).
Training sets of 150 and 300 pool items chosen two ways: as active learning
chooses them (16 at a time, the lowest-margin items under a logistic regression
fitted on those chosen so far, from 40 random ones) and at random. Each set is
trained by the service's worker loop (`train_run`: governed steps, ledger,
checkpoints; the default run settings) with six seeds. One run gives both
figures: its last step's weights (what a run published before averaging) and
the moving average it publishes now (`STRATA_TRAINING_AVERAGE_DECAY`). Reported:
mean, standard deviation and worst test accuracy over the seeds.

Prints the figures and writes bench/results/averaging.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import report
from sklearn.linear_model import LogisticRegression
from strata.cli.progress import ProgressBar
from strata.demo.split import digits_split, features
from strata.models.families import ModelSpec, build
from strata.training.config import TrainingConfig
from strata.training.distributed import STATE_FILE, TrainPlan, read_outputs, train_run
from strata.training.schedule import epochs_for

SIZES = (150, 300)
SEEDS = 6


class LastCheckpoint:
    """A one-worker session that keeps the run's last checkpoint in a directory."""

    rank, world = 0, 1

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def resume(self) -> Iterator[Path | None]:
        yield None

    def report(self, metrics: dict[str, Any], directory: Path) -> None:
        state = directory / STATE_FILE
        if state.exists():
            for f in directory.iterdir():
                (self.directory / f.name).write_bytes(f.read_bytes())


def margin_order(x: np.ndarray, y: np.ndarray, pool: np.ndarray, size: int) -> list[int]:  # type: ignore[type-arg]
    """Pool indices in the order margin sampling with batches of 16 would label them."""
    rng = np.random.default_rng(0)
    chosen = list(rng.choice(pool, 40, replace=False))
    while len(chosen) < size:
        rest = np.setdiff1d(pool, chosen)
        fitted = LogisticRegression(max_iter=1000).fit(x[chosen], y[chosen])
        p = np.sort(fitted.predict_proba(x[rest]), axis=1)
        chosen.extend(rest[np.argsort(p[:, -1] - p[:, -2])[:16]])
    return chosen[:size]


def accuracy(
    spec: ModelSpec, state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
) -> float:
    model = build(spec)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": round(statistics.mean(values), 4),
        "sd": round(statistics.pstdev(values), 4),
        "worst": round(min(values), 4),
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    torch.set_num_threads(1)
    config = TrainingConfig()
    split = digits_split(1000, 100, 0)
    spec = ModelSpec("mlp", [str(d) for d in range(10)], input_dim=64)
    test_x, test_y = torch.from_numpy(split.x[split.test]), torch.from_numpy(split.y[split.test])
    active = margin_order(split.x, split.y, split.pool, max(SIZES))
    shuffled = list(np.random.default_rng(1).permutation(split.pool))
    figures: dict[str, object] = {"average_decay": config.average_decay, "seeds": SEEDS}
    bar = ProgressBar("runs", total=2 * len(SIZES) * SEEDS)
    done = 0
    for how, order in (("active", active), ("random", shuffled)):
        for size in SIZES:
            rows = order[:size]
            contents = [features(split.x[i]).SerializeToString() for i in rows]
            last, averaged = [], []
            for seed in range(SEEDS):
                plan = TrainPlan(
                    f"{how}-{size}-{seed}",
                    spec.to_dict(),
                    contents,
                    split.y[rows].astype(np.int64),
                    np.full(size, 3),
                    epochs=epochs_for(config.epochs, size, config.batch_size, config.min_steps),
                    batch_size=config.batch_size,
                    lr=config.lr,
                    seed=seed,
                    checkpoint_every_s=3600.0,
                    average_decay=config.average_decay,
                )
                with tempfile.TemporaryDirectory() as tmp:
                    train_run(plan, LastCheckpoint(Path(tmp)))
                    state = torch.load(Path(tmp) / STATE_FILE, weights_only=True)
                    outputs = read_outputs(Path(tmp))
                last.append(accuracy(spec, state["model"], test_x, test_y))
                averaged.append(accuracy(spec, outputs.model_state, test_x, test_y))
                done += 1
                bar.update(done)
            figures[f"{how}_{size}_last_step"] = summary(last)
            figures[f"{how}_{size}_averaged"] = summary(averaged)
    bar.close()
    report("averaging", figures)


if __name__ == "__main__":
    main()
