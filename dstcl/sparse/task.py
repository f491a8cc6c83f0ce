"""What the learner tracks while a task trains, and what a topology update reports."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .criteria import LayerView
from .optim import optimizer_momentum
from .state import LayerState


class TaskLayer:
    """Per-layer bookkeeping while a task trains (derived from the state at start_task).

    ``keep`` (1.0 where active) and ``trainable`` (0.0 where frozen) are float copies of the masks: a
    training step multiplies by them, about 5x faster on the CPU than ``masked_fill_`` with a boolean mask.
    """

    def __init__(self, param: nn.Parameter, state: LayerState, count: int, mask: torch.Tensor, frozen: torch.Tensor):
        self.param, self.state, self.count, self.frozen = param, state, count, frozen
        self.has_frozen = bool(frozen.any())
        self.trainable = (~frozen).to(param.dtype) if self.has_frozen else None
        self.fired = mask.clone()
        self.set_mask(mask)

    def set_mask(self, mask: torch.Tensor) -> None:
        self.mask = mask
        self.keep = mask.to(self.param.dtype)

    @property
    def inactive(self) -> torch.Tensor:
        return ~self.mask


@dataclass
class UpdateReport:
    """What one topology update did."""

    step: int
    drop_fraction: float
    growth: str
    dropped: dict[str, int] = field(default_factory=dict)
    regrown: dict[str, int] = field(default_factory=dict)  # dropped and grown again in the same update
    grown_reused: dict[str, int] = field(default_factory=dict)  # grown positions owned by earlier tasks
    auto_reward: float | None = None  # --growth auto: the reward credited to the previous choice

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())


def kaiming_draw(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A fresh draw of PyTorch's default Conv/Linear initialisation (kaiming uniform, a=sqrt(5))."""
    fresh = torch.empty(like.shape, dtype=like.dtype, device=generator.device)
    nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
    return fresh.to(like.device)


def layer_view(layer: TaskLayer, optimizer: torch.optim.Optimizer | None, generator: torch.Generator,
               task: int) -> LayerView:
    """What a criterion may look at for one layer now (the gradient with frozen positions zeroed)."""
    param = layer.param
    grad = param.grad
    if grad is not None and layer.has_frozen:
        grad = grad.masked_fill(layer.frozen, 0.0)
    return LayerView(
        name=layer.state.name, weight=param.detach(), values=layer.state.values, active=layer.mask,
        frozen=layer.frozen, fired=layer.fired, grad=grad, generator=generator, task=task,
        momentum_fn=(lambda: optimizer_momentum(optimizer, param)) if optimizer is not None else (lambda: None),
    )
