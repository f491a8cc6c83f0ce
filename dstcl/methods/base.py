"""What PackNet, WSN and SupSup share: the task life cycle, isolation checks, capacity and checkpoints.

Each of them keeps its per-task masks and the values of owned weights in a
:class:`~dstcl.sparse.SparseState`, the state DST keeps, so everything downstream of a learner (the
isolation digests of the accuracy matrix, ``state.pt``, ``capacity.json``, the model file, prediction
with and without the task label) works on them unchanged. As in :mod:`dstcl.sparse.learner`, each
model parameter holds the *effective* weight ``W * mask_t`` while task t trains; what differs per
method is which tensors the optimizer updates and what happens around each optimizer step, so the
step runs through two optimizer hooks: ``_transfer`` (before: turn ``param.grad`` into the gradients of
the tensors the method trains) and ``_after_step`` (after: put the effective weights back).

A head layer (the classifier, rows per task) is handled as DST handles it: a task selects and owns
weights only in its own rows (``region``), the other rows score other tasks' classes.
"""

from __future__ import annotations

import warnings
import weakref
from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError, DstclError
from ..sparse.capacity import CapacityWarning, LayerCapacity, layer_capacity, newly_full
from ..sparse.config import SparseConfig
from ..sparse.copies import TaskCopies
from ..sparse.density import layer_counts
from ..sparse.growth_plan import GrowthPlan
from ..sparse.optim import make_task_optimizer, reset_optimizer_state
from ..sparse.params import check_heads, prunable_parameters
from ..sparse.state import LayerState, SparseState, pack_mask, subnetwork_digest, unpack_mask
from .select import region_count, row_region

# These methods read a dense weight gradient at every step (scores of every weight, or every free weight
# trained); the compute ledger counts training FLOPs as for a growth criterion that does (dstcl.sparse.flops).
DENSE_GRADIENT_PLAN = GrowthPlan(ranges=(), default="momentum", spec="momentum")


