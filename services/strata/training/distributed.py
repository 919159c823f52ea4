"""Governed, data-parallel training steps on Ray Train (torch DistributedDataParallel).

Each worker takes its shard of every global batch and runs `governed_step` through
the DDP wrapper: its examples' gradients are routed locally, DDP sums the shards,
and because each worker divides its loss by global batch / W (DDP averages over W
workers) the update is exactly the one a single process would make on the whole
batch. The deepest depth of the global batch is agreed with an all-reduce, so
every worker leaves the same unreached groups without a gradient.

`train_run` is a run's worker loop on a `RunSession` (`train_loop` runs it on
Ray Train, `strata.training.warm` on a long-lived actor): epochs of shuffled
global batches, the influence ledger tapped off each step, and a checkpoint
every epoch (rank 0 the model and optimizer; every rank its share of the ledger
and of which labels it got right), from which Ray resumes a run whose worker
died. `run_steps` takes
fixed batches (tests, benchmarks). Neither does the service's I/O.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist

from strata.models.families import GroupedModel, ModelSpec, build, featurize
from strata.training.averaging import WeightAverage, average_into
from strata.training.ledger import GradientTap, step_norms
from strata.training.step import governed_step
from strata.v1 import common_pb2


@dataclass(frozen=True)
class StepPlan:
    """Fixed global batches: features, targets and depths per step (tests, benchmarks)."""

    spec: dict[str, Any]
    weights: bytes  # the starting state_dict (torch.save)
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # type: ignore[type-arg]
    lr: float = 0.01
    optimizer: str = "adamw"
    # Per batch, [batch, K] gradient scales (governance's magnitude); None: 1
    scales: list[np.ndarray] | None = None  # type: ignore[type-arg]


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
    for b, (x, y, depth) in enumerate(plan.batches):
        part = shard(len(y), rank, world)
        local_depth = torch.from_numpy(depth[part])
        scale = None if plan.scales is None else torch.from_numpy(plan.scales[b][part]).float()
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
            scale=scale,
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


# -- a run's worker loop ---------------------------------------------------------------------

STATE_FILE = "state.pt"  # rank 0: model, optimizer, epochs done


@dataclass(frozen=True)
class TrainPlan:
    """Everything a run's workers need: the labels' contents, targets and depths."""

    run_id: str
    spec: dict[str, Any]
    contents: list[bytes]  # serialized ItemContent, one per training label
    targets: np.ndarray  # type: ignore[type-arg]
    depths: np.ndarray  # type: ignore[type-arg]
    epochs: int
    # [n, K] per-label gradient scale per layer group (governance); None: 1 where reached
    scales: np.ndarray | None = None  # type: ignore[type-arg]
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adamw"
    seed: int = 0
    # The published model is the moving average of the weights at this decay per step
    # (`strata.training.averaging`); 0 publishes the last step's weights.
    average_decay: float = 0.0
    # A checkpoint (and a progress report) once this long has passed since the last,
    # and after the last epoch; 0: every epoch. Every checkpoint waits for Ray's
    # controller (it collects reports every couple of seconds).
    checkpoint_every_s: float = 10.0
    # Epochs after which rank 0 keeps the model's state for TraceInfluence.
    snapshot_epochs: tuple[int, ...] = ()
    # Fault injection for tests: the last rank dies 5 s into this epoch (1-based),
    # unless the run was resumed from a checkpoint. 0: never.
    crash_at_epoch: int = 0


@dataclass
class RunOutputs:
    """What a run's last checkpoint holds, the workers' shares put together."""

    model_state: dict[str, torch.Tensor]  # the published weights (averaged, when the run was)
    epochs_done: int
    ledger: np.ndarray  # type: ignore[type-arg]  # [n, K] accumulated lr * gradient norm
    correct: np.ndarray  # type: ignore[type-arg]  # [epochs, n] fitted in that epoch's step
    snapshots: dict[int, dict[str, torch.Tensor]]  # epoch -> model state (for TracIn)


def batcher(
    spec: ModelSpec, model: GroupedModel, contents: list[bytes]
) -> Callable[[np.ndarray], tuple[torch.Tensor, ...]]:  # type: ignore[type-arg]
    """rows -> model inputs: featurized once where inputs are batch-first tensors."""
    items = []
    for raw in contents:
        c = common_pb2.ItemContent()
        c.ParseFromString(raw)
        items.append(c)
    if model.batched_inputs:
        every = featurize(spec, items)
        return lambda rows: tuple(t[torch.from_numpy(rows)] for t in every)
    return lambda rows: featurize(spec, [items[int(i)] for i in rows])


def read_outputs(directory: Path) -> RunOutputs:
    """A run checkpoint's model state and the summed ledger of every worker's share."""
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    ledger: np.ndarray | None = None  # type: ignore[type-arg]
    correct: np.ndarray | None = None  # type: ignore[type-arg]
    for share in sorted(directory.glob("worker-*.npz")):
        with np.load(share) as z:
            ledger = z["ledger"] if ledger is None else ledger + z["ledger"]
            correct = z["correct"] if correct is None else correct | z["correct"]
    if ledger is None or correct is None:
        raise FileNotFoundError(f"{directory} has no worker ledger shares")
    snapshots = {int(e): m for e, m in state.get("snapshots", {}).items()}
    published = average_into(state["model"], state.get("average"))
    return RunOutputs(published, int(state["epoch"]), ledger, correct, snapshots)


def agreed(flag: bool) -> bool:
    """True on every worker when it is true on any (decisions that need every worker)."""
    return global_deepest(int(flag)) > 0


class RunSession(Protocol):
    """Where a run's worker loop runs: its rank among `world` workers, the checkpoint
    it resumes from, and where its reports (metrics and a checkpoint directory) go."""

    rank: int
    world: int

    def resume(self) -> AbstractContextManager[Path | None]: ...

    def report(self, metrics: dict[str, Any], directory: Path) -> None: ...


class RayTrainSession:
    """A Ray Train worker's session (`train_loop`)."""

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()

    @contextmanager
    def resume(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as directory:
            yield Path(directory)

    def report(self, metrics: dict[str, Any], directory: Path) -> None:
        import ray.train

        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry for a run (see the module's docstring)."""
    import ray.train.torch

    train_run(config["plan"], RayTrainSession(), ray.train.torch.prepare_model)


def train_run(plan: TrainPlan, session: RunSession, wrap: Any = None) -> None:
    """A run's worker loop on any session; `wrap` makes the model's data-parallel
    wrapper (Ray's `prepare_model`), None trains the model as it is (one worker)."""
    rank, world = session.rank, session.world
    torch.manual_seed(plan.seed)
    spec = ModelSpec.from_dict(plan.spec)
    model = build(spec)
    optimizer = make_optimizer(plan.optimizer, model, plan.lr)
    n, k = len(plan.targets), len(model.layer_groups())
    ledger = np.zeros((n, k))
    correct = np.zeros((plan.epochs, n), dtype=bool)
    start, resumed = 0, False
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    saved_average: dict[str, Any] | None = None
    with session.resume() as directory:
        if directory is not None:
            state = torch.load(directory / STATE_FILE, weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start, resumed = int(state["epoch"]), True
            snapshots = dict(state.get("snapshots", {}))
            saved_average = state.get("average")
            if rank == 0:  # the shares so far are carried on by rank 0 alone
                done = read_outputs(directory)
                ledger, correct = done.ledger, done.correct
    # Every rank's weights are the same after each step: rank 0 alone averages them.
    average = None
    if plan.average_decay and rank == 0:
        average = WeightAverage(model, plan.average_decay)
        if saved_average is not None:
            average.load(saved_average)
    model.train()
    wrapped = wrap(model) if wrap is not None else None
    inputs_of = batcher(spec, model, plan.contents)
    targets, depths = torch.from_numpy(plan.targets), torch.from_numpy(plan.depths)
    scales = None if plan.scales is None else torch.from_numpy(plan.scales).float()
    since, seen, loss_sum, reported = time.monotonic(), 0, 0.0, start
    for epoch in range(start, plan.epochs):
        if plan.crash_at_epoch == epoch + 1 and not resumed and rank == world - 1:
            # Die a while into the epoch: Ray's controller collects reports every 2 s,
            # and a checkpoint it never collected is not one a run can resume from.
            # (Tests that inject this checkpoint every epoch.)
            time.sleep(5.0)
            os._exit(1)
        order = np.random.default_rng(plan.seed + epoch).permutation(n)
        for b in range(0, n, plan.batch_size):
            batch = order[b : b + plan.batch_size]
            if len(batch) < world:  # a last sliver too small to shard: next epoch's order differs
                continue
            mine = batch[shard(len(batch), rank, world)]
            inputs, y, d = inputs_of(mine), targets[mine], depths[mine]
            s = None if scales is None else scales[torch.from_numpy(mine)]
            deepest = global_deepest(int(d.max()))
            normalizer = len(batch) / world
            with GradientTap(model) as tap:
                result = governed_step(
                    model,
                    optimizer,
                    inputs,
                    y,
                    d,
                    deepest=deepest,
                    normalizer=normalizer,
                    forward=wrapped,
                    scale=s,
                )
            if average is not None:
                average.update(model)
            norms = step_norms(tap, model, inputs, y, d, normalizer, s)
            ledger[mine] += plan.lr * norms.numpy()
            correct[epoch, mine] = result.correct.numpy()
            seen += len(mine)
            loss_sum += float(result.per_example_loss.sum())
        if rank == 0 and epoch + 1 in plan.snapshot_epochs:
            snapshots[epoch + 1] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        last = epoch + 1 == plan.epochs
        if not agreed(last or time.monotonic() - since >= plan.checkpoint_every_s):
            continue
        elapsed = time.monotonic() - since
        metrics = {
            "epoch": epoch + 1,
            "epochs": plan.epochs,
            "samples": seen,
            "loss": loss_sum / max(seen, 1),
            "seconds": elapsed,
            "epoch_seconds": elapsed / max(epoch + 1 - reported, 1),
            "resumed": resumed,
            "world": world,
        }
        with tempfile.TemporaryDirectory() as tmp:
            if rank == 0:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch + 1,
                        "snapshots": snapshots,
                        **({"average": average.state()} if average is not None else {}),
                    },
                    Path(tmp) / STATE_FILE,
                )
            np.savez(Path(tmp) / f"worker-{rank}.npz", ledger=ledger, correct=correct)
            session.report(metrics, Path(tmp))
        since, seen, loss_sum, reported = time.monotonic(), 0, 0.0, epoch + 1
