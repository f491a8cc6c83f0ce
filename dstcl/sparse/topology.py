"""One layer's topology update applied to the live network: select, then set values and optimizer state.

:func:`~dstcl.sparse.selection.select_topology` decides *which* positions stay and grow (a pure
function); this module applies that decision to a layer while its task trains:

* newly grown free weights start at 0 (a fresh Kaiming draw for channel-structured layers) with their
  optimizer state reset; a weight dropped and grown again in the same update keeps value and state;
* newly grown owned weights (of earlier tasks) join frozen, with their stored value
  (``reused_value="stored"``) or at zero (``"zero"``, the reference code: its stored value is what
  the task's evaluation uses, so the evaluated network is not the trained one);
* under ``counts="bernoulli"`` a criterion registered ``bernoulli=True`` (random growth) grows a
  binomial number of positions: each candidate with probability ``dropped / candidates``, as the
  reference's Bernoulli masks; the layer's active count then changes from update to update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .optim import reset_optimizer_state
from .structure import select_units
from .task import TaskLayer, kaiming_draw


@dataclass(frozen=True)
class LayerUpdate:
    """What one layer's update did: weights dropped, of those grown again, grown positions owned earlier."""

    dropped: int
    regrown: int
    grown_reused: int


def bernoulli_growth(layer: TaskLayer, n_drop: int, generator: torch.Generator) -> int:
    """How many positions a Bernoulli growth step grows after dropping ``n_drop``: each of the
    ``numel - kept`` candidates with probability ``n_drop / candidates`` (a binomial draw)."""
    candidates = layer.state.numel - (layer.count - n_drop)
    if candidates <= 0 or n_drop <= 0:
        return 0
    draw = torch.binomial(torch.tensor(float(candidates)), torch.tensor(n_drop / candidates), generator=generator)
    return int(draw)


@torch.no_grad()
def update_layer(layer: TaskLayer, drop_scores: torch.Tensor, grow_scores: torch.Tensor, drop_fraction: float, *,
                 channel: bool, generator: torch.Generator, optimizer: torch.optim.Optimizer | None,
                 reused_value: str = "stored", bernoulli: bool = False) -> LayerUpdate | None:
    """Drop and grow in one layer (see the module doc); None when nothing is dropped."""
    grow = (lambda n_drop: bernoulli_growth(layer, n_drop, generator)) if bernoulli else None
    picked = select_units(layer.mask, drop_scores, grow_scores, drop_fraction, channel, generator, grow)
    if picked is None:
        return None
    chosen, n_drop = picked
    new_mask = chosen.mask
    count = int(new_mask.sum())
    if count != layer.count and not bernoulli:  # an invariant, checked even under python -O
        raise RuntimeError(f"{layer.state.name}: active count changed")
    newly = chosen.grown & ~layer.mask  # regrown positions keep their value and optimizer state
    grown_free = newly & ~layer.frozen
    grown_owned = newly & layer.frozen
    param = layer.param
    param.masked_fill_(~new_mask | grown_free, 0.0)
    if channel and bool(grown_free.any()):  # a fresh channel needs a magnitude
        param.copy_(torch.where(grown_free, kaiming_draw(param, generator), param))
    if reused_value == "stored":
        param.copy_(torch.where(grown_owned, layer.state.values, param))
    if optimizer is not None:
        reset_optimizer_state(optimizer, param, grown_free)
    layer.set_mask(new_mask)
    layer.count = count
    layer.fired |= new_mask
    return LayerUpdate(n_drop, int(chosen.grown.sum()) - int(newly.sum()), int(grown_owned.sum()))