class MaskLearner:
    """The Learner contract (:mod:`dstcl.train.contract`) for a mask-based method; subclasses fill in the steps."""

    name = "mask"  # the method's name, in messages
    owns = True  # a task owns the free weights of its mask (False: SupSup, whose weights are never trained)
    extra_epochs = 0  # epochs the trainer adds after the main phase (PackNet's retraining)
    plan = DENSE_GRADIENT_PLAN

    def __init__(self, model: nn.Module, config: SparseConfig, *, seed: int = 0, num_tasks: int | None = None,
                 heads: Mapping[str, Sequence[slice]] | None = None):
        config.validate(num_tasks)
        if config.structure != "unstructured":
            raise ConfigError(f"--method {self.name} selects single weights; --structure {config.structure} is DST's "
                              "(channel-structured subnetworks). Use --structure unstructured.")
        self.model, self.config, self.num_tasks = model, config, num_tasks
        named = prunable_parameters(model)
        if not named:
            raise ConfigError("the model has no Conv or Linear weight to mask.")
        self.params = dict(named)
        self.heads = check_heads(heads or {}, self.params, num_tasks)
        self.state = SparseState(LayerState.fresh(name, p.data) for name, p in named)
        shapes = {name: tuple(p.shape) for name, p in named}
        self.counts = layer_counts(shapes, config.density, config.init, power_scale=config.erk_power_scale)
        self.generator = torch.Generator()  # CPU: a seed gives the same draws on any device
        self.generator.manual_seed(int(seed))
        self.copies = TaskCopies(model, self.params.values())
        self.task: int | None = None
        self.masks: dict[str, torch.Tensor] = {}
        self.frozen: dict[str, torch.Tensor] = {}
        self.regions: dict[str, torch.Tensor | None] = {}
        self.steps = self.total_steps = 0
        self.weight_decay = 0.0
        self._own: weakref.ref | None = None
        self._hooks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._transferred = False

    # --- task life cycle ------------------------------------------------------------------------------

    @property
    def learned_tasks(self) -> int:
        return self.state.num_tasks

    def start_task(self, task: int, total_steps: int, *, _fresh: bool = True) -> None:
        """Set up task ``task``: frozen weights, its region of each layer, its first mask and effective weights."""
        if self.task is not None:
            raise DstclError(f"task {self.task} is still in progress; call end_task() first.")
        if task != self.learned_tasks:
            raise DstclError(f"tasks are learned in order: the next task is {self.learned_tasks}, not {task}.")
        if self.num_tasks is not None and task >= self.num_tasks:
            raise DstclError(f"the sequence has {self.num_tasks} tasks; task {task} does not exist.")
        self.task, self.steps, self.total_steps = task, 0, int(total_steps)
        for name, param in self.params.items():
            layer = self.state.by_name[name]
            self.frozen[name] = layer.owner >= 0
            rows = self.heads.get(name)
            self.regions[name] = row_region(layer.shape, rows[task] if rows else None, param.device)
        self._start(task, fresh=_fresh)
        if _fresh:
            self.copies.start_task()

    def region_count(self, name: str) -> int:
        """The layer's count of the run's density rule, within the task's region."""
        return region_count(self.counts[name], self.params[name].numel(), self.regions[name])

    def end_task(self) -> list[LayerCapacity]:
        """Check isolation, store the task's masks, make its new weights owned; a capacity report per layer."""
        if self.task is None:
            raise DstclError("no task in progress.")
        values = self._end_values()
        report = []
        with torch.no_grad():
            for name in self.params:
                layer, mask, frozen = self.state.by_name[name], self.masks[name], self.frozen[name]
                new = values[name].detach()
                if not torch.equal(new[frozen], layer.values[frozen]):
                    raise RuntimeError(f"isolation violated in {name}: a weight owned by an earlier task changed. Was "
                                       "the optimizer made by learner.make_optimizer() or attached (learner.attach)?")
                claims = self._claims(name, mask)
                report.append(layer_capacity(name, layer.owner, mask, claims))
                layer.values.copy_(torch.where(frozen, layer.values, new))
                layer.owner[mask & ~frozen & claims] = self.task
                layer.masks.append(mask)
        self.copies.end_task()
        full = newly_full(report)
        if full and not (self.num_tasks is not None and self.task == self.num_tasks - 1):
            warnings.warn(f"after task {self.task} no free weight is left in {len(full)} layer(s) "
                          f"({', '.join(full[:4])}); later tasks can only reuse frozen weights there.",
                          CapacityWarning, stacklevel=2)
        self.task, self.masks, self.frozen, self.regions = None, {}, {}, {}
        return report

    def _claims(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Positions the task may own: its region (nothing for a method that owns nothing)."""
        if not self.owns:
            return torch.zeros_like(like)
        region = self.regions[name]
        return torch.ones_like(like) if region is None else region

    # --- optimizer steps --------------------------------------------------------------------------------

    def make_optimizer(self, kind: str = "adam", lr: float = 1e-3, *, momentum: float = 0.9,
                       weight_decay: float = 0.0) -> torch.optim.Optimizer:
        """A fresh optimizer over what the method trains, attached; L2 decay is added by the step hook."""
        tensors = self._trained() + list(self.copies.params.values())
        optimizer = make_task_optimizer(kind, tensors, lr, momentum, weight_decay)
        self.weight_decay = float(weight_decay)
        self._own = weakref.ref(optimizer)
        self.attach(optimizer)
        return optimizer

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Run the method's step around ``optimizer.step()`` (idempotent)."""
        if optimizer in self._hooks:
            return
        pre = optimizer.register_step_pre_hook(lambda opt, args, kwargs: self._before(opt))
        post = optimizer.register_step_post_hook(lambda opt, args, kwargs: self._after(opt))
        self._hooks[optimizer] = (pre, post)

    def observe(self, loss: torch.Tensor) -> None:  # noqa: ARG002 - nothing learns from the loss
        return None

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
             loss: torch.Tensor | None = None) -> None:  # noqa: ARG002 - the Learner interface
        """One optimizer step; the gradients move to the trained tensors first (so a scaler unscales them)."""
        self._require_task()
        self.attach(optimizer)
        self._transferred = False
        with torch.no_grad():
            self._transfer()
        self._transferred = True
        if scaler is not None:
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return None

    def _require_task(self) -> None:
        if self.task is None:
            raise DstclError("no task in progress: call learner.start_task(task, total_steps) before training.")

    def _is_own(self, optimizer: torch.optim.Optimizer) -> bool:
        return self._own is not None and self._own() is optimizer

    @torch.no_grad()
    def _before(self, optimizer: torch.optim.Optimizer) -> None:
        self._require_task()
        if not self._transferred:  # a loop that calls optimizer.step() itself
            self._transfer()
        self._transferred = True
        if self.weight_decay and self._is_own(optimizer):  # after a scaler's unscaling: decay is not scaled
            self._add_decay()

    @torch.no_grad()
    def _after(self, optimizer: torch.optim.Optimizer) -> None:
        self._transferred = False
        self.steps += 1
        self._after_step(optimizer, own=self._is_own(optimizer))

    def _decay(self, grad: torch.Tensor | None, weight: torch.Tensor, trainable: torch.Tensor) -> None:
        """L2 weight decay on the weights the task trains (never on frozen ones, never on scores)."""
        if grad is not None:
            grad.add_(weight * trainable, alpha=self.weight_decay)

    # --- inference ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def apply_task(self, task: int) -> None:
        """Load learned task ``task``'s subnetwork (``values * mask_task``, and its own copies) into the model."""
        if self.task is not None:
            raise DstclError("a task is in progress; evaluate learned tasks between tasks.")
        if not 0 <= task < self.learned_tasks:
            raise DstclError(f"task {task} has not been learned (learned: {self.learned_tasks}).")
        for name, param in self.params.items():
            layer = self.state.by_name[name]
            param.copy_(torch.where(layer.masks[task], layer.values, torch.zeros_like(layer.values)))
        self.copies.apply(task)

    def task_digest(self, task: int) -> str:
        """Digest of what learned task ``task``'s logits depend on (:func:`~dstcl.sparse.state.subnetwork_digest`)."""
        return subnetwork_digest(self.state, task, self.heads, self.copies.digest_bytes(task))

    def current_masks(self) -> dict[str, torch.Tensor]:
        return dict(self.masks)

    def restore_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Go back to masks taken earlier in this task, with the parameters the caller restored beside them."""
        for name in self.params:
            self.masks[name] = masks[name].to(self.params[name].device)
        self._restored()

    def _restored(self) -> None:
        """After :meth:`restore_masks` (the effective weights are already back in the model)."""

    def state_payload(self) -> dict:
        """The learned state as written to ``state.pt`` (values, owners, every task's packed masks)."""
        return self.state.to_payload()

    def weights(self) -> dict[str, torch.Tensor]:
        return {n: layer.values.cpu() for n, layer in self.state.by_name.items()}

    # --- checkpoints --------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything to continue bit-identically. The state is stored whole (free values included: WSN and
        SupSup read them again), the task in progress with its masks, the method's own tensors."""
        in_task = None
        if self.task is not None:
            in_task = {"task": self.task, "steps": self.steps, "total_steps": self.total_steps,
                       "masks": {n: pack_mask(m) for n, m in self.masks.items()}, **self._task_state()}
        own = {key: tensor.detach().cpu().clone() for key, tensor in self._own_tensors().items()}
        saved = {"state": self.state.to_payload(), "in_task": in_task, "generator": self.generator.get_state(),
                 "weight_decay": self.weight_decay, "own": own}
        if self.copies:
            saved["copies"] = self.copies.state_dict()
        return saved

    def load_state_dict(self, saved: dict) -> None:
        """Restore :meth:`state_dict` (the model's parameters are restored with the model's state_dict)."""
        self.state.load_payload(saved["state"])
        self.generator.set_state(saved["generator"])
        self.weight_decay = float(saved.get("weight_decay", 0.0))
        self.copies.load_state_dict(saved.get("copies"))
        with torch.no_grad():
            for key, tensor in self._own_tensors().items():
                tensor.copy_(saved["own"][key].to(tensor.device))
        self.task, self.masks, self.frozen, self.regions = None, {}, {}, {}
        in_task = saved.get("in_task")
        if in_task is None:
            return
        self.start_task(int(in_task["task"]), int(in_task["total_steps"]), _fresh=False)
        self.steps = int(in_task["steps"])
        for name, param in self.params.items():
            self.masks[name] = unpack_mask(in_task["masks"][name], tuple(param.shape)).to(param.device)
        self._load_task_state(in_task)

    # --- what a method defines ----------------------------------------------------------------------------

    def _start(self, task: int, fresh: bool) -> None:
        """Set ``self.masks`` and the model's effective weights for task ``task`` (``fresh=False``: bookkeeping
        only, a checkpoint restores the rest)."""
        raise NotImplementedError

    def _trained(self) -> list[torch.Tensor]:
        """The tensors the task's optimizer updates (leaf tensors)."""
        raise NotImplementedError

    def _transfer(self) -> None:
        """Before the optimizer step: the gradients of the trained tensors from ``param.grad``."""
        raise NotImplementedError

    def _add_decay(self) -> None:
        """L2 weight decay (:meth:`_decay`) on the gradients of the weights the method trains (none: SupSup)."""

    def _after_step(self, optimizer: torch.optim.Optimizer, own: bool) -> None:
        """After the optimizer step: masks and effective weights."""
        raise NotImplementedError

    def _end_values(self) -> dict[str, torch.Tensor]:
        """The values to store at the end of the task (frozen positions must be unchanged)."""
        raise NotImplementedError

    def _own_tensors(self) -> dict[str, torch.Tensor]:
        """The method's own tensors a checkpoint must hold (full weights, scores), by key."""
        return {}

    def _task_state(self) -> dict:
        return {}

    def _load_task_state(self, in_task: dict) -> None:
        """Rebuild what :meth:`_start` derives from the masks after a restore."""


def reset_state_at(optimizer: torch.optim.Optimizer | None, tensor: torch.Tensor, positions: torch.Tensor) -> None:
    """Zero the optimizer state of ``tensor`` at ``positions`` (weights that leave the task's training)."""
    if optimizer is not None:
        reset_optimizer_state(optimizer, tensor, positions)
