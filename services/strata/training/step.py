"""One governed training step (pure torch, no I/O).

The forward pass routes each example's gradient (`GroupedModel.forward_routed`):
one backward pass gives every layer group exactly the gradient of the examples
allowed to reach it. A group that no example of the (global) batch reaches gets
no gradient at all (None, not zeros), so the optimizer leaves it untouched:
no momentum drift, no weight decay. Under data parallelism the caller passes
the deepest depth of the global batch, so every worker skips the same groups.

With `scale` (per example and group, from `strata.training.governance.govern`), each
example's loss is multiplied by its head scale and its gradient rescaled where it
enters each deeper group, so group g's update is that of the examples' losses each
times its scale in g: one backward pass still.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from strata.models.families import GroupedModel


@dataclass(frozen=True)
class StepResult:
    loss: float
    per_example_loss: torch.Tensor  # detached, one per example
    correct: torch.Tensor  # bool, one per example: the logits' argmax was the target
    groups_updated: int  # groups 1..this had a gradient


def governed_step(
    model: GroupedModel,
    optimizer: torch.optim.Optimizer,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    depth: torch.Tensor,
    *,
    deepest: int | None = None,
    normalizer: float | None = None,
    forward: torch.nn.Module | None = None,
    scale: torch.Tensor | None = None,
) -> StepResult:
    """Step `optimizer` on the batch, each example reaching groups 1..depth[i].

    `normalizer` divides the summed loss (default: the batch size). Under
    DistributedDataParallel, which averages gradients over W workers, a worker
    passes global batch / W, so the step is the one a single process would take on
    the global batch. `forward` is the wrapper to call for the logits
    (DistributedDataParallel), with `depth` (and `scale`) as keywords. `scale`
    ([batch, K], 0 past each depth): example i's gradient in group g is scaled by
    scale[i, g-1]; None: 1 everywhere it reaches.
    """
    optimizer.zero_grad(set_to_none=True)
    if forward is not None:
        logits = forward(*inputs, depth=depth, scale=scale)
    else:
        logits = model.forward_routed(*inputs, depth=depth, scale=scale)
    losses = F.cross_entropy(logits, targets, reduction="none")
    scaled = losses if scale is None else losses * scale[:, 0]
    (scaled.sum() / (normalizer or len(targets))).backward()
    reach = int(depth.max()) if deepest is None else deepest
    for number, group in enumerate(model.layer_groups(), start=1):
        if number > reach:
            for p in group.parameters():
                p.grad = None
    optimizer.step()
    detached = losses.detach()
    correct = logits.detach().argmax(1) == targets
    return StepResult(float(detached.mean()) if len(detached) else 0.0, detached, correct, reach)


def plain_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
) -> float:
    """The ungoverned step the governed one is measured and compared against."""
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(*inputs), targets)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
