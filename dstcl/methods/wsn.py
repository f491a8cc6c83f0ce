"""Winning SubNetworks (WSN; Kang et al., ICML 2022): a learned top-c % mask per task over shared weights.

Every weight has a real-valued score; task t's mask is, per layer, the weights with the largest
``|score|`` (the layer's count under the run's ``--init`` rule at its ``--sparsity``, as DST's; in the
classifier the same density within the task's own rows). Forward: ``W * mask``. Backward, straight
through the top-k and the absolute value (edge-popup): ``dL/dscore = dL/d(W * mask) * W * sign(score)``;
``dL/dW = dL/d(W * mask) * mask``, zeroed where an earlier task owns the weight. Weights, scores and the
mask change at every step (the task's optimizer updates the weights and the scores, one step each).

At the end of the task its mask is stored and its weights selected for the first time become its own
(frozen from then on); later tasks may select them again, read-only. As in the authors' code the scores
carry over from task to task, and a free weight keeps its value (its initialisation, or what a task
trained it to while it was selected and then dropped): :attr:`full` holds every weight.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..sparse.config import SparseConfig
from .base import MaskLearner
from .select import kaiming_scores, top_mask


class WSNLearner(MaskLearner):
    """Scores and weights trained together; the mask is the top |score| per layer at every step."""

    name = "wsn"

    def __init__(self, model: nn.Module, config: SparseConfig, *, seed: int = 0, num_tasks: int | None = None,
                 heads: Mapping[str, Sequence[slice]] | None = None):
        super().__init__(model, config, seed=seed, num_tasks=num_tasks, heads=heads)
        # the full weights start at the network's own initialisation; the scores as the authors draw them
        self.full = {n: nn.Parameter(p.detach().clone()) for n, p in self.params.items()}
        self.scores = {n: nn.Parameter(kaiming_scores(p, self.generator)) for n, p in self.params.items()}
        self.trainable: dict[str, torch.Tensor] = {}

    def select(self, name: str) -> torch.Tensor:
        """The task's mask of layer ``name`` from the scores now."""
        return top_mask(self.scores[name].abs(), self.region_count(name), self.regions[name])

    def _start(self, task: int, fresh: bool) -> None:  # noqa: ARG002 - nothing is drawn per task
        for name in self.params:
            self.trainable[name] = (~self.frozen[name]).to(self.full[name].dtype)
            self.masks[name] = self.select(name)
        if fresh:
            self._load_effective()

    @torch.no_grad()
    def _load_effective(self) -> None:
        for name, param in self.params.items():
            param.copy_(torch.where(self.masks[name], self.full[name], torch.zeros_like(param)))

    def _trained(self) -> list[torch.Tensor]:
        return list(self.full.values()) + list(self.scores.values())

    def _transfer(self) -> None:
        for name, param in self.params.items():
            grad = param.grad
            if grad is None:
                continue
            full, scores = self.full[name], self.scores[name]
            full.grad = grad * self._trains(name)
            scores.grad = grad * full * torch.sign(scores)  # straight through the top-k and |score|
            if self.regions[name] is not None:  # a head layer: the task's own rows only
                scores.grad.mul_(self.regions[name].to(grad.dtype))
            param.grad = None  # the parameter is not optimized: its gradient must not accumulate

    def _trains(self, name: str) -> torch.Tensor:
        """1.0 where the task trains the weight: selected now and not owned by an earlier task."""
        return self.trainable[name] * self.masks[name].to(self.trainable[name].dtype)

    def _add_decay(self) -> None:
        for name, full in self.full.items():
            self._decay(full.grad, full, self._trains(name))

    def _after_step(self, optimizer: torch.optim.Optimizer, own: bool) -> None:  # noqa: ARG002
        for name in self.params:
            if not own:  # an optimizer dstcl did not make may move frozen weights (momentum, decay): undo it
                self.full[name].copy_(torch.where(self.frozen[name], self.state.by_name[name].values,
                                                  self.full[name]))
            self.masks[name] = self.select(name)
        self._load_effective()

    def _end_values(self) -> dict[str, torch.Tensor]:
        return {name: full.detach() for name, full in self.full.items()}

    def _own_tensors(self) -> dict[str, torch.Tensor]:
        return {**{f"full/{n}": t for n, t in self.full.items()}, **{f"scores/{n}": t for n, t in self.scores.items()}}

    def _restored(self) -> None:
        """``kept_epoch best-train``: the kept epoch's trained weights are the ones in the model now."""
        with torch.no_grad():
            for name, param in self.params.items():
                trained = self.masks[name] & ~self.frozen[name]
                self.full[name].copy_(torch.where(trained, param, self.full[name]))
