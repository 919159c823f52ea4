"""The influence ledger's measure: each label's gradient norm per layer group (pure).

For a training step with learning rate `lr`, label i's influence on group g is
`lr * s_ig * ||grad_g loss_i||` when the label reaches g (g <= depth[i]) and 0
otherwise, s_ig being the gradient scale governance gave it there (1 unless the
policy scales); a run's ledger is the sum over its steps.

Two ways to measure it:
- `GradientTap` reads it off the training step's own backward pass for groups
  made of linear layers: for a linear layer with input a_i and output gradient
  g_i, example i's weight gradient is the outer product g_i a_i^T, so its norm
  is ||g_i|| ||a_i|| (and ||g_i|| for the bias). Almost free, and it measures the
  gradient the step really applied (routed, dropout as it was).
- `per_example_group_norms` computes them with `torch.func` (vmap over the
  batch, dropout off) for any group; models whose inputs are not batched tensors
  (the hashed-text bag) are done one example at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from strata.models.families import GroupedModel


def group_index(model: GroupedModel) -> dict[str, int]:
    """Parameter name -> its layer group (1 = head)."""
    owner = {id(p): g for g, m in enumerate(model.layer_groups(), start=1) for p in m.parameters()}
    return {name: owner[id(p)] for name, p in model.named_parameters()}


def by_group(groups: Sequence[int], influences: Sequence[float], k: int) -> list[float]:
    """A label's ledger rows as one value per layer group, index 0 = group 1 (the head);
    0.0 for groups it did not reach (the ledger writes no row for those)."""
    out = [0.0] * max(k, *groups, 0)
    for g, value in zip(groups, influences, strict=True):
        out[g - 1] = value
    return out


def per_example_group_norms(
    model: GroupedModel,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    depth: torch.Tensor,
) -> torch.Tensor:
    """[batch, K]: ||gradient of example i's loss w.r.t. group g||, zero past its depth."""
    groups = group_index(model)
    k = len(model.layer_groups())
    squared = torch.zeros(len(targets), k)

    def add(i: int | slice, name: str, g: torch.Tensor) -> None:
        squared[i, groups[name] - 1] += g.pow(2).sum(-1)

    _each_example_grad(model, inputs, targets, add)
    reach = torch.arange(1, k + 1).unsqueeze(0) <= depth.unsqueeze(1)
    return squared.sqrt() * reach


