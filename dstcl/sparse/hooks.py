"""The optimizer step of a sparse task: isolation and DST as PyTorch optimizer step hooks.

:meth:`StepHooks.attach` registers a pre-step and a post-step hook on an optimizer, so that its own
``step()`` does everything a sparse task needs (see :mod:`dstcl.sparse.learner` for why each part is
exact): the gradient of frozen weights zeroed and L2 decay added before the step; inactive weights back
to 0, frozen ones back to their stored value (for an optimizer dstcl did not make) and a topology
update when due after it. :meth:`StepHooks.step` is the same step for dstcl's own training loop.
"""

from __future__ import annotations

import weakref

import torch

from ..errors import DstclError
from .optim import make_task_optimizer, reset_optimizer_state
from .task import TaskLayer, UpdateReport
from .topology import TopologyUpdater


class StepHooks:
    """What an optimizer step of the task in progress does; the learner hands it the task's layers."""

    def __init__(self, topology: TopologyUpdater, reused_value: str):
        self.topology, self.reused_value = topology, reused_value
        self.layers: list[TaskLayer] | None = None  # None: no task in progress
        self.weight_decay = 0.0
        self._own: weakref.ref | None = None  # the optimizer make_optimizer made (weak: ids are reused)
        self._hooks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._last_report: UpdateReport | None = None
        self._reset_frozen_state: weakref.WeakSet = weakref.WeakSet()

    def start_task(self, layers: list[TaskLayer]) -> None:
        self.layers, self._reset_frozen_state = layers, weakref.WeakSet()

    def end_task(self) -> None:
        self.layers = None

    def make_optimizer(self, params: list[torch.nn.Parameter], kind: str = "adam", lr: float = 1e-3, *,
                       momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """A fresh optimizer for the current task, attached (:meth:`attach`); L2 weight decay is added by
        the step hook, and only to weights the task may train (the optimizer itself has none)."""
        optimizer = make_task_optimizer(kind, params, lr, momentum, weight_decay)
        self.weight_decay = float(weight_decay)
        self._own = weakref.ref(optimizer)
        self.attach(optimizer)
        return optimizer

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Hook isolation and DST into ``optimizer.step()`` (any torch optimizer, a framework's included).

        Before each step: the gradient of frozen weights is zeroed (and, for an optimizer made by
        :meth:`make_optimizer`, L2 decay added where the task trains). After it: inactive weights go back
        to 0, frozen ones to their stored value (for an optimizer dstcl did not make), and a topology
        update runs when due. Attaching the same optimizer again does nothing.
        """
        if optimizer in self._hooks:
            return
        pre = optimizer.register_step_pre_hook(lambda opt, args, kwargs: self._before_step(opt))
        post = optimizer.register_step_post_hook(lambda opt, args, kwargs: self._after_step(opt))
        self._hooks[optimizer] = (pre, post)

    def detach(self, optimizer: torch.optim.Optimizer) -> None:
        """Remove the step hooks of :meth:`attach`."""
        for handle in self._hooks.pop(optimizer, ()):
            handle.remove()

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
             loss: torch.Tensor | None = None) -> UpdateReport | None:
        """One optimizer step (the hooks of :meth:`attach` do isolation and DST); the update's report, if any.

        An fp16 ``scaler`` unscales and steps (a step it skips for inf/NaN gradients is not counted);
        ``loss`` is what ``growth="auto"`` learns from."""
        if loss is not None:
            self.topology.observe(loss)
        self.require_task()
        self.attach(optimizer)
        self._last_report = None
        if scaler is not None:
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        report, self._last_report = self._last_report, None
        return report

    def _is_own(self, optimizer: torch.optim.Optimizer) -> bool:
        return self._own is not None and self._own() is optimizer

    def require_task(self) -> None:
        if self.layers is None:
            raise DstclError("no task in progress: call learner.start_task(task, total_steps) before training.")

    @torch.no_grad()
    def _before_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.require_task()
        own = self._is_own(optimizer)
        wd = self.weight_decay if own else 0.0
        first = not own and optimizer not in self._reset_frozen_state
        for layer in self.layers:
            if first and layer.has_frozen:  # moments kept from earlier tasks must not move frozen weights
                reset_optimizer_state(optimizer, layer.param, layer.frozen)
            grad = layer.param.grad
            if grad is None:
                continue
            if wd:
                grad.add_(layer.param, alpha=wd)
            if layer.has_frozen:
                grad.mul_(layer.trainable)  # frozen weights get no gradient
        if first:
            self._reset_frozen_state.add(optimizer)

    @torch.no_grad()
    def _after_step(self, optimizer: torch.optim.Optimizer) -> None:
        restore = not self._is_own(optimizer)
        for layer in self.layers:
            layer.param.mul_(layer.keep).add_(0.0)  # inactive weights stay +0.0 (x * 0 may be -0.0)
            if restore and layer.has_frozen:
                layer.param.copy_(torch.where(layer.mask & layer.frozen & (layer.param != 0), layer.state.values,
                                              layer.param) if self.reused_value == "zero" else
                                  torch.where(layer.mask & layer.frozen, layer.state.values, layer.param))
        self._last_report = self.topology.after_step(self.layers, optimizer)
