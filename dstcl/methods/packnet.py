"""PackNet (Mallya & Lazebnik, CVPR 2018): train the free weights, prune them by magnitude, retrain, freeze.

Per task t (``docs/algorithm.md``, "PackNet"):

1. **Main phase** (``epochs``): every free weight is trained, beside the weights of earlier tasks, which
   are used and frozen; free weights start at the network's initialisation in task 0 and at zero (or a
   fresh Kaiming draw, ``--free-init``) afterwards, as after PackNet's pruning.
2. **Prune** at the step where the main phase ends: per layer, keep the ``keep_count`` trained weights
   of largest magnitude; the others go back to the free pool at zero.
3. **Retrain** (``retrain_epochs``, at the final learning rate): only the kept weights train.
4. The kept weights are owned by t; task t's subnetwork is every weight owned by tasks <= t.

The share per task is ``min(d_l, 1/T)`` of each hidden layer (``d_l``: the layer's density under the
run's ``--init`` rule at its ``--sparsity``, as DST's per-task counts), so the whole sequence fits into
the network; in the classifier a task keeps the density ``d_l`` of its own rows (no other task trains
them).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..sparse.config import SparseConfig
from ..sparse.task import kaiming_draw
from .base import MaskLearner, reset_state_at
from .select import top_mask


class PackNetLearner(MaskLearner):
    """PackNet's prune-and-retrain per task, with exact isolation (frozen weights never change)."""

    name = "packnet"

    def __init__(self, model: nn.Module, config: SparseConfig, *, seed: int = 0, num_tasks: int | None = None,
                 heads: Mapping[str, Sequence[slice]] | None = None, epochs: int = 1, retrain_epochs: int = 0):
        super().__init__(model, config, seed=seed, num_tasks=num_tasks, heads=heads)
        if epochs < 1 or retrain_epochs < 0:
            raise ValueError(f"epochs must be >= 1 and retrain_epochs >= 0, got {epochs} and {retrain_epochs}")
        self.epochs, self.extra_epochs = int(epochs), int(retrain_epochs)
        self.pruned = False
        self.prune_at = 0
        self.trainable: dict[str, torch.Tensor] = {}  # 1.0 where the task trains
        self.keep: dict[str, torch.Tensor | None] = {}  # 1.0 where active (None: the whole layer)

    def keep_count(self, name: str) -> int:
        """Weights task t keeps in layer ``name``: ``min(d_l, 1/T)`` of a hidden layer, ``d_l`` of its own rows."""
        n, count, region = self.params[name].numel(), self.counts[name], self.regions[name]
        if region is not None:
            return self.region_count(name)
        return max(1, min(count, n // (self.num_tasks or 1)))

    def _start(self, task: int, fresh: bool) -> None:
        self.pruned = False
        self.prune_at = self.total_steps * self.epochs // (self.epochs + self.extra_epochs)
        with torch.no_grad():
            for name, param in self.params.items():
                layer, frozen, region = self.state.by_name[name], self.frozen[name], self.regions[name]
                mask = torch.ones_like(frozen) if region is None else region.clone()
                self.masks[name] = mask
                self._derive(name)
                if fresh:
                    start = layer.values
                    if task > 0:  # free weights start afresh, as after PackNet's pruning (zero) or drawn again
                        drawn = (kaiming_draw(layer.values, self.generator) if self.config.free_init == "kaiming"
                                 else torch.zeros_like(layer.values))
                        start = torch.where(frozen, layer.values, drawn)
                    param.copy_(torch.where(mask, start, torch.zeros_like(start)))

    def _derive(self, name: str) -> None:
        """The float masks of layer ``name`` from its mask: it trains what is active and not frozen."""
        mask, param = self.masks[name], self.params[name]
        self.trainable[name] = (mask & ~self.frozen[name]).to(param.dtype)
        self.keep[name] = None if bool(mask.all()) else mask.to(param.dtype)

    def _trained(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def _transfer(self) -> None:
        for name, param in self.params.items():
            if param.grad is not None:
                param.grad.mul_(self.trainable[name])  # frozen and pruned weights get no gradient

    def _add_decay(self) -> None:
        for name, param in self.params.items():
            self._decay(param.grad, param, self.trainable[name])

    def _after_step(self, optimizer: torch.optim.Optimizer, own: bool) -> None:
        for name, param in self.params.items():
            if self.keep[name] is not None:
                param.mul_(self.keep[name]).add_(0.0)  # inactive weights stay +0.0
            if not own:  # an optimizer dstcl did not make may move frozen weights (momentum, decay): undo it
                frozen = self.masks[name] & self.frozen[name]
                param.copy_(torch.where(frozen, self.state.by_name[name].values, param))
        if not self.pruned and self.steps >= self.prune_at:
            self.prune(optimizer)

    @torch.no_grad()
    def prune(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Keep the largest-magnitude weights the task trained (:meth:`keep_count` per layer); the others go back to
        the free pool at zero, with no optimizer state."""
        for name, param in self.params.items():
            candidates = self.masks[name] & ~self.frozen[name]
            kept = top_mask(param.abs(), self.keep_count(name), candidates)
            dropped = candidates & ~kept
            param.masked_fill_(dropped, 0.0)
            reset_state_at(optimizer, param, dropped)
            self.masks[name] = self.masks[name] & ~dropped
            self._derive(name)
        self.pruned = True

    def _end_values(self) -> dict[str, torch.Tensor]:
        if not self.pruned:  # a loop that stopped before the main phase ended: prune now
            self.prune()
        # inside the mask the trained (or frozen) values; outside it a free weight is 0, a frozen one unchanged
        return {name: torch.where(self.masks[name] | ~self.frozen[name], param.detach(),
                                  self.state.by_name[name].values) for name, param in self.params.items()}

    def _task_state(self) -> dict:
        return {"pruned": self.pruned}

    def _load_task_state(self, in_task: dict) -> None:
        self.pruned = bool(in_task["pruned"])
        for name in self.params:
            self._derive(name)

    def _restored(self) -> None:
        for name in self.params:
            self._derive(name)