def per_example_grads(
    model: GroupedModel, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Parameter name -> [batch, numel]: each example's own loss gradient (dropout off).

    Batched inputs go through `torch.func` (vmap); the others one example at a time.
    """
    out = {name: torch.zeros(len(targets), p.numel()) for name, p in model.named_parameters()}

    def keep(i: int | slice, name: str, g: torch.Tensor) -> None:
        out[name][i] = g

    _each_example_grad(model, inputs, targets, keep)
    return out


def _each_example_grad(
    model: GroupedModel,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    take: Callable[[int | slice, str, torch.Tensor], None],
) -> None:
    """Hand `take(examples, name, flat gradient)` each example's gradient (dropout off),
    the whole batch at once where the inputs can be vmapped; one at a time otherwise,
    so that a large embedding's gradient exists for one example at a time."""
    was_training = model.training
    model.eval()
    try:
        if model.batched_inputs:
            for name, g in _vmapped(model, inputs, targets).items():
                take(slice(None), name, g)
        else:
            _one_by_one(model, inputs, targets, take)
    finally:
        model.train(was_training)


def _vmapped(
    model: GroupedModel, inputs: tuple[torch.Tensor, ...], targets: torch.Tensor
) -> dict[str, torch.Tensor]:
    params = {name: p.detach() for name, p in model.named_parameters()}

    def loss_one(p: dict[str, torch.Tensor], *example: Any) -> torch.Tensor:
        *xs, y = example
        logits = functional_call(model, p, tuple(x.unsqueeze(0) for x in xs))
        return F.cross_entropy(logits, y.unsqueeze(0))

    in_dims = (None,) + (0,) * (len(inputs) + 1)
    grads = vmap(grad(loss_one), in_dims=in_dims)(params, *inputs, targets)
    return {name: g.reshape(len(targets), -1) for name, g in grads.items()}


def _one_by_one(
    model: GroupedModel,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    take: Callable[[int | slice, str, torch.Tensor], None],
) -> None:
    named = list(model.named_parameters())
    params = [p for _, p in named]
    for i in range(len(targets)):
        loss = F.cross_entropy(model(*model.example_inputs(inputs, i)), targets[i : i + 1])
        for (name, _), g in zip(
            named, torch.autograd.grad(loss, params, allow_unused=True), strict=True
        ):
            if g is not None:
                take(i, name, g.reshape(-1))


class GradientTap:
    """Per-example gradient norms of the linear-layer groups, taken from a backward.

    Use around one step: `with GradientTap(model) as tap: governed_step(...)`, then
    `tap.norms(normalizer)`; groups with other layers (convolutions, embedding
    bags) come back as NaN (see `tapped_groups`).
    """

    def __init__(self, model: GroupedModel) -> None:
        self.model = model
        self.k = len(model.layer_groups())
        self.tapped_groups: set[int] = set()
        self._linears: list[tuple[int, nn.Linear]] = []
        for g, group in enumerate(model.layer_groups(), start=1):
            owners = [m for m in group.modules() if any(True for _ in m.parameters(recurse=False))]
            if owners and all(isinstance(m, nn.Linear) for m in owners):
                self.tapped_groups.add(g)
                self._linears.extend((g, m) for m in owners)  # type: ignore[misc]
        self._handles: list[Any] = []
        self._seen: list[tuple[int, torch.Tensor, float, list[torch.Tensor]]] = []

    def __enter__(self) -> GradientTap:
        self._seen.clear()
        for g, layer in self._linears:
            self._handles.append(layer.register_forward_hook(self._hook(g)))
        return self

    def _hook(self, group: int) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            grads: list[torch.Tensor] = []
            bias = 1.0 if getattr(module, "bias", None) is not None else 0.0
            self._seen.append((group, inputs[0].detach(), bias, grads))
            if out.requires_grad:
                out.register_hook(lambda g: grads.append(g.detach()))

        return hook

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def norms(self, normalizer: float) -> torch.Tensor:
        """[batch, K] norms of each example's own loss gradient (the step's loss was
        the batch's summed loss over `normalizer`); NaN for groups not tapped."""
        batch = next((a.shape[0] for _, a, _, _ in self._seen), 0)
        squared = torch.zeros(batch, self.k)
        for g, a, bias, grads in self._seen:
            if not grads:  # no gradient reached this layer: nothing routed this deep
                continue
            out_sq = grads[0].pow(2).sum(1)
            squared[:, g - 1] += out_sq * (a.pow(2).sum(1) + bias)
        result = squared.sqrt() * normalizer
        for g in range(1, self.k + 1):
            if g not in self.tapped_groups:
                result[:, g - 1] = float("nan")
        return result


def step_norms(
    tap: GradientTap,
    model: GroupedModel,
    inputs: tuple[torch.Tensor, ...],
    targets: torch.Tensor,
    depth: torch.Tensor,
    normalizer: float,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """[batch, K] per-example group norms of a step the tap watched, each example's
    gradient as the step applied it (times its `scale`): read off the step where the
    tap could (the scale is in that backward already), computed with `torch.func`
    for the other groups."""
    norms = tap.norms(normalizer)
    missing = torch.isnan(norms).any(0)
    if bool(missing.any()):
        computed = per_example_group_norms(model, inputs, targets, depth)
        if scale is not None:
            computed = computed * scale
        norms[:, missing] = computed[:, missing]
    return norms
