"""The published model: the moving average of a run's weights, governance kept exact."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from strata.models.families import ModelSpec, build
from strata.training.averaging import WeightAverage, average_into
from strata.training.distributed import STATE_FILE, TrainPlan, read_outputs, train_run
from strata.training.step import governed_step
from strata.v1 import common_pb2

SPEC = ModelSpec("mlp", [str(d) for d in range(10)], input_dim=64)


def digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits(return_X_y=True)
    return torch.from_numpy((x[:n] / 16.0).astype(np.float32)), torch.from_numpy(y[:n])


def test_the_average_is_the_ramped_exponential_average_of_every_step() -> None:
    torch.manual_seed(0)
    model = build(SPEC)
    decay = 0.9
    average = WeightAverage(model, decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = digits(64)
    weight = "head.weight"
    # Reference: the same recursion in float64 numpy, on the values the weight took.
    expected = model.state_dict()[weight].double().numpy().copy()
    for t in range(40):
        governed_step(model, optimizer, (x,), y, torch.full((64,), 3))
        average.update(model)
        d = min(decay, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * model.state_dict()[weight].double().numpy()
    assert average.updates == 40
    np.testing.assert_allclose(average.params[weight].numpy(), expected, rtol=1e-5, atol=1e-6)
    # The published weights are the average, not the last step's.
    published = average.published(model.state_dict())
    assert not torch.equal(published[weight], model.state_dict()[weight])
    assert torch.equal(published[weight], average.params[weight])


def test_groups_no_label_reaches_stay_bit_identical_in_the_average() -> None:
    torch.manual_seed(1)
    model = build(SPEC)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    average = WeightAverage(model, 0.99)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = digits(96)
    for _ in range(25):  # every label is head-only (depth 1)
        governed_step(model, optimizer, (x,), y, torch.full((96,), 1))
        average.update(model)
    published = average.published(model.state_dict())
    for name, value in published.items():
        if name.startswith("head."):
            assert not torch.equal(value, before[name]), name
        else:
            assert torch.equal(value, before[name]), name


def test_a_saved_average_must_cover_the_model() -> None:
    average = WeightAverage(build(SPEC), 0.99)
    with pytest.raises(ValueError, match=r"lacks parameters: head\.bias"):
        average.load({"updates": 3, "params": {"head.weight": torch.zeros(10, 64)}})
    with pytest.raises(ValueError, match=r"decay is in \(0, 1\)"):
        WeightAverage(build(SPEC), 1.0)
    state = {"a": torch.zeros(1)}
    assert average_into(state, None) is state


class Session:
    """A one-worker RunSession in a directory: keeps every report's checkpoint."""

    rank, world = 0, 1

    def __init__(self, root: Path, resume_from: Path | None = None, stop_after: int = 0) -> None:
        self.root, self.resume_from, self.stop_after = root, resume_from, stop_after
        self.checkpoints: list[Path] = []

    @contextmanager
    def resume(self) -> Iterator[Path | None]:
        yield self.resume_from

    def report(self, metrics: dict[str, Any], directory: Path) -> None:
        kept = self.root / f"epoch-{metrics['epoch']}"
        shutil.copytree(directory, kept)
        self.checkpoints.append(kept)
        if self.stop_after and metrics["epoch"] >= self.stop_after:
            raise KeyboardInterrupt  # the worker's process dies here


def plan(decay: float, epochs: int = 3) -> TrainPlan:
    x, y = load_digits(return_X_y=True)
    contents = [
        common_pb2.ItemContent(
            features=common_pb2.FeatureVector(values=(row / 16.0).tolist())
        ).SerializeToString()
        for row in x[:100]
    ]
    return TrainPlan(
        "run",
        SPEC.to_dict(),
        contents,
        y[:100].astype(np.int64),
        np.full(100, 3),
        epochs=epochs,
        batch_size=25,
        checkpoint_every_s=0.0,
        average_decay=decay,
    )


def test_a_run_publishes_its_average_and_carries_it_over_a_resume(tmp_path: Path) -> None:
    # 4 steps an epoch. The run dies after its first checkpoint and resumes from it.
    first = Session(tmp_path / "a", stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        train_run(plan(0.99), first)
    resumed = Session(tmp_path / "b", resume_from=first.checkpoints[-1])
    train_run(plan(0.99), resumed)
    state = torch.load(resumed.checkpoints[-1] / STATE_FILE, weights_only=True)
    assert state["average"]["updates"] == 12  # the 4 steps before the crash are in it
    outputs = read_outputs(resumed.checkpoints[-1])
    assert outputs.epochs_done == 3
    for name, value in state["average"]["params"].items():
        assert torch.equal(outputs.model_state[name], value)
        assert not torch.equal(value, state["model"][name])

    # Without averaging a run publishes its last step's weights.
    plain = Session(tmp_path / "c")
    train_run(plan(0.0), plain)
    state = torch.load(plain.checkpoints[-1] / STATE_FILE, weights_only=True)
    assert "average" not in state
    outputs = read_outputs(plain.checkpoints[-1])
    assert all(torch.equal(outputs.model_state[k], v) for k, v in state["model"].items())
