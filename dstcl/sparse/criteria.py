"""Drop and growth criteria: registries of score functions with one shared signature.

A criterion is a pure function ``score(view: LayerView) -> Tensor`` returning one score per weight
position of a layer (same shape as the weight). The topology update, not the criterion, decides
which positions are eligible and how many to take:

* drop: among the currently active positions, the ones with the **lowest** scores are dropped;
* grow: among the positions not kept, the ones with the **highest** scores are grown.

So a criterion never has to count, mask or sort. Adding one is a single registered function::

    from dstcl.sparse import register_grow

    @register_grow("weight_noise")
    def weight_noise(view):
        \"\"\"Grow where the stored value is largest, ties broken at random.\"\"\"
        return view.values.abs() + 1e-6 * view.uniform()

and then ``SparseConfig(growth="weight_noise")`` uses it, as does ``dstcl run --growth weight_noise``
once the module is named in ``DSTCL_PLUGINS`` (see :mod:`dstcl.plugins`). The same holds for
``register_drop``. Scores may be any real numbers (not NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import ConfigError


@dataclass
class LayerView:
    """What a criterion may look at for one prunable tensor during a topology update.

    weight:  the effective weight ``W * mask`` used in the forward pass (0 where inactive).
    values:  the stored dense values (the value an owned weight would have if grown).
    active:  the current task's mask before the update.
    frozen:  positions owned by earlier tasks; they can be used but never trained.
    fired:   positions active at some point during the current task (for ``unfired``).
    grad:    ``dL/d(W * mask)`` of the last batch, dense (non-zero at inactive positions), with
             frozen positions zeroed; ``None`` before the first backward pass.
    momentum_fn: returns the optimizer's momentum estimate (see :func:`optimizer_momentum`).
    """

    name: str
    weight: torch.Tensor
    values: torch.Tensor
    active: torch.Tensor
    frozen: torch.Tensor
    fired: torch.Tensor
    grad: torch.Tensor | None
    generator: torch.Generator
    task: int
    momentum_fn: Callable[[], torch.Tensor | None] = field(default=lambda: None, repr=False)

    def uniform(self) -> torch.Tensor:
        """Uniform random numbers in [0, 1) of the weight's shape, from the learner's generator."""
        return torch.rand(self.weight.shape, generator=self.generator, device=self.generator.device).to(
            self.weight.device
        )

    def momentum(self) -> torch.Tensor:
        value = self.momentum_fn()
        if value is None:
            raise ConfigError(
                "momentum growth needs an optimizer with momentum state (Adam, or SGD with "
                "momentum > 0); use --optimizer adam or set --momentum, or choose another growth criterion."
            )
        return value


ScoreFn = Callable[[LayerView], torch.Tensor]

DROP: dict[str, ScoreFn] = {}
GROW: dict[str, ScoreFn] = {}


def register_drop(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering a drop criterion (low score = dropped first)."""
    return _register(DROP, name)


def register_grow(name: str) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering a growth criterion (high score = grown first)."""
    return _register(GROW, name)


def _register(registry: dict[str, ScoreFn], name: str) -> Callable[[ScoreFn], ScoreFn]:
    def add(fn: ScoreFn) -> ScoreFn:
        registry[name] = fn
        return fn

    return add


def get_drop(name: str) -> ScoreFn:
    return _lookup(DROP, name, "drop criterion")


def get_grow(name: str) -> ScoreFn:
    return _lookup(GROW, name, "growth criterion")


def _lookup(registry: dict[str, ScoreFn], name: str, what: str) -> ScoreFn:
    try:
        return registry[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown {what} {name!r}; valid: {', '.join(sorted(registry))}.") from None


# --- drop ---------------------------------------------------------------------------------------


@register_drop("magnitude")
def magnitude(view: LayerView) -> torch.Tensor:
    """Drop the active weights of smallest absolute value (frozen ones with their stored value)."""
    return view.weight.abs()


# --- grow ---------------------------------------------------------------------------------------


@register_grow("random")
def random_growth(view: LayerView) -> torch.Tensor:
    """Uniformly random positions (SET)."""
    return view.uniform()


@register_grow("unfired")
def unfired_growth(view: LayerView) -> torch.Tensor:
    """Random among positions never active in this task (ITOP); random among the rest when too few.

    Never-fired positions score in [1, 2), fired ones in [0, 1), so the unfired are taken first.
    """
    return view.uniform() + (~view.fired).to(view.weight.dtype)


@register_grow("gradient")
def gradient_growth(view: LayerView) -> torch.Tensor:
    """Largest |dL/d(W*mask)| on the last batch (RigL); frozen candidates score 0."""
    if view.grad is None:
        raise ConfigError(
            "gradient growth needs the gradient of the current batch: call loss.backward() before "
            "the topology update."
        )
    return view.grad.abs().masked_fill(view.frozen, 0.0)


@register_grow("momentum")
def momentum_growth(view: LayerView) -> torch.Tensor:
    """Largest |momentum| (sparse momentum; Adam: m / (sqrt(v) + eps)); frozen candidates score 0."""
    return view.momentum().abs().masked_fill(view.frozen, 0.0)


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
