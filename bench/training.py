"""Training benchmarks: what governance costs per step.

The digits MLP (64 -> 128 -> 64 -> 10) and the small CNN (28x28 images) on a
batch: the median time of a plain torch step (forward, backward, AdamW) against
a governed step (each example's gradient routed to the depth the default policy
gives its consensus score) and a governed step that also measures the influence
ledger (per-example gradient norms per layer group: read off the step's own
backward for linear groups, computed with torch.func for convolutions).

Then whole runs of the digits MLP (1,500 labels, default policy, batch 64):
plain single-process torch epochs against Ray Train runs (`train_loop`, the
service's worker loop: governed steps, the ledger, a checkpoint every epoch) on
1 and 2 workers, and on the warm actor one-worker runs take by default
(`strata.training.warm`); the ratio is of epoch times (between checkpoints, so
checkpoint waits are out), the whole run's wall time and Ray's start-up reported
apart.

Prints the figures and writes bench/results/training.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from harness import report
from sklearn.datasets import load_digits
from strata.cli.progress import ProgressBar
from strata.gateway.contract import default_governance
from strata.models.families import ModelSpec, build
from strata.training.governance import LabelTrust, influence_depths
from strata.training.ledger import GradientTap, step_norms
from strata.training.step import governed_step, plain_step
from strata.v1 import common_pb2


def _median_ms(step: Callable[[], object], steps: int, bar: ProgressBar, done: int) -> float:
    for _ in range(10):  # warm-up
        step()
    times = []
    for i in range(steps):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
        bar.update(done + i + 1)
    return statistics.median(times) * 1000


def bench_family(family: str, batch: int, steps: int) -> dict[str, object]:
    rng = np.random.default_rng(0)
    classes = [str(d) for d in range(10)]
    if family == "mlp":
        x, y = load_digits(return_X_y=True)
        pick = rng.integers(0, len(x), size=batch)
        inputs: tuple[torch.Tensor, ...] = (torch.from_numpy((x[pick] / 16.0).astype(np.float32)),)
        targets = torch.from_numpy(y[pick])
        spec = ModelSpec("mlp", classes, input_dim=64)
    else:
        inputs = (torch.rand(batch, 1, 28, 28),)
        targets = torch.from_numpy(rng.integers(0, 10, size=batch))
        spec = ModelSpec("cnn", classes, image_size=28)
    model = build(spec)
    k = len(model.layer_groups())
    # Consensus scores as a crowd gives them: most labels trusted, a tail of doubtful ones.
    scores = np.clip(rng.beta(8, 1.5, size=batch), 0, 1)
    human = common_pb2.LABEL_SOURCE_HUMAN
    depth = torch.from_numpy(
        influence_depths(default_governance(), [LabelTrust(float(s), human) for s in scores], k)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    bar = ProgressBar(f"{family} steps", 3 * steps)
    model.train()
    plain = _median_ms(lambda: plain_step(model, optimizer, inputs, targets), steps, bar, 0)
    governed = _median_ms(
        lambda: governed_step(model, optimizer, inputs, targets, depth), steps, bar, steps
    )

    def with_ledger() -> None:
        with GradientTap(model) as tap:
            governed_step(model, optimizer, inputs, targets, depth)
        step_norms(tap, model, inputs, targets, depth, len(targets))

    ledger = _median_ms(with_ledger, steps, bar, 2 * steps)
    bar.close()
    return {
        f"{family}_batch": batch,
        f"{family}_depth_counts": {str(d): int((depth == d).sum()) for d in range(1, k + 1)},
        f"{family}_plain_step_ms": round(plain, 3),
        f"{family}_governed_step_ms": round(governed, 3),
        f"{family}_governed_over_plain": round(governed / plain, 3),
        f"{family}_governed_with_ledger_step_ms": round(ledger, 3),
        f"{family}_governed_with_ledger_over_plain": round(ledger / plain, 3),
    }


def bench_runs(epochs: int) -> dict[str, object]:
    """Median epoch time: plain single-process torch vs Ray Train with 1 and 2 workers."""
    import tempfile

    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from strata.training.distributed import TrainPlan, train_loop
    from strata.training.warm import start_warm_trainer, train_warm

    x, y = load_digits(return_X_y=True)
    x, y = (x[:1500] / 16.0).astype(np.float32), y[:1500].astype(np.int64)
    scores = np.random.default_rng(0).choice([0.95, 0.8, 0.5], size=len(y), p=[0.7, 0.15, 0.15])
    depths = influence_depths(
        default_governance(),
        [LabelTrust(float(s), common_pb2.LABEL_SOURCE_HUMAN) for s in scores],
        3,
    )
    spec = ModelSpec("mlp", [str(d) for d in range(10)], input_dim=64)
    torch.manual_seed(0)
    model = build(spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    plain = []
    for epoch in range(epochs):
        began = time.perf_counter()
        order = np.random.default_rng(epoch).permutation(len(y))
        for b in range(0, len(y), 64):
            i = torch.from_numpy(order[b : b + 64])
            plain_step(model, optimizer, (xs[i],), ys[i])
        plain.append(time.perf_counter() - began)
    figures: dict[str, object] = {
        "runs_labels": len(y),
        "runs_epochs": epochs,
        "plain_epoch_ms": round(1000 * statistics.median(plain), 2),
    }
    contents = [
        common_pb2.ItemContent(
            features=common_pb2.FeatureVector(values=r.tolist())
        ).SerializeToString()
        for r in x
    ]
    began = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    figures["ray_init_s"] = round(time.perf_counter() - began, 2)
    try:
        for workers in (1, 2):
            plan = TrainPlan("bench", spec.to_dict(), contents, y, depths, epochs)
            with tempfile.TemporaryDirectory() as tmp:
                began = time.perf_counter()
                result = TorchTrainer(
                    train_loop,
                    train_loop_config={"plan": plan},
                    scaling_config=ScalingConfig(num_workers=workers),
                    run_config=RunConfig(
                        storage_path=tmp,
                        name=f"bench-{workers}",
                        checkpoint_config=CheckpointConfig(num_to_keep=None),
                    ),
                ).fit()
                wall = time.perf_counter() - began
            reports = [m for _, m in result.best_checkpoints or []]
            median = statistics.median(m["epoch_seconds"] for m in reports)
            figures[f"ray_{workers}w_epoch_ms"] = round(1000 * median, 2)
            figures[f"ray_{workers}w_over_plain"] = round(median / statistics.median(plain), 2)
            figures[f"ray_{workers}w_run_wall_s"] = round(wall, 2)
            print(
                f"ray {workers} worker(s): {len(reports)} checkpoints, {1000 * median:.1f} ms/epoch"
            )
        # The same run on the warm actor a one-worker run takes by default: the first
        # call also starts the actor (a process that loads torch), the next ones do not.
        actor = start_warm_trainer()
        for attempt in ("first", "warm"):
            plan = TrainPlan("bench", spec.to_dict(), contents, y, depths, epochs)
            with tempfile.TemporaryDirectory() as tmp:
                began = time.perf_counter()
                reports = train_warm(actor, plan, tmp, f"bench-{attempt}", None, 0)
                wall = time.perf_counter() - began
            median = statistics.median(m["epoch_seconds"] for m in reports)
            figures[f"warm_actor_{attempt}_run_wall_s"] = round(wall, 2)
            figures[f"warm_actor_{attempt}_epoch_ms"] = round(1000 * median, 2)
            print(f"warm actor, {attempt} run: {wall:.2f} s, {1000 * median:.1f} ms/epoch")
    finally:
        ray.shutdown()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the Ray run comparison")
    args = parser.parse_args()
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    torch.manual_seed(0)
    figures: dict[str, object] = {"torch_threads": torch.get_num_threads()}
    figures.update(bench_family("mlp", args.batch, args.steps))
    figures.update(bench_family("cnn", min(args.batch, 64), max(20, args.steps // 4)))
    figures.update(bench_runs(args.epochs))
    report("training", figures)


if __name__ == "__main__":
    main()
