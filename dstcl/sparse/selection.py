"""The topology update as a pure function: which positions stay, which are grown.

:func:`select_topology` knows nothing of optimizers, ownership or criteria: it takes the current
mask, one score per position for dropping and one for growing, how many to drop and where growth
is allowed, and returns the new mask. Exact counts always; ties among equal scores (many zero
gradients, many zero magnitudes) are broken uniformly at random from the given generator, never by
position, so tied picks do not cluster in the first rows of a layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
import torch


@dataclass(frozen=True)
class Selection:
    mask: torch.Tensor  # the new mask (exactly as many positions as before)
    kept: torch.Tensor  # active before and kept
    grown: torch.Tensor  # chosen by growth (may include positions just dropped: regrown)


def select_topology(
    mask: torch.Tensor,
    drop_scores: torch.Tensor,
    grow_scores: torch.Tensor,
    n_drop: int,
    eligible: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    n_grow: int | None = None,
) -> Selection:
    """Keep the ``k - n_drop`` active positions with the highest ``drop_scores``, then grow ``n_drop``
    positions with the highest ``grow_scores`` among the ``eligible`` ones not kept (default: every
    position not kept, so a dropped position may be regrown). ``k`` = ``mask.sum()``. ``n_grow``
    grows another number than ``n_drop`` (Bernoulli counts: the layer's size then changes).
    """
    k = int(mask.sum())
    if not 0 <= n_drop <= k:
        raise ValueError(f"cannot drop {n_drop} of {k} active positions")
    kept = top_positions(drop_scores, mask, k - n_drop, generator)
    candidates = ~kept if eligible is None else eligible & ~kept
    grown = top_positions(grow_scores, candidates, n_drop if n_grow is None else n_grow, generator)
    if bool((kept & grown).any()):  # an invariant, checked even under python -O
        raise RuntimeError("a position was both kept and grown")
    return Selection(kept | grown, kept, grown)


def top_positions(scores: torch.Tensor, eligible: torch.Tensor, k: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean mask of the ``k`` eligible positions with the highest scores (exact count).

    Every position above the k-th highest score is taken, and the rest is drawn uniformly among the
    positions equal to it. The k-th score is found by selection: numpy's introselect on the CPU (~10x
    faster than ``torch.topk`` for the large ``k`` of a topology update), ``torch.kthvalue`` elsewhere.
    """
    if eligible.device.type == "cpu":
        return _top_positions_cpu(scores, eligible, k, generator)
    flat_eligible = eligible.reshape(-1)
    idx = flat_eligible.nonzero().squeeze(1)
    if k > idx.numel():
        raise RuntimeError(f"cannot select {k} positions among {idx.numel()} eligible ones")
    chosen = torch.zeros_like(flat_eligible, dtype=torch.bool)
    if k == 0:
        return chosen.view(eligible.shape)
    sub = scores.detach().reshape(-1)[idx]
    if bool(torch.isnan(sub).any()):  # a NaN score (a diverged weight) ranks last, so counts stay exact
        sub = sub.nan_to_num(nan=-math.inf)
    if k == idx.numel():
        chosen[idx] = True
        return chosen.view(eligible.shape)
    threshold = torch.kthvalue(sub, sub.numel() - k + 1).values
    above = sub > threshold
    tied = (sub == threshold).nonzero().squeeze(1)
    need = k - int(above.sum())
    take = above
    if need < tied.numel():
        order = torch.randperm(tied.numel(), generator=generator, device=_device_of(generator, tied))
        tied = tied[order.to(tied.device)[:need]]
    take = take.clone()
    take[tied] = True
    chosen[idx[take]] = True
    return chosen.view(eligible.shape)


def _top_positions_cpu(scores: torch.Tensor, eligible: torch.Tensor, k: int,
                       generator: torch.Generator | None) -> torch.Tensor:
    """The CPU path of :func:`top_positions` in numpy: the same choice, without full-size temporaries
    when there is nothing to draw (all positions tied at the k-th score are taken)."""
    shape = eligible.shape
    idx = np.flatnonzero(eligible.reshape(-1).numpy())
    if k > idx.size:
        raise RuntimeError(f"cannot select {k} positions among {idx.size} eligible ones")
    chosen = np.zeros(eligible.numel(), dtype=np.bool_)
    if k == 0:
        return torch.from_numpy(chosen).view(shape)
    sub = scores.detach().reshape(-1).numpy()[idx]
    if np.isnan(sub).any():  # a NaN score (a diverged weight) ranks last, so counts stay exact
        sub = np.nan_to_num(sub, nan=-np.inf)
    if k == idx.size:
        chosen[idx] = True
        return torch.from_numpy(chosen).view(shape)
    part = np.argpartition(sub, sub.size - k)
    top = part[sub.size - k:]
    threshold = sub[part[sub.size - k]]  # the smallest score taken
    tied_in = int(np.count_nonzero(sub[top] == threshold))
    tied_all = np.flatnonzero(sub == threshold)
    if tied_in == tied_all.size:  # every position at the threshold is taken: nothing to draw
        chosen[idx[top]] = True
    else:
        order = torch.randperm(tied_all.size, generator=generator).numpy()
        chosen[idx[np.flatnonzero(sub > threshold)]] = True
        chosen[idx[tied_all[order[:tied_in]]]] = True
    return torch.from_numpy(chosen).view(shape)


def _device_of(generator: torch.Generator | None, like: torch.Tensor) -> torch.device:
    return generator.device if generator is not None else like.device
