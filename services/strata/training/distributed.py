"""Governed, data-parallel training steps on Ray Train (torch DistributedDataParallel).

Each worker takes its shard of every global batch and runs `governed_step` through
the DDP wrapper: its examples' gradients are routed locally, DDP sums the shards,
and because each worker divides its loss by global batch / W (DDP averages over W
workers) the update is exactly the one a single process would make on the whole
batch. The deepest depth of the global batch is agreed with an all-reduce, so
every worker leaves the same unreached groups without a gradient.

`run_steps` is the worker loop (Ray calls it in each worker process); it is kept
free of the service's I/O so tests can drive it with fixed batches.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from strata.models.families import GroupedModel, ModelSpec, build
from strata.training.step import governed_step


@dataclass(frozen=True)
class StepPlan:
    """Fixed global batches: features, targets and depths per step (tests, benchmarks)."""

    spec: dict[str, Any]
    weights: bytes  # the starting state_dict (torch.save)
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # type: ignore[type-arg]
    lr: float = 0.01
    optimizer: str = "adamw"


def state_bytes(model: torch.nn.Module) -> bytes:
    out = io.BytesIO()
    torch.save(model.state_dict(), out)
    return out.getvalue()


def load_state(model: torch.nn.Module, raw: bytes) -> None:
    model.load_state_dict(torch.load(io.BytesIO(raw), weights_only=True))


def make_optimizer(kind: str, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr)
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr)
    raise ValueError(f"unknown optimizer {kind!r}: sgd or adamw")


def shard(n: int, rank: int, world: int) -> slice:
    """Worker `rank`'s contiguous share of a batch of n (sizes differ by at most one)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def global_deepest(local: int) -> int:
    """The deepest routing depth over every worker's shard."""
    if not (dist.is_available() and dist.is_initialized()):
        return local
    value = torch.tensor([local], dtype=torch.int64)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value.item())


def run_steps(plan: StepPlan, rank: int, world: int, wrap: Any = None) -> GroupedModel:
    """Take every step of `plan` on this worker's shards; returns the (unwrapped) model.

    `wrap` turns the model into its data-parallel wrapper (Ray's `prepare_model`);
    None runs a single process on whole batches.
    """
    torch.manual_seed(0)
    model = build(ModelSpec.from_dict(plan.spec))
    load_state(model, plan.weights)
    model.train()
    wrapped = wrap(model) if wrap is not None else None
    optimizer = make_optimizer(plan.optimizer, model, plan.lr)
    for x, y, depth in plan.batches:
        part = shard(len(y), rank, world)
        local_depth = torch.from_numpy(depth[part])
        deepest = global_deepest(int(local_depth.max()) if len(local_depth) else 0)
        governed_step(
            model,
            optimizer,
            (torch.from_numpy(x[part]),),
            torch.from_numpy(y[part]),
            local_depth,
            deepest=deepest,
            normalizer=len(y) / world,
            forward=wrapped,
        )
    return model


CHECKPOINT_FILE = "model.pt"


def ray_worker_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry: run the plan; rank 0 checkpoints the final weights."""
    import tempfile

    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    plan: StepPlan = config["plan"]
    model = run_steps(plan, rank, world, wrap=ray.train.torch.prepare_model)
    metrics: dict[str, Any] = {"world": world, "steps": len(plan.batches)}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = None
        if rank == 0:
            with open(f"{tmp}/{CHECKPOINT_FILE}", "wb") as f:
                f.write(state_bytes(model))
            checkpoint = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=checkpoint)
