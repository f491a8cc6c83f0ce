"""``DSTPlugin``: dstcl's per-task sparse subnetworks in an Avalanche strategy (``pip install -e ".[avalanche]"``).

``Naive(model, optimizer, criterion, plugins=[DSTPlugin(SparseConfig(...))])`` trains each experience's own
sparse subnetwork, found by DST, and freezes it afterwards (parameter isolation: BWT exactly 0). The
strategy keeps its own loop, optimizer and ``optimizer.step()``: the learner's step hooks
(:meth:`dstcl.sparse.SparseLearner.attach`) do isolation and the topology updates inside that step.

At the Avalanche hooks (``docs/avalanche.md``): ``before_training_exp`` runs after the strategy adapted
the model (a new head) and updated its optimizer and made the train loader, so the learner is built
(lazily, on ``strategy.model``), the task is started with ``batches x train_epochs`` steps and the
optimizer attached; ``after_training_exp`` freezes the task; ``before_eval_exp`` loads the subnetwork
of the experience's task label and ``after_eval_exp`` puts back the weights that were there, so an
evaluation mid-sequence (or mid-experience) changes nothing; ``after_eval`` removes the heads a
``MultiHeadClassifier`` made for task labels it has not trained (they would be adopted by, and
frozen into, the wrong task).

Only this module imports Avalanche; ``import dstcl`` never does.
"""

from __future__ import annotations

import importlib.util
import warnings
from contextlib import ExitStack
from dataclasses import fields
from typing import Any

import torch
from torch import nn

from .errors import ConfigError, DstclError
from .vision import TorchvisionOpsWarning, prepare_torchvision  # noqa: F401 - the warning is part of the API
from .sparse import CapacityWarning, LayerCapacity, SparseConfig, SparseLearner
from .sparse.capacity import newly_full
from .sparse.schedules import check_update_count


if importlib.util.find_spec("avalanche") is None:
    raise ModuleNotFoundError("No module named 'avalanche': dstcl.avalanche needs Avalanche. Install the extra: "
                              "pip install -e \".[avalanche]\" (avalanche-lib 0.6.0 with torchvision 0.28.0).",
                              name="avalanche")
prepare_torchvision()
from avalanche.benchmarks.scenarios.online import OnlineCLExperience  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402
from avalanche.models import MultiHeadClassifier  # noqa: E402


