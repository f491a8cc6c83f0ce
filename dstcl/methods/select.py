"""Pure helpers of the mask-based baselines: top-k masks, a task's region of a layer, fixed initialisations.

Kept apart from the learners so that the hand-made test cases can check them on tensors alone.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def top_mask(scores: torch.Tensor, k: int, region: torch.Tensor | None = None) -> torch.Tensor:
    """A boolean mask of exactly ``min(k, candidates)`` positions with the highest ``scores`` (within ``region``).

    The threshold comes from ``kthvalue`` (linear time: a 4M-weight layer at every WSN step); only when
    equal scores straddle it does ``topk`` pick exactly k among them (deterministic on one machine).
    """
    flat = scores.detach().reshape(-1).float()
    candidates = flat.numel() if region is None else int(region.sum())
    k = max(0, min(int(k), candidates))
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k == 0:
        return mask.view(scores.shape)
    if region is not None:
        flat = flat.masked_fill(~region.reshape(-1), float("-inf"))
    if k == flat.numel():
        return torch.ones_like(mask).view(scores.shape)
    threshold = torch.kthvalue(flat, flat.numel() - k + 1).values
    mask = flat >= threshold
    if int(mask.sum()) != k:  # ties at the threshold
        mask = torch.zeros_like(mask)
        mask[torch.topk(flat, k, sorted=False).indices] = True
    return mask.view(scores.shape)


def row_region(shape: Sequence[int], rows: slice | None, device: torch.device | str = "cpu") -> torch.Tensor | None:
    """The positions of a head layer's ``rows`` (a task's own classes), or None for the whole layer."""
    if rows is None:
        return None
    region = torch.zeros(tuple(shape), dtype=torch.bool, device=device)
    region[rows] = True
    return region


def region_count(count: int, numel: int, region: torch.Tensor | None) -> int:
    """A layer's count ``count`` scaled to a region: the same density inside a task's own rows (at least 1)."""
    if region is None:
        return int(count)
    size = int(region.sum())
    return max(1, min(size, round(count * size / numel)))


def kaiming_scores(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scores drawn as edge-popup, SupSup and WSN draw them: PyTorch's default init (kaiming uniform, a=sqrt(5))."""
    fresh = torch.empty(like.shape, dtype=torch.float32, device=generator.device)
    torch.nn.init.kaiming_uniform_(fresh, a=math.sqrt(5), generator=generator)
    return fresh.to(like.device)


def fan_in(shape: Sequence[int]) -> int:
    return math.prod(shape[1:]) if len(shape) > 1 else int(shape[0])


def signed_constant(weight: torch.Tensor) -> torch.Tensor:
    """SupSup's signed-constant weights: ``sign(w) * sqrt(2 / fan_in)`` (kaiming's std for ReLU, fan-in mode)."""
    return torch.sign(weight) * math.sqrt(2.0 / fan_in(weight.shape))


def kaiming_normal(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """SupSup's ``kaiming_normal`` weights (fan-in, ReLU gain), drawn from ``generator``."""
    std = math.sqrt(2.0 / fan_in(like.shape))
    fresh = torch.randn(like.shape, generator=generator, device=generator.device) * std
    return fresh.to(device=like.device, dtype=like.dtype)
