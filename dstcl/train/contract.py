"""The one contract between a training loop and a continual learner.

:class:`Learner` is what :class:`~dstcl.train.trainer.TaskTrainer`, the accuracy matrix and the run
ask of a learner, whatever the method: :class:`~dstcl.sparse.SparseLearner` (DST and static sparse
training, isolated) and :class:`~dstcl.train.dense.DenseLearner` (fine-tuning, joint training) both
implement it, and a new method (PackNet, WSN, ...) does by implementing these methods. Nothing outside
a learner reads its internals.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

import torch


@runtime_checkable
class Learner(Protocol):
    """Task life cycle, the optimizer step, evaluation weights and checkpoint state of one learner."""

    task: int | None  # the task in progress, None between tasks

    @property
    def learned_tasks(self) -> int: ...

    def start_task(self, task: int, total_steps: int) -> None:
        """Set up task ``task`` (``total_steps`` optimizer steps will follow)."""

    def make_optimizer(self, kind: str = "adam", lr: float = 1e-3, *, momentum: float = 0.9,
                       weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """A fresh optimizer for the task in progress, attached."""

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Make ``optimizer.step()`` do what the learner needs at every step (a framework's optimizer too)."""

    def observe(self, loss: torch.Tensor) -> None:
        """A step's training loss (for learners that learn from it)."""

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
             loss: torch.Tensor | None = None) -> Any:
        """One optimizer step; what it changed besides the weights (a topology update's report) or None."""

    def end_task(self) -> list:
        """Finish the task in progress; a per-layer capacity report (empty for a dense learner)."""

    def apply_task(self, task: int) -> None:
        """Load learned task ``task``'s network for evaluation (between tasks)."""

    def task_digest(self, task: int) -> str:
        """A digest of everything task ``task``'s outputs depend on (equal digests: equal outputs)."""

    def current_masks(self) -> dict[str, torch.Tensor]:
        """The masks of the task in progress ({} for a dense learner)."""

    def restore_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Go back to masks taken earlier in this task."""

    def state_payload(self) -> dict | None:
        """The learned state a finished run keeps in ``state.pt`` (None: the weights are all of it)."""

    def weights(self) -> dict[str, torch.Tensor]:
        """The learned value of every weight, by name, on the CPU (a run's ``weights.pt``)."""

    def state_dict(self) -> dict:
        """Everything to continue bit-identically (plain tensors and values: a checkpoint)."""

    def load_state_dict(self, saved: dict) -> None: ...
