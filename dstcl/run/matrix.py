"""The accuracy matrix of a run: which subnetwork is evaluated on which test set, after which task.

After learning task ``i``:

* ``R[i][j]`` for ``j <= i``: task j's test set through task j's mask and logits (task-incremental);
* ``R[i][j]`` for ``j > i``: task j's test set through task i's mask and task i's logits (the
  reference code's forward-transfer evaluation, used by ``fwt_reference``).

``baseline[j]`` is the untrained network (its initial dense weights) on task j with task j's logits;
GEM's FWT compares ``R[j-1][j]`` against it. Every test set is walked in its canonical class-mixed
order (:class:`~dstcl.train.evaluate.EvalSet`).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from .. import faults, metrics
from ..models import set_task
from ..sparse import SparseLearner
from ..train.evaluate import EVAL_BATCH_SIZE, EvalSet, accuracy


class AccuracyMatrix:
    """R (T x T, percent, None where not evaluated yet) and the untrained baseline, filled task by task."""

    def __init__(self, model: nn.Module, learner: SparseLearner, heads: Sequence[slice], tests: Sequence[EvalSet],
                 prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device):
        self.model, self.learner, self.heads, self.tests = model, learner, list(heads), list(tests)
        self.prepare, self.device = prepare, device
        T = len(self.heads)
        self.R: list[list[float | None]] = [[None] * T for _ in range(T)]
        self.baseline: list[float] | None = None

    @property
    def tasks(self) -> int:
        return len(self.heads)

    def measure(self, weights_of: int, data_of: int, head: int) -> float:
        """Accuracy of task ``data_of``'s test set through the weights loaded now, with ``head``'s logits."""
        set_task(self.model, weights_of)
        return accuracy(self.model, self.tests[data_of], self.heads[head], self.prepare,
                        batch_size=EVAL_BATCH_SIZE, device=self.device)

    def measure_baseline(self) -> list[float]:
        """The untrained network (the weights in the model now) on every task."""
        self.baseline = [self.measure(j, j, j) for j in range(self.tasks)]
        return self.baseline

    def after_task(self, i: int) -> None:
        """Fill row ``i`` (every learned task, and the future tasks through task i's subnetwork)."""
        faults.point("evaluation")
        for j in range(i + 1):
            self.learner.apply_task(j)
            self.R[i][j] = self.measure(j, j, j)
        self.learner.apply_task(i)
        for j in range(i + 1, self.tasks):
            self.R[i][j] = self.measure(i, j, i)

    @property
    def completed(self) -> int:
        return sum(1 for row in self.R if row[0] is not None)

    def summary(self) -> dict:
        """The metrics of the rows filled so far (``acc`` etc. over the completed tasks)."""
        done = self.completed
        out: dict = {"tasks_completed": done, "accuracy_matrix": self.R, "baseline_accuracy": self.baseline}
        if done:
            partial = [row[:done] for row in self.R[:done]]
            out.update(metrics.summarize(partial, self.baseline[:done] if self.baseline else None))
        else:
            out.update({"acc": None, "bwt": None, "fwt": None, "fwt_reference": None, "incremental_accuracy": []})
        return out

    def state_dict(self) -> dict:
        return {"R": self.R, "baseline": self.baseline}

    def load_state_dict(self, saved: dict) -> None:
        self.R, self.baseline = saved["R"], saved["baseline"]
