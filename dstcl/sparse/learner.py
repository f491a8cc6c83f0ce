"""The sparse continual learner: per-task subnetworks found by DST, frozen once learned.

How the state maps onto the network while task t trains (the fast path):

* each prunable parameter of the model holds the *effective* weight ``W * mask_t`` — the forward and
  backward passes are exactly those of the dense network, with no extra op per layer;
* its ``.grad`` after backward is therefore ``dL/d(W * mask_t)``, the dense gradient that gradient
  growth needs, non-zero at inactive positions;
* :meth:`SparseLearner.step` zeroes the gradient at frozen positions (weights owned by earlier tasks)
  and adds the L2 weight decay itself, restricted to the weights the task may train; the optimizer
  (created per task, with zero state) then leaves frozen weights bit-identical: their gradient and
  all their optimizer state are exactly zero, so the update is exactly zero;
* after the optimizer step, inactive positions are reset to 0. Free inactive positions do receive
  the (dense) gradient, so the optimizer's moments there are a dense momentum estimate, which
  momentum growth ranks (as in sparse momentum and the reference code).

Stored values of owned weights outside the current mask live in the :class:`SparseState`, brought
up to date at the end of each task.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError, DstclError
from .capacity import CapacityWarning, LayerCapacity, layer_capacity, newly_full
from .config import SparseConfig
from .auto import AUTO, AutoGrowth
from .criteria import DROP, GROW, grow_scores
from .density import layer_counts, layer_densities
from .optim import check_no_weight_decay, make_task_optimizer, optimizer_momentum
from .params import check_heads, check_unmasked, prunable_parameters
from .schedules import UpdateEvery, make_drop_schedule
from .structure import channel_counts, fan_in, sample_mask
from .topology import update_layer
from .state import LayerState, SparseState, pack_mask, subnetwork_digest, unpack_mask
from .task import TaskLayer, UpdateReport, kaiming_draw, layer_view


class SparseLearner:
    """Owns the per-task masks, the ownership of weights and the DST topology updates of a model.

    Typical use, per task ``t``::

        learner.start_task(t, total_steps)
        optimizer = learner.make_optimizer("adam", lr=1e-3)
        for x, y in batches:
            loss = criterion(model(x)[:, task_slice], y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            learner.step(optimizer)          # isolation + topology update when due
        report = learner.end_task()          # capacity per layer
        learner.apply_task(j)                # weights of task j, for evaluation
    """

    def __init__(self, model: nn.Module, config: SparseConfig, *, seed: int = 0, num_tasks: int | None = None,
                 heads: Mapping[str, Sequence[slice]] | None = None):
        """``heads`` maps a layer (the classifier weight) to the output rows of each task.

        A task trains only its own rows of such a layer (the other tasks' logits are sliced away, so
        their rows get no gradient), so at the end of the task it owns only the free weights of its
        mask within its rows; the rest stay free for the task whose classes they score. Without
        ``heads``, task 0's mask would freeze the untrained rows of every later task's classes.
        """
        self.model = model
        self.config = config
        self.plan = config.validate(num_tasks)
        self.num_tasks = num_tasks
        named = prunable_parameters(model)
        if not named:
            raise ConfigError("the model has no Conv or Linear weight to sparsify.")
        check_unmasked(model, [p for _, p in named])
        self.params = dict(named)
        self.heads = check_heads(heads or {}, self.params, num_tasks)
        self.state = SparseState(LayerState.fresh(name, p.data) for name, p in named)
        shapes = {name: tuple(p.shape) for name, p in named}
        self.counts = layer_counts(shapes, config.density, config.init, power_scale=config.erk_power_scale)
        self.densities = (layer_densities(shapes, config.density, config.init, power_scale=config.erk_power_scale)
                          if config.counts == "bernoulli" else {})  # Bernoulli counts: drawn per position
        self.channels: dict[str, int] = {}  # --structure channel: active output channels of each hidden layer
        if config.structure == "channel":
            hidden = {n: s for n, s in shapes.items() if n not in self.heads}
            densities = layer_densities(shapes, config.density, config.init, power_scale=config.erk_power_scale)
            self.channels = channel_counts(hidden, densities)
            self.counts.update({n: c * fan_in(shapes[n]) for n, c in self.channels.items()})
        device = next(iter(self.params.values())).device
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(int(seed))
        self.task: int | None = None
        self.steps, self.growth_name = 0, ""
        self._layers: list[TaskLayer] = []
        self._weight_decay, self._checked_optimizer = 0.0, None
        self.updates: list[UpdateReport] = []
        self.auto = AutoGrowth([n for n in GROW.names()]) if AUTO in self.plan.criteria() else None

    # --- task life cycle --------------------------------------------------------------------------

    @property
    def learned_tasks(self) -> int:
        return self.state.num_tasks

    def start_task(self, task: int, total_steps: int, *, _sample: bool = True) -> None:
        """Sample task ``task``'s initial topology and load its effective weights into the model.

        (``_sample=False`` only rebuilds the bookkeeping, for :meth:`load_state_dict`.)
        """
        if self.task is not None:
            raise DstclError(f"task {self.task} is still in progress; call end_task() first.")
        if task != self.learned_tasks:
            raise DstclError(f"tasks are learned in order: the next task is {self.learned_tasks}, not {task}.")
        if self.num_tasks is not None and task >= self.num_tasks:
            raise DstclError(f"the sequence has {self.num_tasks} tasks; task {task} does not exist.")
        self.task = task
        self.steps = 0
        self.growth_name = self.plan.for_task(task)
        self._drop = DROP.get(self.config.drop)
        self.drop_schedule = make_drop_schedule(
            self.config.drop_schedule, self.config.drop_rate, total_steps, self.config.final_drop_rate
        )
        self.update_schedule = UpdateEvery(self.config.update_frequency)
        self._layers = []
        with torch.no_grad():
            for name, param in self.params.items():
                layer = self.state.by_name[name]
                k = self.counts[name]
                frozen = layer.owner >= 0
                mask = (sample_mask(layer.shape, k, self.channels.get(name), self.generator, param.device,
                                    self.densities.get(name)) if _sample
                        else torch.zeros(layer.shape, dtype=torch.bool, device=param.device))
                if self.densities:
                    k = int(mask.sum())
                if _sample:
                    start = layer.values
                    if task > 0:
                        kaiming = self.config.free_init == "kaiming"
                        fresh = kaiming_draw(layer.values, self.generator) if kaiming else torch.zeros_like(start)
                        start = torch.where(frozen, layer.values, fresh)
                    param.copy_(torch.where(mask, start, torch.zeros_like(start)))
                self._layers.append(TaskLayer(param, layer, k, mask, frozen))

    def make_optimizer(
        self, kind: str = "adam", lr: float = 1e-3, *, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> torch.optim.Optimizer:
        """A fresh optimizer for the current task; L2 weight decay is added by :meth:`step`, and only to
        weights the task may train (the optimizer itself is built without it, so frozen weights stay)."""
        optimizer = make_task_optimizer(kind, list(self.params.values()), lr, momentum, weight_decay)
        self._weight_decay = float(weight_decay)
        self._checked_optimizer = id(optimizer)
        return optimizer

    def _check_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        if self._checked_optimizer != id(optimizer):
            check_no_weight_decay(optimizer)
            self._checked_optimizer = id(optimizer)

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
             loss: torch.Tensor | None = None) -> UpdateReport | None:
        """One optimizer step with isolation, then a topology update when one is due. An fp16 ``scaler``
        unscales the gradients first and steps; ``loss`` is what ``--growth auto`` learns from."""
        if loss is not None and self.growth_name == AUTO:
            self.auto.observe(loss)
        if self.task is None:
            raise DstclError("no task in progress: call start_task() before training.")
        self._check_optimizer(optimizer)
        if scaler is not None:
            scaler.unscale_(optimizer)
        wd = self._weight_decay
        with torch.no_grad():
            for layer in self._layers:
                grad = layer.param.grad
                if grad is None:
                    continue
                if wd:
                    grad.add_(layer.param, alpha=wd)
                if layer.has_frozen:
                    grad.mul_(layer.trainable)  # frozen weights get no gradient
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        with torch.no_grad():
            for layer in self._layers:
                layer.param.mul_(layer.keep).add_(0.0)  # inactive weights stay +0.0 (x * 0 may be -0.0)
        self.steps += 1
        if self.update_schedule.due(self.steps):
            return self.update_topology(optimizer, self.drop_schedule(self.steps))
        return None

    @torch.no_grad()
    def update_topology(self, optimizer: torch.optim.Optimizer | None, drop_fraction: float) -> UpdateReport:
        """Drop the lowest-scoring ``ceil(drop_fraction * k)`` active weights per layer, grow as many.

        Each layer keeps exactly its active count (:func:`select_topology`, ties broken at random;
        Bernoulli counts aside). What grown weights start with: :mod:`dstcl.sparse.topology`.
        """
        if self.task is None:
            raise DstclError("no task in progress: call start_task() first.")
        criterion, reward = self.growth_name, None
        if criterion == AUTO:  # the bandit credits the last choice and picks this update's criterion
            criterion, reward = self.auto.choose(lambda name: GROW.entry(name).meta.get("needs") != "momentum"
                                                 or optimizer is None or optimizer_momentum(
                                                     optimizer, self._layers[0].param) is not None)
        report = UpdateReport(self.steps, float(drop_fraction), criterion, auto_reward=reward)
        bernoulli = self.config.counts == "bernoulli" and bool(GROW.entry(criterion).meta.get("bernoulli"))
        for layer in self._layers:
            if layer.count >= layer.state.numel:
                continue
            view = layer_view(layer, optimizer, self.generator, int(self.task))
            done = update_layer(layer, self._drop(view), grow_scores(criterion, view), drop_fraction,
                                channel=layer.state.name in self.channels, generator=self.generator,
                                optimizer=optimizer, reused_value=self.config.reused_value, bernoulli=bernoulli)
            if done is not None:
                name = layer.state.name
                report.dropped[name], report.regrown[name], report.grown_reused[name] = \
                    done.dropped, done.regrown, done.grown_reused
        self.updates.append(report)
        return report

    def end_task(self) -> list[LayerCapacity]:
        """Store the task's mask, make its free weights owned, and report capacity per layer."""
        if self.task is None:
            raise DstclError("no task in progress.")
        if self.auto is not None and self.growth_name == AUTO:
            self.auto.end_task()
        report = []
        with torch.no_grad():
            for layer in self._layers:
                state, param = layer.state, layer.param
                used_frozen = layer.mask & layer.frozen
                if self.config.reused_value == "zero":  # grown reused weights trained at 0: their stored value stays
                    used_frozen &= param != 0
                if not torch.equal(param[used_frozen], state.values[used_frozen]):
                    raise RuntimeError(
                        f"isolation violated in {state.name}: a weight owned by an earlier task changed. "
                        "Was the optimizer created with learner.make_optimizer()?"
                    )
                claims = self._claims(state.name, self.task, layer.mask)
                report.append(layer_capacity(state.name, state.owner, layer.mask, claims))
                state.values.copy_(torch.where(layer.frozen, state.values, param.detach()))
                taken = layer.mask & ~layer.frozen
                if claims is not None:
                    taken &= claims
                state.owner[taken] = self.task
                state.masks.append(layer.mask)
        full = newly_full(report)
        last = self.num_tasks is not None and self.task == self.num_tasks - 1
        if full and not last:  # after the last task a full layer limits nothing
            warnings.warn(
                f"after task {self.task} no free weight is left in {len(full)} layer(s) ({', '.join(full[:4])}"
                f"{', ...' if len(full) > 4 else ''}); later tasks can only reuse frozen weights there.",
                CapacityWarning,
                stacklevel=2,
            )
        self.task = None
        self._layers = []
        return report

    def _claims(self, name: str, task: int, like: torch.Tensor) -> torch.Tensor | None:
        """Positions of layer ``name`` that task ``task`` can train (None: all of them)."""
        rows = self.heads.get(name)
        if rows is None or self.config.head_ownership == "mask":  # mask: every free weight of the mask
            return None
        claims = torch.zeros_like(like, dtype=torch.bool)
        claims[rows[task]] = True
        return claims

    # --- checkpointing ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically: learned state, the task in progress, RNG."""
        in_task = None
        if self.task is not None:
            in_task = {
                "task": self.task,
                "steps": self.steps,
                "total_steps": getattr(self.drop_schedule, "total_steps", 1),
                "masks": [pack_mask(layer.mask) for layer in self._layers],
                "fired": [pack_mask(layer.fired) for layer in self._layers],
            }
        return {
            "state": self.state.to_payload(compact=True),
            "in_task": in_task,
            "generator": self.generator.get_state(),
            "weight_decay": self._weight_decay,
            "auto": self.auto.state_dict() if self.auto is not None else None,
        }

    def load_state_dict(self, saved: dict) -> None:
        """Restore :meth:`state_dict` (the model's parameters are restored with the model's state_dict)."""
        self.state.load_payload(saved["state"])
        self.generator.set_state(saved["generator"])
        self._weight_decay = float(saved.get("weight_decay", 0.0))
        if self.auto is not None and saved.get("auto") is not None:
            self.auto.load_state_dict(saved["auto"])
        self.task, self._layers = None, []
        in_task = saved.get("in_task")
        if in_task is None:
            return
        self.start_task(int(in_task["task"]), int(in_task["total_steps"]), _sample=False)
        self.steps = int(in_task["steps"])
        for layer, mask_bits, fired_bits in zip(self._layers, in_task["masks"], in_task["fired"]):
            device = layer.param.device
            layer.set_mask(unpack_mask(mask_bits, layer.state.shape).to(device))
            layer.count = int(layer.mask.sum())  # Bernoulli counts change with every update
            layer.fired = unpack_mask(fired_bits, layer.state.shape).to(device)

    # --- inference --------------------------------------------------------------------------------

    @torch.no_grad()
    def apply_task(self, task: int) -> None:
        """Load the weights of learned task ``task`` (``W * mask_task``) into the model."""
        if self.task is not None:
            raise DstclError("a task is in progress; use `with learner.task_weights(j):` to evaluate mid-task.")
        if not 0 <= task < self.learned_tasks:
            raise DstclError(f"task {task} has not been learned (learned: {self.learned_tasks}).")
        for name, param in self.params.items():
            layer = self.state.by_name[name]
            mask = layer.masks[task]
            param.copy_(torch.where(mask, layer.values, torch.zeros_like(layer.values)))

    @contextmanager
    def task_weights(self, task: int) -> Iterator[None]:
        """Temporarily load task ``task``'s weights, restoring the current ones afterwards."""
        saved = [p.detach().clone() for p in self.params.values()]
        in_progress, self.task = self.task, None
        try:
            self.apply_task(task)
            yield
        finally:
            self.task = in_progress
            with torch.no_grad():
                for param, value in zip(self.params.values(), saved):
                    param.copy_(value)

    def task_digest(self, task: int) -> str:
        """Digest of what learned task ``task``'s logits depend on (:func:`~dstcl.sparse.state.subnetwork_digest`)."""
        return subnetwork_digest(self.state, task, self.heads)

    def current_masks(self) -> dict[str, torch.Tensor]:
        """The current task's masks (during a task)."""
        return {layer.state.name: layer.mask for layer in self._layers}

    def restore_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Go back to masks taken from :meth:`current_masks` earlier in this task (``kept_epoch="best-train"``;
        the caller restores the parameters that go with them)."""
        for layer in self._layers:
            layer.set_mask(masks[layer.state.name].to(layer.param.device))
            layer.count = int(layer.mask.sum())
