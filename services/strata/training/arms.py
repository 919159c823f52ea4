"""Governed learning against what a skeptical user does instead with the same scores.

Every training label has a value and a consensus score in [0, 1]. Each arm trains
the same model (same initialisation, AdamW, the same batch order per seed) on those
labels, treating them its own way:

- ungoverned: every label at full depth (plain cross-entropy, `plain_step`);
- drop: labels scoring under DROP_BELOW (0.7) left out, the rest at full depth
  (batches drawn in the same order from the labels kept);
- weighted: each label's loss times its score (summed, over the batch size);
- governed-rules: a fixed rules policy (by default `default_governance()`'s rules:
  score >= 0.9 every layer group, >= 0.7 two, else the head only) through `govern`
  and `governed_step`;
- governed-learned: the learned policy (the default): each label's depth and
  per-group scale from its trust on the fitted trust curve, through `govern`.

`bench/governance.py` runs the arms across noise regimes and model families; the
demo's campaign report retrains each final model's training set under every arm.
Pure torch and numpy: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray
from scipy import stats

from strata.common.trust import TrustCurve
from strata.models.families import GroupedModel, ModelSpec, build
from strata.training.averaging import WeightAverage
from strata.training.governance import LEARNED, LabelTrust, govern
from strata.training.schedule import Schedule
from strata.training.step import governed_step, plain_step
from strata.v1 import common_pb2

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]

DROP_BELOW = 0.7  # the drop arm's consensus threshold


@dataclass(frozen=True)
class Treatment:
    """How an arm trains on each label (arrays with one entry per training label)."""

    keep: Bools | None = None  # the labels trained on; None: all
    depth: Ints | None = None  # layer groups from the head each reaches; None: all
    # Multiplies the label's loss, so its gradient in every group it reaches. None: 1.
    weight: Floats | None = None
    # [labels, K] the label's gradient scale per layer group (`governed_step`'s). None: 1.
    scale: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class Scored:
    """What an arm may look at: the labels' consensus scores and the model's shape."""

    score: Floats
    n_classes: int
    n_groups: int
    curve: TrustCurve  # fitted on gold (the learned arm's)
    rules: common_pb2.GovernancePolicy  # the fixed-rules arm's rules (its mode aside)


@dataclass(frozen=True)
class Arm:
    name: str
    treat: Callable[[Scored], Treatment]
    governed: bool = False  # reported against the best other arm


def _governed(policy: common_pb2.GovernancePolicy, s: Scored) -> Treatment:
    human = common_pb2.LABEL_SOURCE_HUMAN
    labels = [LabelTrust(float(x), human) for x in s.score]
    out = govern(policy, labels, s.n_groups, s.n_classes, s.curve)
    return Treatment(depth=out.depths, scale=out.scales)


def _rules(s: Scored) -> Treatment:
    policy = common_pb2.GovernancePolicy()
    policy.CopyFrom(s.rules)
    policy.mode = common_pb2.GOVERNANCE_MODE_RULES  # its rules, whatever mode it is in
    return _governed(policy, s)


ARMS = [
    Arm("ungoverned", lambda s: Treatment()),
    Arm("drop", lambda s: Treatment(keep=s.score >= DROP_BELOW)),
    Arm("weighted", lambda s: Treatment(weight=np.asarray(s.score, dtype=np.float64))),
    Arm("governed-rules", _rules, governed=True),
    Arm(
        "governed-learned",
        lambda s: _governed(common_pb2.GovernancePolicy(mode=LEARNED), s),
        governed=True,
    ),
]
ARM_NAMES = [a.name for a in ARMS]


@dataclass(frozen=True)
class Task:
    """A model to train and the data to measure it on."""

    spec: ModelSpec
    inputs: Callable[[Ints], tuple[torch.Tensor, ...]]  # model inputs of training rows
    test_inputs: tuple[torch.Tensor, ...]
    test_y: torch.Tensor


def batches(n: int, keep: Bools | None, seed: int, steps: int, batch: int) -> Iterator[Ints]:
    """`steps` batches: each epoch a seeded permutation of every label, those not kept
    taken out, cut into batches of `batch` (the same order for every arm)."""
    rng = np.random.default_rng((seed, 6))
    done = 0
    while True:
        order = rng.permutation(n).astype(np.int64)
        if keep is not None:
            order = order[keep[order]]
        if not len(order):
            return
        for start in range(0, len(order), batch):
            yield order[start : start + batch]
            done += 1
            if done == steps:
                return


def step(
    model: GroupedModel,
    optimizer: torch.optim.Optimizer,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    depth: torch.Tensor | None,
    weight: torch.Tensor | None,
    scale: torch.Tensor | None = None,
) -> None:
    """One optimizer step: the product's steps where they apply (`plain_step`,
    `governed_step`, with its per-group scales); with weights, the routed step on the
    weighted loss."""
    if weight is None:
        if depth is None:
            plain_step(model, optimizer, inputs, targets)
        else:
            governed_step(model, optimizer, inputs, targets, depth, scale=scale)
        return
    optimizer.zero_grad(set_to_none=True)
    logits = model(*inputs, depth=depth)  # routed when depth is given
    losses = F.cross_entropy(logits, targets, reduction="none")
    ((losses * weight).sum() / len(targets)).backward()
    if depth is not None:
        reach = int(depth.max())
        for number, group in enumerate(model.layer_groups(), start=1):
            if number > reach:
                for p in group.parameters():
                    p.grad = None
    optimizer.step()


def train(task: Task, value: Ints, treatment: Treatment, seed: int, schedule: Schedule) -> float:
    """Test accuracy after training on `value` as `treatment` says."""
    torch.manual_seed(seed)
    model = build(task.spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=schedule.lr)
    average = WeightAverage(model, schedule.average_decay) if schedule.average_decay else None
    depth = None if treatment.depth is None else torch.from_numpy(treatment.depth)
    weight = None if treatment.weight is None else torch.from_numpy(treatment.weight).float()
    scale = None if treatment.scale is None else torch.from_numpy(treatment.scale).float()
    targets = torch.from_numpy(value)
    model.train()
    for rows in batches(len(value), treatment.keep, seed, schedule.steps, schedule.batch):
        index = torch.from_numpy(rows)
        step(
            model,
            optimizer,
            task.inputs(rows),
            targets[index],
            None if depth is None else depth[index],
            None if weight is None else weight[index],
            None if scale is None else scale[index],
        )
        if average is not None:
            average.update(model)
    if average is not None:
        model.load_state_dict(average.published(model.state_dict()))
    model.eval()
    with torch.no_grad():
        predicted = model(*task.test_inputs).argmax(dim=1)
    return float((predicted == task.test_y).float().mean())


def interval(values: Sequence[float]) -> list[float] | None:
    """The 95% t-interval of the mean (None from one value)."""
    if len(values) < 2:
        return None
    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1))
    half /= math.sqrt(len(values))
    return [round(mean - half, 4), round(mean + half, 4)]


def summarise(per_seed: dict[str, list[float]], arms: Sequence[Arm]) -> dict[str, Any]:
    """Per arm: the mean over seeds, its 95% t-interval and the per-seed values; for a
    governed arm, its paired difference from the best other arm (by mean)."""
    out: dict[str, Any] = {}
    for arm in arms:
        values = per_seed[arm.name]
        out[arm.name] = {
            "mean": round(float(np.mean(values)), 4),
            "ci95": interval(values),
            "per_seed": [round(v, 4) for v in values],
        }
    for arm in arms:
        others = [a.name for a in arms if a.name != arm.name]
        if not arm.governed or not others:
            continue
        best = max(others, key=lambda name: out[name]["mean"])
        delta = [g - b for g, b in zip(per_seed[arm.name], per_seed[best], strict=True)]
        out[arm.name]["delta_vs_best_other"] = {
            "other": best,
            "mean": round(float(np.mean(delta)), 4),
            "ci95": interval(delta),  # paired over seeds
            "per_seed": [round(d, 4) for d in delta],
        }
    return out