class DSTPlugin(SupervisedPlugin):
    """DST-based parameter isolation for Avalanche's supervised strategies (task-incremental streams).

    Each experience must carry its own task label: it is how evaluation picks the subnetwork. Pass a
    :class:`~dstcl.sparse.SparseConfig`, or its fields as keywords (``DSTPlugin(density=0.2,
    update_frequency=10)``). After training, :attr:`learner` holds the masks and :attr:`tasks` maps each
    Avalanche task label to dstcl's task index (the order of learning).
    """

    def __init__(self, config: SparseConfig | None = None, *, seed: int = 0, num_tasks: int | None = None,
                 **options: Any):
        super().__init__()
        self.config = _config(config, options)
        self.config.validate(num_tasks)  # a bad setting fails here, not at the first experience
        self.seed, self.num_tasks = int(seed), num_tasks
        self.learner: SparseLearner | None = None
        self.tasks: dict[int, int] = {}  # Avalanche task label -> dstcl task
        self.reports: list[list[LayerCapacity]] = []  # capacity per layer, per learned task
        self.updates_per_task: list[int] = []  # topology updates of each learned task
        self._label: int | None = None  # the task label in training
        self._loaded: ExitStack | None = None  # another task's weights, loaded for one evaluated experience
        self._heads: dict[nn.Module, set[str]] = {}  # MultiHeadClassifier heads when an evaluation began

    # --- training ---------------------------------------------------------------------------------

    def before_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Start the experience's task: the model is adapted, the optimizer updated, the loader made."""
        self._unload()
        experience = strategy.experience
        if isinstance(experience, OnlineCLExperience):
            raise DstclError(
                "DSTPlugin learns one subnetwork per experience and freezes it at the experience's end, so it "
                "cannot train an online stream (split_online_stream), whose experiences are slices of one task. "
                "Train on the original experiences (benchmark.train_stream)."
            )
        label = _task_label(experience, "train on")
        if label in self.tasks:
            raise DstclError(
                f"experience {_exp_id(experience)} carries task label {label}, already learned as dstcl task "
                f"{self.tasks[label]}. DSTPlugin freezes one subnetwork per task and picks it at evaluation by the "
                "experience's task label, so every experience needs a task label of its own (task-incremental): "
                "build the benchmark with task labels, e.g. nc_benchmark(..., task_labels=True) or "
                "SplitMNIST(..., return_task_id=True). Class- and domain-incremental streams, whose experiences "
                "share one label, are not supported: nothing would tell evaluation which subnetwork to use."
            )
        if self.learner is None:
            self.learner = SparseLearner(strategy.model, self.config, seed=self.seed, num_tasks=self.num_tasks)
        elif self.learner.model is not strategy.model:
            raise DstclError("the strategy's model is not the one DSTPlugin learned on; use one plugin per model.")
        self._check_parameters(strategy.model)
        batches, epochs = len(strategy.dataloader), int(strategy.train_epochs)
        task = self.learner.learned_tasks
        check_update_count(self.config.update_frequency, batches * epochs, task,
                           f"{batches} batches x {epochs} epochs = {batches * epochs} optimizer steps; with "
                           "DSTPlugin set SparseConfig(update_frequency=...)")
        self.learner.start_task(task, batches * epochs)
        self.learner.attach(strategy.optimizer)  # again for each task: a new optimizer object is attached too
        self.tasks[label], self._label = task, label

    def before_training_iteration(self, strategy: Any, **kwargs: Any) -> None:
        """Refuse mini-batches of other tasks (replay, joint training): they would train this task's mask."""
        batch = strategy.mbatch
        if self._label is not None and batch is not None and len(batch) >= 3:
            labels = batch[-1]
            if torch.is_tensor(labels) and bool((labels != self._label).any()):
                other = int(labels[labels != self._label][0])
                raise DstclError(
                    f"a training mini-batch of task {self._label} holds samples of task label {other} (a replay "
                    "or joint-training plugin?). DSTPlugin trains only the current task's subnetwork and freezes "
                    "earlier ones, so it does not combine with strategies that train on earlier tasks' data."
                )

    def before_update(self, strategy: Any, **kwargs: Any) -> None:
        """The step's loss, for ``growth="auto"`` (other growth criteria ignore it)."""
        if self.learner is not None and self.learner.task is not None:
            self.learner.observe(strategy.loss)

    def after_training_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Freeze the experience's task (its free weights become owned, its mask and copies stored)."""
        if self.learner is None or self.learner.task is None:
            return
        last = self.num_tasks is not None and self.learner.task == self.num_tasks - 1
        with warnings.catch_warnings():  # a task's own head is full by design: warn about the other layers only
            warnings.simplefilter("ignore", CapacityWarning)
            report = self.learner.end_task()
        self.reports.append(report)
        self.updates_per_task.append(len(self.learner.updates) - sum(self.updates_per_task))
        self._label = None
        heads = {id(p) for m in _multi_heads(strategy.model) for p in m.parameters()}
        full = [name for name in newly_full(report) if id(self.learner.params[name]) not in heads]
        if full and not last:
            warnings.warn(f"after task {len(self.reports) - 1} no free weight is left in {', '.join(full)}; later "
                          "tasks can only reuse frozen weights there.", CapacityWarning, stacklevel=2)

    # --- evaluation -------------------------------------------------------------------------------

    def before_eval(self, strategy: Any, **kwargs: Any) -> None:
        self._heads = _multi_heads(strategy.model)

    def before_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        """Load the subnetwork of the experience's task label (an untrained label: the weights as they are)."""
        self._unload()
        if self.learner is None:
            return
        self._check_parameters(strategy.model)
        task = self.tasks.get(_task_label(strategy.experience, "evaluate"))
        if task is None or task == self.learner.task:  # not learned yet, or the task in training
            return
        self._loaded = ExitStack()
        self._loaded.enter_context(self.learner.task_weights(task))

    def after_eval_exp(self, strategy: Any, **kwargs: Any) -> None:
        self._unload()

    def after_eval(self, strategy: Any, **kwargs: Any) -> None:
        """Remove heads made during this evaluation for task labels not trained yet (see the module doc)."""
        self._unload()
        for module, keys in _multi_heads(strategy.model).items():
            for key in sorted(keys - self._heads.get(module, set())):
                if _as_int(key) in self.tasks:
                    continue
                del module.classifiers[key]
                module._buffers.pop(f"active_units_T{key}", None)
        self._heads = {}

    # --- helpers ----------------------------------------------------------------------------------

    def _unload(self) -> None:
        """Put back the weights an evaluated experience replaced."""
        if self._loaded is not None:
            loaded, self._loaded = self._loaded, None
            loaded.close()

    def _check_parameters(self, model: nn.Module) -> None:
        """Refuse a model whose learned layers were replaced (an IncrementalClassifier grown for new classes)."""
        current = dict(model.named_parameters())
        stale = [name for name, param in self.learner.params.items() if current.get(name) is not param]
        if stale:
            raise DstclError(
                f"layer {stale[0]!r} of the model was replaced after DSTPlugin took it (Avalanche's "
                "IncrementalClassifier does so when an experience brings classes beyond its outputs), so the "
                "masks no longer cover the model's weights. Give every task its own head (MultiHeadClassifier, "
                "with class_ids_from_zero_in_each_exp=True or initial_out_features >= the classes of a task), "
                "or a fixed output layer with one output per class of the whole stream."
            )


def _config(config: SparseConfig | None, options: dict[str, Any]) -> SparseConfig:
    if config is not None and options:
        raise ConfigError(f"give DSTPlugin a SparseConfig or its fields ({', '.join(options)}), not both.")
    if config is not None:
        return config
    valid = {f.name for f in fields(SparseConfig)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"DSTPlugin has no option {unknown[0]!r}; the SparseConfig fields are: "
                          f"{', '.join(sorted(valid))}.")
    return SparseConfig(**options)


def _task_label(experience: Any, what: str) -> int:
    labels = sorted({int(label) for label in getattr(experience, "task_labels", None) or []})
    if len(labels) != 1:
        found = f"task labels {labels}" if labels else "no task label"
        raise DstclError(
            f"DSTPlugin cannot {what} experience {_exp_id(experience)}: it has {found}. Each experience must carry "
            "exactly one task label, which picks the task's subnetwork (a task-incremental benchmark, e.g. "
            "nc_benchmark(..., task_labels=True)); evaluate each task's experience on its own, not a joint stream."
        )
    return labels[0]


def _exp_id(experience: Any) -> str:
    return str(getattr(experience, "current_experience", "?"))


def _multi_heads(model: nn.Module) -> dict[nn.Module, set[str]]:
    return {m: set(m.classifiers.keys()) for m in model.modules() if isinstance(m, MultiHeadClassifier)}


def _as_int(key: str) -> int | None:
    try:
        return int(key)
    except ValueError:
        return None


__all__ = ["DSTPlugin", "TorchvisionOpsWarning"]
