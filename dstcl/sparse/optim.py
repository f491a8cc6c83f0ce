"""Optimizers for a task and the per-position optimizer state a topology update reads or resets.

``OPTIMIZERS`` is the registry behind ``--optimizer``. Weight decay is never given to the optimizer:
the learner adds L2 decay to the gradient of trainable weights only, so frozen weights stay exact.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..registry import Registry

OptimizerFactory = Callable[..., torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")


@OPTIMIZERS.register("adam")
def adam(params: Sequence[torch.nn.Parameter], lr: float, momentum: float) -> torch.optim.Optimizer:
    """Adam (the reference); momentum growth ranks m / (sqrt(v) + eps)."""
    return torch.optim.Adam(params, lr=lr)


@OPTIMIZERS.register("sgd")
def sgd(params: Sequence[torch.nn.Parameter], lr: float, momentum: float) -> torch.optim.Optimizer:
    """SGD with --momentum; momentum growth ranks its momentum buffer."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def optimizer_momentum(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> torch.Tensor | None:
    """The optimizer's momentum estimate for ``param``: Adam's m / (sqrt(v) + eps) or SGD's buffer.

    Returns zeros before the first step, ``None`` for an optimizer without momentum state.
    """
    group = next((g for g in optimizer.param_groups if any(p is param for p in g["params"])), None)
    if group is None:
        return None
    state = optimizer.state.get(param, {})
    if "betas" in group:  # Adam family
        if "exp_avg" not in state:
            return torch.zeros_like(param)
        return state["exp_avg"] / (state["exp_avg_sq"].sqrt() + group["eps"])
    if group.get("momentum", 0.0):
        buf = state.get("momentum_buffer")
        return torch.zeros_like(param) if buf is None else buf.clone()
    return None


def reset_optimizer_state(optimizer: torch.optim.Optimizer, param: torch.Tensor, positions: torch.Tensor) -> None:
    """Zero every per-element optimizer state of ``param`` (moments, momentum buffer) at ``positions``."""
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value.masked_fill_(positions, 0)
