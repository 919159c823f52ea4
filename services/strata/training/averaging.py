"""Weight averaging: the model a run publishes (pure torch, no I/O).

A run trains at a constant learning rate, so its last step's weights wander
around the minimum: on a few hundred actively chosen labels one run's test
accuracy could land 0.02-0.04 below the next one's on nearly the same labels.
The model a run publishes is instead an exponential moving average of its
weights over the steps (Polyak averaging), which lands near the middle of that
wander. The average's rate is ramped in (`min(decay, (1 + t) / (10 + t))` at
step t), so the random initial weights are forgotten within the first steps
however high the decay.

Averaging keeps governance intact: a parameter no label was allowed to reach
never moves, and the average of a value that never moves is that value, to the
bit (`lerp` of equal values is exact).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class WeightAverage:
    """An exponential moving average of a model's parameters (buffers are not averaged)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an average's decay is in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.params = {name: p.detach().clone() for name, p in model.named_parameters()}

    def rate(self) -> float:
        """The weight of the next step's parameters in the average."""
        t = self.updates
        return 1.0 - min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's parameters after a step into the average."""
        rate = self.rate()
        for name, p in model.named_parameters():
            self.params[name].lerp_(p.detach(), rate)
        self.updates += 1

    def published(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`state` (a state_dict of the trained model) with the averaged parameters in."""
        return average_into(state, self.state())

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps to go on averaging after a resume."""
        return {"updates": self.updates, "params": self.params}

    def load(self, saved: dict[str, Any]) -> None:
        missing = set(self.params) - set(saved["params"])
        if missing:
            raise ValueError(f"the saved average lacks parameters: {', '.join(sorted(missing))}")
        self.updates = int(saved["updates"])
        self.params = {name: saved["params"][name].clone() for name in self.params}


def average_into(
    state: dict[str, torch.Tensor], saved: dict[str, Any] | None
) -> dict[str, torch.Tensor]:
    """A model state_dict with the averaged parameters of `saved` (a `WeightAverage.state`)
    in place of the last step's; `state` itself when nothing was averaged."""
    if saved is None:
        return state
    return {**state, **saved["params"]}
