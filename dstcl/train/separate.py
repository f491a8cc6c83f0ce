"""One fresh dense network per task, trained on that task alone: the within-task difficulty reference.

How hard a task is depends on which classes it holds (a clustered task of similar classes is harder
than an interleaved one), so comparing a DST task's accuracy across class orders mixes that difficulty
with what isolation and reuse do. ``--method separate`` measures the difficulty alone: every task starts
from the *same* initial weights (the network the run built, which a DST run at the same seed starts from
too), is trained densely on its own data at the run's budget (epochs, batch size, optimizer, schedule),
and is kept; evaluation loads the task's own network. A grid pairing each DST task with its separate
accuracy (same classes, same seed) removes the difficulty of the classes. BWT is 0 by construction
(nothing is shared; every entry is measured again); forward transfer has no meaning (no task sees
another), so FWT is reported but says nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import DstclError
from .dense import DenseLearner


class SeparateLearner(DenseLearner):
    """A :class:`DenseLearner` that starts every task from the initial weights and keeps each task's network."""

    def __init__(self, model: nn.Module, *, num_tasks: int | None = None):
        super().__init__(model, num_tasks=num_tasks)
        self.initial = {n: p.detach().cpu().clone() for n, p in self.params.items()}
        self.networks: list[dict[str, torch.Tensor]] = []  # per learned task, on the CPU

    def start_task(self, task: int, total_steps: int) -> None:
        super().start_task(task, total_steps)
        self._load(self.initial)

    def end_task(self) -> list:
        report = super().end_task()
        self.networks.append({n: p.detach().cpu().clone() for n, p in self.params.items()})
        return report

    def apply_task(self, task: int) -> None:
        if self.task is not None:
            raise DstclError("a task is in progress; evaluate learned tasks between tasks.")
        if not 0 <= task < len(self.networks):
            raise DstclError(f"task {task} has not been learned (learned: {len(self.networks)}).")
        self._load(self.networks[task])

    @torch.no_grad()
    def _load(self, values: dict[str, torch.Tensor]) -> None:
        for name, param in self.params.items():
            param.copy_(values[name])

    def task_digest(self, task: int) -> str:  # noqa: ARG002 - every entry is measured again (isolated=False)
        return ""

    def weights(self) -> dict[str, torch.Tensor]:
        """Every task's network (``task_NN/<weight name>``): there is no one network of the run."""
        return {f"task_{t:02d}/{n}": v for t, network in enumerate(self.networks) for n, v in network.items()}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "initial": self.initial, "networks": self.networks}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        super().load_state_dict(saved)
        self.initial = {n: v.cpu() for n, v in saved["initial"].items()}
        self.networks = [{n: v.cpu() for n, v in network.items()} for network in saved["networks"]]


def build_separate(cfg: Any, model: nn.Module, rows: Any) -> SeparateLearner:  # noqa: ARG001 - one head per task
    """The ``separate`` method's learner (the :class:`~dstcl.train.methods.Method` factory)."""
    return SeparateLearner(model, num_tasks=cfg.data.tasks)
