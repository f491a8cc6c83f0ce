"""Structured (channel) sparsity: a task's subnetwork is a set of output channels per layer.

With ``--structure channel`` every hidden Conv/Linear layer's mask is whole output channels (filters,
rows): channel ``c`` of layer ``l`` is active for a task with all its incoming weights, or not at all.
Everything else of the algorithm is unchanged and works on these masks: ownership (a task owns the
free channels it trained; later tasks reuse them read-only), isolation (BWT exactly 0), checkpoints.
The classifier stays unstructured (its rows are classes; a task keeps its own rows).

* **Budgets**: the layer densities of the init rule (ERK or uniform) at the overall density, times the
  layer's output channels, rounded (at least one channel): :func:`channel_counts`.
* **Drop and growth**: the registered criteria score every weight as for unstructured DST; a channel's
  score is the L2 norm of its weights' scores (:func:`channel_scores`): magnitude drop becomes the
  channel's L2 norm, gradient growth the norm of the channel's gradient, momentum growth the norm of
  its momentum, random and unfired growth stay random per channel. The same pure selector
  (:func:`~dstcl.sparse.selection.select_topology`) then picks whole channels.
* **Without reuse** (``reuse="off"``): :func:`initial_mask` draws among free weights (channels) only, and
  :func:`select_units` lets growth choose only them (docs/algorithm.md, "Without reuse").
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import torch

from ..errors import ConfigError

STRUCTURES = ("unstructured", "channel")


def channel_counts(shapes: Mapping[str, Sequence[int]], densities: Mapping[str, float]) -> dict[str, int]:
    """Active output channels per layer: ``round(density_l * channels_l)``, between 1 and ``channels_l``."""
    return {name: max(1, min(int(shape[0]), round(densities[name] * int(shape[0])))) for name, shape in shapes.items()}


def channel_scores(scores: torch.Tensor) -> torch.Tensor:
    """One score per output channel: the L2 norm of the channel's weight scores."""
    return scores.detach().float().reshape(scores.shape[0], -1).norm(dim=1)


def channel_mask(mask: torch.Tensor) -> torch.Tensor:
    """The channels of a channel-structured weight mask (a channel is active when any weight is)."""
    return mask.reshape(mask.shape[0], -1).any(dim=1)


def expand(channels: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A weight mask with whole output channels ``channels`` active."""
    return channels.view(-1, *([1] * (len(shape) - 1))).expand(*shape).clone()


def fan_in(shape: Sequence[int]) -> int:
    return math.prod(shape[1:])


def sample_mask(shape: Sequence[int], count: int, channels: int | None, generator: torch.Generator,
                device: torch.device, density: float | None = None) -> torch.Tensor:
    """An initial mask: ``count`` weights uniformly at random, or ``channels`` whole output channels; with
    ``density`` (Bernoulli counts) each position independently with that probability instead."""
    here = generator.device  # drawn where the generator lives, then moved (a CPU generator serves any device)
    if density is not None:
        return (torch.rand(tuple(shape), generator=generator, device=here) < density).to(device)
    if channels is None:
        n = math.prod(shape)
        mask = torch.zeros(n, dtype=torch.bool, device=device)
        mask[torch.randperm(n, generator=generator, device=here)[:count].to(device)] = True
        return mask.view(*shape)
    chosen = torch.zeros(shape[0], dtype=torch.bool, device=device)
    chosen[torch.randperm(shape[0], generator=generator, device=here)[:channels].to(device)] = True
    return expand(chosen, shape)


def initial_mask(name: str, shape: Sequence[int], count: int, channels: int | None, generator: torch.Generator,
                 device: torch.device, density: float | None = None, owner: torch.Tensor | None = None) -> torch.Tensor:
    """A task's initial mask: :func:`sample_mask` over every position, or, given ``owner`` (``reuse="off"``),
    over the free positions (channels) only."""
    if owner is None:
        return sample_mask(shape, count, channels, generator, device, density)
    free = owner < 0
    units = free.reshape(-1) if channels is None else free.reshape(shape[0], -1).all(dim=1)
    need = count if channels is None else channels
    index = units.nonzero().squeeze(1)
    if index.numel() < need:
        unit = "weights" if channels is None else "output channels"
        raise ConfigError(f"--reuse off: layer {name} has {index.numel():,} free {unit} left, but the task needs "
                          f"{need:,}; raise the sparsity or learn fewer tasks (the check before training covers "
                          "runs that dstcl sets up).")
    pick = index[torch.randperm(index.numel(), generator=generator, device=generator.device)[:need].to(index.device)]
    chosen = torch.zeros(units.numel(), dtype=torch.bool, device=device)
    chosen[pick.to(device)] = True
    return chosen.view(*shape) if channels is None else expand(chosen, shape)


def select_units(mask: torch.Tensor, drop_scores: torch.Tensor, grow_scores: torch.Tensor, drop_fraction: float,
                 channels: bool, generator: torch.Generator, grow: Callable[[int], int] | None = None,
                 eligible: torch.Tensor | None = None):
    """One layer's topology update over its units (weights, or whole output channels).

    Returns ``(selection over weights, weights dropped)``, or ``None`` when nothing is dropped (a full
    layer, or a drop fraction that rounds to zero units). ``grow(n_drop)`` gives how many weights to
    grow when it is not ``n_drop`` (Bernoulli counts; weights only). ``eligible``: the weights growth may
    choose (``reuse="off"``: the free ones; a channel when all its weights are); None: every one.
    """
    from .selection import Selection, select_topology

    if not channels:
        k, n = int(mask.sum()), mask.numel()
        n_drop = min(math.ceil(drop_fraction * k), k)
        if k >= n or n_drop <= 0:
            return None
        n_grow = grow(n_drop) if grow is not None else None
        return select_topology(mask, drop_scores, grow_scores, n_drop, eligible, generator=generator,
                               n_grow=n_grow), n_drop
    active = channel_mask(mask)
    k, n = int(active.sum()), active.numel()
    n_drop = min(math.ceil(drop_fraction * k), k)
    if k >= n or n_drop <= 0:
        return None
    units = None if eligible is None else eligible.reshape(eligible.shape[0], -1).all(dim=1)
    chosen = select_topology(active, channel_scores(drop_scores), channel_scores(grow_scores), n_drop, units,
                             generator=generator)
    shape = mask.shape
    return Selection(expand(chosen.mask, shape), expand(chosen.kept, shape), expand(chosen.grown, shape)), \
        n_drop * fan_in(shape)
