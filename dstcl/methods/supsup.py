"""SupSup (Supermasks in Superposition; Wortsman et al., NeurIPS 2020): fixed random weights, a mask per task.

The weights are drawn once and never trained: signed constants ``sign(w) * sqrt(2 / fan_in)`` (the
paper's choice; ``w`` the network's own initialisation) or a Kaiming-normal draw (``--supsup-init
kaiming``). Each task learns only its mask: fresh scores (edge-popup's initialisation), the mask is
the top ``|score|`` per layer (the layer's count under the run's ``--init`` rule at its ``--sparsity``;
in the classifier the same density within the task's own rows), the scores trained straight through
(``dL/dscore = dL/d(W * mask) * W * sign(score)``). No task owns a weight (there is nothing to freeze);
each task's mask is stored, and task-agnostic prediction mixes the masks (SupSup's one-shot task
inference, :func:`dstcl.train.agnostic.supsup_scores`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..sparse.config import SparseConfig
from .base import MaskLearner
from .select import kaiming_normal, kaiming_scores, signed_constant, top_mask

WEIGHT_INITS = ("signed-constant", "kaiming")


class SupSupLearner(MaskLearner):
    """Only the scores train; the weights stay the fixed random ones in :attr:`state`."""

    name = "supsup"
    owns = False

    def __init__(self, model: nn.Module, config: SparseConfig, *, seed: int = 0, num_tasks: int | None = None,
                 heads: Mapping[str, Sequence[slice]] | None = None, weight_init: str = "signed-constant"):
        super().__init__(model, config, seed=seed, num_tasks=num_tasks, heads=heads)
        if weight_init not in WEIGHT_INITS:
            raise ValueError(f"weight_init must be one of {', '.join(WEIGHT_INITS)}, got {weight_init!r}")
        with torch.no_grad():
            for name, param in self.params.items():
                fixed = (signed_constant(param.detach()) if weight_init == "signed-constant"
                         else kaiming_normal(param, self.generator))
                self.state.by_name[name].values.copy_(fixed)
                param.copy_(fixed)
        self.scores = {n: nn.Parameter(torch.zeros_like(p, dtype=torch.float32)) for n, p in self.params.items()}

    def select(self, name: str) -> torch.Tensor:
        return top_mask(self.scores[name].abs(), self.region_count(name), self.regions[name])

    def _start(self, task: int, fresh: bool) -> None:  # noqa: ARG002
        with torch.no_grad():
            for name, param in self.params.items():
                if fresh:  # every task learns its mask from fresh scores
                    self.scores[name].copy_(kaiming_scores(param, self.generator))
                self.masks[name] = self.select(name)
            if fresh:
                self._load_effective()

    @torch.no_grad()
    def _load_effective(self) -> None:
        for name, param in self.params.items():
            values = self.state.by_name[name].values
            param.copy_(torch.where(self.masks[name], values, torch.zeros_like(values)))

    def _trained(self) -> list[torch.Tensor]:
        return list(self.scores.values())

    def _transfer(self) -> None:
        for name, param in self.params.items():
            grad = param.grad
            if grad is None:
                continue
            scores = self.scores[name]
            scores.grad = grad * self.state.by_name[name].values * torch.sign(scores)
            if self.regions[name] is not None:  # a head layer: the task's own rows only
                scores.grad.mul_(self.regions[name].to(grad.dtype))
            param.grad = None  # the weights are never trained

    def _after_step(self, optimizer: torch.optim.Optimizer, own: bool) -> None:  # noqa: ARG002
        for name in self.params:
            self.masks[name] = self.select(name)
        self._load_effective()

    def _end_values(self) -> dict[str, torch.Tensor]:
        return {name: layer.values for name, layer in self.state.by_name.items()}

    def _own_tensors(self) -> dict[str, torch.Tensor]:
        return {f"scores/{n}": t for n, t in self.scores.items()}
