"""A dense learner without isolation: the lower bound a continual learner is compared with.

It implements the :class:`~dstcl.train.contract.Learner` contract the trainer and the run use, but trains every
weight of one shared network on each task in turn (fine-tuning), so later tasks overwrite what earlier
ones learned (forgetting: BWT far below 0). Multitask training over all tasks' data uses it too.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import DstclError
from ..sparse.optim import check_no_weight_decay, make_task_optimizer


class DenseLearner:
    """Every weight trainable in every task; :meth:`apply_task` loads nothing (one network for all tasks)."""

    isolates = False

    def __init__(self, model: nn.Module, *, num_tasks: int | None = None):
        self.model = model
        self.params = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.num_tasks = num_tasks
        self.task: int | None = None
        self.learned_tasks = 0
        self._weight_decay = 0.0
        self.counts = {name: p.numel() for name, p in self.params.items()}

    def start_task(self, task: int, total_steps: int) -> None:  # noqa: ARG002 - the SparseLearner interface
        if task != self.learned_tasks:
            raise DstclError(f"tasks are learned in order: the next task is {self.learned_tasks}, not {task}.")
        self.task = task

    def make_optimizer(self, kind: str = "adam", lr: float = 1e-3, *, momentum: float = 0.9,
                       weight_decay: float = 0.0) -> torch.optim.Optimizer:
        self._weight_decay = float(weight_decay)
        return make_task_optimizer(kind, list(self.params.values()), lr, momentum, weight_decay)

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
             loss: torch.Tensor | None = None) -> None:  # noqa: ARG002 - the SparseLearner interface
        check_no_weight_decay(optimizer)
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self._weight_decay:
            with torch.no_grad():
                for param in self.params.values():
                    if param.grad is not None:
                        param.grad.add_(param, alpha=self._weight_decay)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return None

    def end_task(self) -> list:
        if self.task is None:
            raise DstclError("no task in progress.")
        self.task, self.learned_tasks = None, self.learned_tasks + 1
        return []

    def current_masks(self) -> dict[str, torch.Tensor]:
        return {}

    def attach(self, optimizer: torch.optim.Optimizer) -> None:  # noqa: ARG002 - a dense step needs nothing extra
        return None

    def observe(self, loss: torch.Tensor) -> None:  # noqa: ARG002 - nothing learns from the loss
        return None

    def task_digest(self, task: int) -> str:  # noqa: ARG002 - one network: nothing is isolated to prove
        return ""

    def state_payload(self) -> None:
        return None  # no masks or owners: the weights are the whole state

    def weights(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().cpu() for n, p in self.params.items()}

    def restore_masks(self, masks: dict) -> None:  # noqa: ARG002 - a dense network has no masks
        return None

    def apply_task(self, task: int) -> None:  # noqa: ARG002 - one network serves every task
        return None

    def state_dict(self) -> dict:
        return {"task": self.task, "learned_tasks": self.learned_tasks, "weight_decay": self._weight_decay}

    def load_state_dict(self, saved: dict) -> None:
        self.task, self.learned_tasks = saved["task"], int(saved["learned_tasks"])
        self._weight_decay = float(saved.get("weight_decay", 0.0))
