"""Capacity report: how much of each layer the tasks have used, and how much they share.

Pure function over the state of a layer before and after a task; the learner calls it at the end of
every task.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class LayerCapacity:
    name: str
    numel: int
    active: int  # size of the new task's mask
    owned_fraction: float  # weights owned by any task after this one
    new_fraction: float  # weights this task took from the free pool
    reused_fraction: float  # share of the new mask that are earlier tasks' weights
    free: int  # weights still free after this task

    def as_dict(self) -> dict:
        return asdict(self)


def layer_capacity(
    name: str, owner_before: torch.Tensor, mask: torch.Tensor, claims: torch.Tensor | None = None
) -> LayerCapacity:
    """Capacity of one layer after a task with ``mask`` ends; ``owner_before`` is the owner tensor before.

    ``claims`` are the positions the task may own (default: all). A classifier row of another task's
    classes gets no gradient from this task, so it is in the mask but never taken from the free pool.
    """
    numel = mask.numel()
    was_owned = owner_before >= 0
    active = int(mask.sum())
    reused = int((mask & was_owned).sum())
    taken = mask & ~was_owned
    if claims is not None:
        taken &= claims
    new = int(taken.sum())
    owned_after = int(was_owned.sum()) + new
    return LayerCapacity(
        name=name,
        numel=numel,
        active=active,
        owned_fraction=owned_after / numel,
        new_fraction=new / numel,
        reused_fraction=reused / active if active else 0.0,
        free=numel - owned_after,
    )


class CapacityWarning(UserWarning):
    """A layer has no free weight left."""


def newly_full(report: list[LayerCapacity]) -> list[str]:
    """Layers this task filled up (free weights before, none after): warned about once, not every task."""
    return [row.name for row in report if row.free == 0 and row.new_fraction > 0]
