"""Drop and growth criteria: registries of score functions with one shared signature.

A criterion is a pure function ``score(view: LayerView) -> Tensor`` returning one score per weight
position of a layer (same shape as the weight). The topology update (:func:`select_topology`), not
the criterion, decides which positions are eligible and how many to take, and breaks ties at random:

* drop: among the currently active positions, the ones with the **lowest** scores are dropped;
* grow: among the positions not kept, the ones with the **highest** scores are grown.

So a criterion never has to count, mask or sort. Adding one is a single registered function::

    from dstcl.sparse import register_grow

    @register_grow("weight_noise")
    def weight_noise(view):
        \"\"\"Grow where the stored value is largest.\"\"\"
        return view.values.abs()

and then ``SparseConfig(growth="weight_noise")`` uses it, as does ``dstcl run --growth weight_noise``
once the module is named in ``DSTCL_PLUGINS`` (see :mod:`dstcl.plugins`). The same holds for
``register_drop``. Scores may be any real numbers (not NaN).

A growth criterion registered with ``frozen="zero"`` (gradient, momentum) has its frozen candidates
(weights owned by earlier tasks, which cannot learn) scored 0 by the learner, as in the reference
code; with ``frozen="score"`` (random, unfired, the default) they compete on their own score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import ConfigError
from ..registry import Registry

FROZEN_POLICIES = ("score", "zero")


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
    momentum_fn: returns the optimizer's momentum estimate (see :func:`dstcl.sparse.optim.optimizer_momentum`).
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

_HOW = "Add your own with dstcl.sparse.register_{} (docs/extending.md)."
DROP: Registry[ScoreFn] = Registry("drop criterion", _HOW.format("drop"))
GROW: Registry[ScoreFn] = Registry("growth criterion", _HOW.format("grow"))


def register_drop(name: str, *, override: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering a drop criterion (low score = dropped first)."""
    return DROP.register(name, override=override)


def grow_needs(name: str) -> str | None:
    """What a registered growth criterion cannot work without ("gradient", "momentum"), or None."""
    return GROW.entry(name).meta.get("needs") if name in GROW else None


def grow_reads(name: str) -> str | None:
    """What a growth criterion or policy may read beyond the weights (its needs, or what a policy's choices
    may need: ``auto`` may pick momentum growth), or None."""
    if name not in GROW:
        return None
    meta = GROW.entry(name).meta
    return meta.get("reads", meta.get("needs"))


def register_grow(name: str, *, frozen: str = "score", needs: str | None = None, bernoulli: bool = False,
                  override: bool = False) -> Callable[[ScoreFn], ScoreFn]:
    """Decorator registering a growth criterion (high score = grown first).

    ``frozen``: ``"zero"`` makes the learner score frozen candidates 0; ``"score"`` leaves them as
    scored. ``needs``: ``"momentum"`` when the criterion reads optimizer momentum (so a config with
    momentum-free SGD is refused before training, and training FLOPs count a dense gradient every
    step), ``"gradient"`` when it reads the dense gradient at update steps. ``bernoulli=True`` (uniform
    scores only): under ``counts="bernoulli"`` the number grown is a binomial draw, as the reference
    code's random growth (:mod:`dstcl.sparse.topology`).
    """
    if frozen not in FROZEN_POLICIES:
        raise ConfigError(f"frozen must be one of {', '.join(FROZEN_POLICIES)}, got {frozen!r}.")
    return GROW.register(name, override=override, frozen=frozen, needs=needs, bernoulli=bernoulli)


# --- drop ---------------------------------------------------------------------------------------


@register_drop("magnitude")
def magnitude(view: LayerView) -> torch.Tensor:
    """Drop the active weights of smallest absolute value (frozen ones with their stored value)."""
    return view.weight.abs()


# --- grow ---------------------------------------------------------------------------------------


@register_grow("random", bernoulli=True)
def random_growth(view: LayerView) -> torch.Tensor:
    """Uniformly random positions (SET)."""
    return view.uniform()


@register_grow("unfired")
def unfired_growth(view: LayerView) -> torch.Tensor:
    """Random among positions never active in this task (ITOP); random among the rest when too few.

    Never-fired positions score in [1, 2), fired ones in [0, 1), so the unfired are taken first.
    """
    return view.uniform() + (~view.fired).to(view.weight.dtype)


@register_grow("gradient", frozen="zero", needs="gradient")
def gradient_growth(view: LayerView) -> torch.Tensor:
    """Largest |dL/d(W*mask)| on the last batch (RigL)."""
    if view.grad is None:
        raise ConfigError(
            "gradient growth needs the gradient of the current batch: call loss.backward() before "
            "the topology update."
        )
    return view.grad.abs()


@register_grow("momentum", frozen="zero", needs="momentum")
def momentum_growth(view: LayerView) -> torch.Tensor:
    """Largest |momentum| (sparse momentum; Adam: m / (sqrt(v) + eps))."""
    return view.momentum().abs()


def grow_scores(name: str, view: LayerView) -> torch.Tensor:
    """Growth scores of criterion ``name`` with its frozen-candidate policy applied (the one place it is)."""
    entry = GROW.entry(name)
    scores = entry.obj(view)
    if entry.meta.get("frozen") == "zero":
        scores = scores.masked_fill(view.frozen, 0.0)
    return scores


# --- growth policies ------------------------------------------------------------------------------

AUTO = "auto"


def _chosen_at_each_update(view: LayerView) -> torch.Tensor:  # noqa: ARG001 - never called
    raise RuntimeError("growth 'auto' is a policy: the topology updater picks a criterion for every update")


# a growth *policy* (dstcl.sparse.auto's bandit), registered beside the criteria so that config choices,
# --help and errors list it: it scores nothing itself but picks one of the criteria at every update, so it
# may read the optimizer momentum (momentum growth) though it needs nothing
GROW.register(AUTO, _chosen_at_each_update, help="a criterion chosen at every topology update by a bandit",
              policy=True, reads="momentum", frozen="score")


def criteria() -> list[str]:
    """The registered growth criteria a policy chooses among (the policies themselves left out)."""
    return [name for name in GROW.names() if not GROW.entry(name).meta.get("policy")]


def is_policy(name: str) -> bool:
    return name in GROW and bool(GROW.entry(name).meta.get("policy"))
