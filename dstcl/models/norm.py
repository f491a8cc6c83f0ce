"""BatchNorm policy of the backbones: batch statistics (the paper) or per-task running statistics.

* ``bn="batch"`` (default, the paper and its reference code): ``BatchNorm(affine=False,
  track_running_stats=False)`` normalises with the statistics of the current batch, in training *and*
  at test time. Nothing is learned or stored, so parameter isolation covers the whole network, but a
  prediction depends on the other images of its batch (evaluate with a fixed batch size).
* ``bn="task"``: :class:`TaskBatchNorm2d` / :class:`TaskBatchNorm1d` keep running statistics per task
  id. Training uses batch statistics and updates only the current task's running mean/var; evaluation
  uses the current task's stored statistics, so a single image can be classified and learning a later
  task never changes an earlier task's statistics. :func:`set_task` selects the task on every module.

Neither mode has learned parameters (no affine), so the sparse masks still cover all trainable state.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

BN_MODES = ("batch", "task")


class _TaskBatchNorm(nn.Module):
    """Batch normalisation without affine parameters and with one set of running statistics per task.

    Buffers ``running_mean`` / ``running_var`` have shape ``[max_tasks, C]``; row ``t`` belongs to task
    ``t``. ``num_batches_tracked[t]`` counts the training batches task ``t`` has seen; a task with no
    statistics yet (e.g. the untrained network's baseline evaluation) is normalised with batch
    statistics rather than with meaningless initial values.
    """

    _expected_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, max_tasks: int = 100, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if max_tasks < 1:
            raise ConfigError(f"max_tasks must be a positive integer, got {max_tasks}.")
        if not 0.0 < momentum <= 1.0:
            raise ConfigError(f"TaskBatchNorm momentum must be in (0, 1], got {momentum}.")
        self.num_features = num_features
        self.max_tasks = max_tasks
        self.eps = eps
        self.momentum = momentum
        self.task = 0
        self.register_buffer("running_mean", torch.zeros(max_tasks, num_features))
        self.register_buffer("running_var", torch.ones(max_tasks, num_features))
        self.register_buffer("num_batches_tracked", torch.zeros(max_tasks, dtype=torch.long))
        # Host-side copy of "task t has statistics", so eval needs no device sync to decide.
        self._has_stats = [False] * max_tasks
        self._cumulative: int | None = None  # while re-estimating: batches averaged so far

    def set_task(self, task: int) -> None:
        if not 0 <= task < self.max_tasks:
            raise ConfigError(
                f"task {task} is out of range: bn='task' keeps statistics for max_tasks={self.max_tasks} "
                f"tasks (ids 0..{self.max_tasks - 1}); build the model with a larger max_tasks."
            )
        self.task = int(task)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() not in self._expected_dims:
            raise ValueError(f"{type(self).__name__} expects a {' or '.join(map(str, self._expected_dims))}-D "
                             f"input, got {x.dim()}-D")
        t = self.task
        if self.training:
            self.num_batches_tracked[t] += 1
            self._has_stats[t] = True
            momentum = self.momentum
            if self._cumulative is not None:  # an equal-weight average over the re-estimation batches
                self._cumulative += 1
                momentum = 1.0 / self._cumulative
            # Row views share storage with the buffers, so F.batch_norm updates task t's row in place.
            return F.batch_norm(x, self.running_mean[t], self.running_var[t], None, None, True, momentum, self.eps)
        if not self._has_stats[t]:
            return F.batch_norm(x, None, None, None, None, True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean[t], self.running_var[t], None, None, False, 0.0, self.eps)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._has_stats = [bool(n) for n in self.num_batches_tracked.tolist()]

    def extra_repr(self) -> str:
        return (f"{self.num_features}, max_tasks={self.max_tasks}, eps={self.eps}, "
                f"momentum={self.momentum}, task={self.task}")


class TaskBatchNorm2d(_TaskBatchNorm):
    """Per-task BatchNorm over ``(N, C, H, W)`` inputs (see module docstring)."""

    _expected_dims = (4,)


class TaskBatchNorm1d(_TaskBatchNorm):
    """Per-task BatchNorm over ``(N, C)`` or ``(N, C, L)`` inputs (see module docstring)."""

    _expected_dims = (2, 3)


def check_bn(bn: str, max_tasks: int) -> None:
    """Raise a ConfigError for an unknown BatchNorm mode or a bad ``max_tasks``."""
    if bn not in BN_MODES:
        raise ConfigError(f"bn must be one of {', '.join(BN_MODES)} (batch: batch statistics also at test "
                          f"time, as the paper; task: per-task running statistics); got {bn!r}.")
    if isinstance(max_tasks, bool) or not isinstance(max_tasks, int) or max_tasks < 1:
        raise ConfigError(f"max_tasks must be a positive integer, got {max_tasks!r}.")


def batch_norm(num_features: int, bn: str = "batch", max_tasks: int = 100, dims: int = 2) -> nn.Module:
    """The normalisation layer for policy ``bn``: 2-D (conv features) or 1-D (``dims=1``)."""
    check_bn(bn, max_tasks)
    if bn == "task":
        return (TaskBatchNorm2d if dims == 2 else TaskBatchNorm1d)(num_features, max_tasks)
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(num_features, affine=False, track_running_stats=False)


def set_task(model: nn.Module, task: int) -> int:
    """Select task ``task``'s statistics on every per-task norm module; returns how many were set.

    A no-op (returns 0) for models in ``bn="batch"`` mode, so callers can call it unconditionally.
    """
    count = 0
    for module in model.modules():
        if isinstance(module, _TaskBatchNorm):
            module.set_task(task)
            count += 1
    return count


def task_norm_state(model: nn.Module, task: int) -> list[torch.Tensor]:
    """Task ``task``'s normalisation statistics in every per-task norm module ([] in ``bn="batch"`` mode)."""
    out = []
    for module in model.modules():
        if isinstance(module, _TaskBatchNorm):
            out += [module.running_mean[task], module.running_var[task], module.num_batches_tracked[task]]
    return out


@torch.no_grad()
def reestimate_statistics(model: nn.Module, task: int, batches) -> int:
    """Recompute task ``task``'s running statistics from ``batches`` (inputs, no augmentation) with the
    network's final weights: an equal-weight average over the batches, replacing what the running average
    collected while the weights were still changing. Returns the number of modules updated (0 in
    ``bn="batch"`` mode, where nothing is stored)."""
    modules = [m for m in model.modules() if isinstance(m, _TaskBatchNorm)]
    if not modules:
        return 0
    was_training = model.training
    for m in modules:
        m.running_mean[task].zero_()
        m.running_var[task].fill_(1.0)
        m.num_batches_tracked[task] = 0
        m._cumulative = 0
        m.set_task(task)
    model.train()
    try:
        for xb in batches:
            model(xb)
    finally:
        for m in modules:
            m._cumulative = None
        model.train(was_training)
    return len(modules)
