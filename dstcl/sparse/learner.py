"""The sparse continual learner: per-task subnetworks found by DST, frozen once learned.

How the state maps onto the network while task t trains (the fast path):

* each prunable parameter of the model holds the *effective* weight ``W * mask_t`` — the forward and
  backward passes are exactly those of the dense network, with no extra op per layer;
* its ``.grad`` after backward is therefore ``dL/d(W * mask_t)``, the dense gradient that gradient
  growth needs, non-zero at inactive positions;
* before each optimizer step the gradient is zeroed at frozen positions (weights owned by earlier
  tasks) and L2 weight decay is added for the weights the task may train; the optimizer (created per
  task by :meth:`SparseLearner.make_optimizer`, with zero state) then leaves frozen weights
  bit-identical: their gradient and all their optimizer state are exactly zero;
* after the step, inactive positions are reset to 0 and a topology update runs when one is due. Free
  inactive positions do receive the (dense) gradient, so the optimizer's moments there are a dense
  momentum estimate, which momentum growth ranks (as in sparse momentum and the reference code).

Both halves run as optimizer step hooks (:mod:`dstcl.sparse.hooks`), so a loop that owns its
``optimizer.step()`` gets isolation and DST from the step itself, whatever optimizer it uses.

Stored values of owned weights outside the current mask live in the :class:`SparseState`, brought
up to date at the end of each task; state no mask covers (biases, affine normalisation, running
statistics) is kept per task by :class:`~dstcl.sparse.copies.TaskCopies`.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from ..errors import ConfigError, DstclError
from .capacity import CapacityWarning, LayerCapacity, layer_capacity, newly_full
from .config import SparseConfig
from .copies import TaskCopies
from .budget import check_room_without_reuse, task_budget
from .hooks import StepHooks
from .params import check_heads, prunable_parameters
from .schedules import check_update_count
from .state import LayerState, SparseState, pack_mask, subnetwork_digest, unpack_mask
from .structure import initial_mask
from .task import TaskLayer, UpdateReport, kaiming_draw
from .topology import TopologyUpdater


class SparseLearner:
    """Owns the per-task masks, the ownership of weights and the DST topology updates of a model.

    Typical use, per task ``t``::

        learner.start_task(t, total_steps)
        optimizer = learner.make_optimizer("adam", lr=1e-3)   # or your own, then learner.attach(optimizer)
        for x, y in batches:
            loss = criterion(model(x)[:, task_slice], y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()                 # isolation + topology update when due (step hooks)
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
        self.params = dict(named)
        self.heads = check_heads(heads or {}, self.params, num_tasks)
        self.state = SparseState(LayerState.fresh(name, p.data) for name, p in named)
        shapes = {name: tuple(p.shape) for name, p in named}
        if config.reuse == "off" and num_tasks is not None:  # T disjoint subnetworks must fit: refused before training
            check_room_without_reuse(shapes, config, list(self.heads), num_tasks)
        budget = task_budget(shapes, config, list(self.heads), num_tasks)
        # counts: active weights per layer; densities: per position (Bernoulli counts); channels: --structure channel
        self.counts, self.densities, self.channels = budget.counts, budget.densities, budget.channels
        # draws are made on the CPU and moved: a seed gives the same masks on any device
        self.generator = torch.Generator()
        self.generator.manual_seed(int(seed))
        self.copies = TaskCopies(model, self.params.values())
        self.topology = TopologyUpdater(config, self.plan, self.generator, self.channels)
        self.hooks = StepHooks(self.topology, config.reused_value)
        self._adopted: set[str] = set()  # layers added to the model since the last task started
        self.task: int | None = None
        self._layers: list[TaskLayer] = []

    # --- task life cycle --------------------------------------------------------------------------

    @property
    def learned_tasks(self) -> int:
        return self.state.num_tasks

    @property
    def updates(self) -> list[UpdateReport]:
        """Every topology update of the run so far."""
        return self.topology.updates

    @property
    def steps(self) -> int:
        """Optimizer steps taken in the task in progress."""
        return self.topology.steps

    def start_task(self, task: int, total_steps: int, *, _sample: bool = True) -> None:
        """Sample task ``task``'s initial topology and load its effective weights into the model.

        ``total_steps``: the optimizer steps the task will take (the drop schedule spans them; a DST
        task too short for one topology update is refused, as ``dstcl run`` refuses it).
        (``_sample=False`` only rebuilds the bookkeeping, for :meth:`load_state_dict`.)
        """
        if self.task is not None:
            raise DstclError(f"task {self.task} is still in progress; call end_task() first.")
        if task != self.learned_tasks:
            raise DstclError(f"tasks are learned in order: the next task is {self.learned_tasks}, not {task}.")
        if self.num_tasks is not None and task >= self.num_tasks:
            raise DstclError(f"the sequence has {self.num_tasks} tasks; task {task} does not exist.")
        if _sample:
            check_update_count(self.config.update_frequency, int(total_steps), task)
        self._adopt_new_layers()
        self._follow_device()
        self.task = task
        self.topology.start_task(task, total_steps)
        self._layers = []
        with torch.no_grad():
            for name, param in self.params.items():
                layer = self.state.by_name[name]
                k = self.counts[name]
                frozen = layer.owner >= 0
                mask = (initial_mask(name, layer.shape, k, self.channels.get(name), self.generator, param.device,
                                     self.densities.get(name), layer.owner if self.config.reuse == "off" else None)
                        if _sample else torch.zeros(layer.shape, dtype=torch.bool, device=param.device))
                if self.densities:
                    k = int(mask.sum())
                if _sample:
                    start = layer.values
                    if task > 0 and name not in self._adopted:  # a new layer starts from its own initialisation
                        kaiming = self.config.free_init == "kaiming"
                        fresh = kaiming_draw(layer.values, self.generator) if kaiming else torch.zeros_like(start)
                        start = torch.where(frozen, layer.values, fresh)
                    param.copy_(torch.where(mask, start, torch.zeros_like(start)))
                self._layers.append(TaskLayer(param, layer, k, mask, frozen))
        self.hooks.start_task(self._layers)
        if _sample:
            self.copies.start_task()

    def _adopt_new_layers(self) -> None:
        """Layers added to the model since (a framework's new task head): learned from now on, dense for the
        task that first trains them (no earlier task used them: their earlier masks are empty)."""
        self._adopted = set()
        for name, param in prunable_parameters(self.model):
            if name not in self.params:
                self._adopted.add(name)
                self.params[name] = param
                self.state.add_layer(name, param.data)
                self.counts[name] = param.numel()
        self.copies.adopt(self.model, self.params.values(), self.learned_tasks)

    def _follow_device(self) -> None:
        """The model was moved (``model.to(device)``) after the learner was built: move the state along."""
        self.state.follow({name: param.device for name, param in self.params.items()})

    def end_task(self) -> list[LayerCapacity]:
        """Store the task's mask, make its free weights owned, and report capacity per layer."""
        if self.task is None:
            raise DstclError("no task in progress.")
        self.topology.end_task()
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
                        "Was the optimizer attached (learner.attach(optimizer)) or made by learner.make_optimizer()?"
                    )
                claims = self._claims(state.name, self.task, layer.mask)
                report.append(layer_capacity(state.name, state.owner, layer.mask, claims))
                state.values.copy_(torch.where(layer.frozen, state.values, param.detach()))
                taken = layer.mask & ~layer.frozen
                if claims is not None:
                    taken &= claims
                state.owner[taken] = self.task
                state.masks.append(layer.mask)
        self.copies.end_task()
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
        self.hooks.end_task()
        return report

    def _claims(self, name: str, task: int, like: torch.Tensor) -> torch.Tensor | None:
        """Positions of layer ``name`` that task ``task`` can train (None: all of them)."""
        rows = self.heads.get(name)
        if rows is None or self.config.head_ownership == "mask":  # mask: every free weight of the mask
            return None
        claims = torch.zeros_like(like, dtype=torch.bool)
        claims[rows[task]] = True
        return claims

    # --- training steps -----------------------------------------------------------------------------

    def make_optimizer(
        self, kind: str = "adam", lr: float = 1e-3, *, momentum: float = 0.9, weight_decay: float = 0.0
    ) -> torch.optim.Optimizer:
        """A fresh optimizer for the current task, attached (:meth:`attach`); L2 weight decay is added by
        the step hook, and only to weights the task may train (the optimizer itself has none)."""
        params = list(self.params.values()) + list(self.copies.params.values())
        return self.hooks.make_optimizer(params, kind, lr, momentum=momentum, weight_decay=weight_decay)

    def attach(self, optimizer: torch.optim.Optimizer) -> None:
        """Hook isolation and DST into ``optimizer.step()`` (any torch optimizer, a framework's included):
        :meth:`dstcl.sparse.hooks.StepHooks.attach`. Attaching the same optimizer again does nothing."""
        self.hooks.attach(optimizer)

    def observe(self, loss: torch.Tensor) -> None:
        """A step's training loss, for ``growth="auto"`` (which learns from it; other criteria ignore it)."""
        self.topology.observe(loss)

    def step(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None,
             loss: torch.Tensor | None = None) -> UpdateReport | None:
        """One optimizer step with isolation and DST (:meth:`dstcl.sparse.hooks.StepHooks.step`)."""
        return self.hooks.step(optimizer, scaler, loss)

    def update_topology(self, optimizer: torch.optim.Optimizer | None, drop_fraction: float) -> UpdateReport:
        """A topology update now (what a due step does; see :class:`~dstcl.sparse.topology.TopologyUpdater`)."""
        self.hooks.require_task()
        return self.topology.update(self._layers, optimizer, drop_fraction)

    def update_due_next_step(self) -> bool:
        """Whether the next optimizer step ends with a topology update."""
        return self.task is not None and self.topology.due_next_step()

    @property
    def topology_version(self) -> tuple:
        """Changes whenever a task starts or its topology changes."""
        return self.topology.version

    # --- checkpointing ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue bit-identically: learned state, the task in progress, RNG."""
        in_task = None
        if self.task is not None:
            in_task = {
                "task": self.task,
                "steps": self.topology.steps,
                "total_steps": self.topology.total_steps,
                "masks": [pack_mask(layer.mask) for layer in self._layers],
                "fired": [pack_mask(layer.fired) for layer in self._layers],
            }
        saved = {
            "state": self.state.to_payload(compact=True),
            "in_task": in_task,
            "generator": self.generator.get_state(),
            "weight_decay": self.hooks.weight_decay,
            "auto": self.topology.state_dict(),
        }
        if self.copies:
            saved["copies"] = self.copies.state_dict()
        return saved

    def load_state_dict(self, saved: dict) -> None:
        """Restore :meth:`state_dict` (the model's parameters are restored with the model's state_dict)."""
        self.state.load_payload(saved["state"])
        self.generator.set_state(saved["generator"])
        self.hooks.weight_decay = float(saved.get("weight_decay", 0.0))
        self.topology.load_state_dict(saved.get("auto"))
        self.copies.load_state_dict(saved.get("copies"))
        self.task, self._layers = None, []
        in_task = saved.get("in_task")
        if in_task is None:
            return
        self.start_task(int(in_task["task"]), int(in_task["total_steps"]), _sample=False)
        self.topology.steps = int(in_task["steps"])
        for layer, mask_bits, fired_bits in zip(self._layers, in_task["masks"], in_task["fired"]):
            device = layer.param.device
            layer.set_mask(unpack_mask(mask_bits, layer.state.shape).to(device))
            layer.count = int(layer.mask.sum())  # Bernoulli counts change with every update
            layer.fired = unpack_mask(fired_bits, layer.state.shape).to(device)

    # --- inference --------------------------------------------------------------------------------

    @torch.no_grad()
    def apply_task(self, task: int) -> None:
        """Load the weights of learned task ``task`` (``W * mask_task``, and its own copies) into the model."""
        if self.task is not None:
            raise DstclError("a task is in progress; use `with learner.task_weights(j):` to evaluate mid-task.")
        if not 0 <= task < self.learned_tasks:
            raise DstclError(f"task {task} has not been learned (learned: {self.learned_tasks}).")
        self._follow_device()
        for name, param in self.params.items():
            layer = self.state.by_name[name]
            mask = layer.masks[task]
            param.copy_(torch.where(mask, layer.values, torch.zeros_like(layer.values)))
        self.copies.apply(task)

    @contextmanager
    def task_weights(self, task: int) -> Iterator[None]:
        """Temporarily load task ``task``'s weights, restoring the current ones afterwards."""
        saved = [p.detach().clone() for p in self.params.values()]
        extra = self.copies.snapshot()
        in_progress, self.task = self.task, None
        try:
            self.apply_task(task)
            yield
        finally:
            self.task = in_progress
            with torch.no_grad():
                for param, value in zip(self.params.values(), saved):
                    param.copy_(value)
                self.copies.load(extra)

    def task_digest(self, task: int) -> str:
        """Digest of what learned task ``task``'s logits depend on (:func:`~dstcl.sparse.state.subnetwork_digest`)."""
        return subnetwork_digest(self.state, task, self.heads, self.copies.digest_bytes(task))

    def state_payload(self) -> dict:
        """The learned state as written to a run's ``state.pt`` (values, owners, every task's packed masks)."""
        return self.state.to_payload()

    def weights(self) -> dict[str, torch.Tensor]:
        """The stored value of every prunable weight (``W``, not ``W * mask``), on the CPU."""
        return {n: layer.values.cpu() for n, layer in self.state.by_name.items()}

    def current_masks(self) -> dict[str, torch.Tensor]:
        """The current task's masks (during a task)."""
        return {layer.state.name: layer.mask for layer in self._layers}

    def restore_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        """Go back to masks taken from :meth:`current_masks` earlier in this task (``kept_epoch="best-train"``;
        the caller restores the parameters that go with them)."""
        for layer in self._layers:
            layer.set_mask(masks[layer.state.name].to(layer.param.device))
            layer.count = int(layer.mask.sum())
