"""What a run will do, decided before it trains: its learner, its training phases, its topology updates.

The method (``--method``, :data:`dstcl.train.methods.METHODS`) decides the learner (sparse and isolated,
or one dense network) and the phases (one per task, or one over all tasks' data); the update schedule
decides how many topology updates each task gets, and a DST run with none is refused here.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import torch
from torch import nn

from ..config import RunConfig
from ..data import Task
from ..sparse import SparseLearner, UpdateEvery
from ..sparse.schedules import FEW_UPDATES, check_update_count
from ..train.contract import Learner
from ..train.dense import DenseLearner
from ..train.methods import METHODS, Method
from ..train.trainer import Head, joint_head, slice_head, steps_per_epoch


def make_learner(cfg: RunConfig, model: nn.Module, heads: Sequence[slice], classifier: str
                 ) -> SparseLearner | DenseLearner | Learner:
    """The learner of the run's method: its entry's own (PackNet, WSN, SupSup), sparse and isolated (DST,
    static) or dense (the baselines)."""
    method = method_of(cfg)
    if method.learner is not None:  # a method with its own learner (dstcl.methods)
        return method.learner(cfg, model, {classifier: list(heads)})
    if not method.sparse:
        return DenseLearner(model, num_tasks=cfg.data.tasks)
    sparse = cfg.sparse if method.dynamic else dataclasses.replace(cfg.sparse, update_frequency=0)
    rows = {classifier: list(heads)}  # task i trains (and owns) only its own rows of the classifier
    return SparseLearner(model, sparse, seed=cfg.run.seed, num_tasks=cfg.data.tasks, heads=rows)


def method_of(cfg: RunConfig) -> Method:
    return METHODS.get(cfg.train.method)


def training_phases(method: Method, tasks: Sequence[Task], heads: Sequence[slice]
                    ) -> list[tuple[torch.Tensor, torch.Tensor, Head]]:
    """What each training phase trains on: one phase per task, or one over all tasks (``joint``)."""
    if method.sequential:
        return [(t.train_x, t.train_y, slice_head(head)) for t, head in zip(tasks, heads)]
    per_task = len(tasks[0].classes)
    x = torch.cat([t.train_x for t in tasks])
    y = torch.cat([t.train_y + i * per_task for i, t in enumerate(tasks)])  # global labels
    return [(x, y, joint_head(per_task, len(tasks)))]


def check_updates(cfg: RunConfig, train_sizes: Sequence[int], echo: Callable[[str], None]) -> list[int]:
    """Topology updates each task will get; none with DST chosen is an error, few a warning."""
    if not (cfg.sparse.dynamic and method_of(cfg).dynamic):
        return [0] * len(train_sizes)
    epochs, frequency = cfg.train.epochs, cfg.sparse.update_frequency
    steps = [steps_per_epoch(n, cfg.train.batch_size) * epochs for n in train_sizes]
    counts = [UpdateEvery(frequency).count(n) for n in steps]
    fewest = min(range(len(counts)), key=lambda t: counts[t])
    best = max(1, steps[fewest] // FEW_UPDATES)
    check_update_count(frequency, steps[fewest], fewest,
                       f"{steps[fewest]} optimizer steps: {epochs} epoch(s) of {steps[fewest] // epochs} batches")
    if counts[fewest] < FEW_UPDATES:
        echo(f"warning: only {counts[fewest]} topology update(s) in task {fewest} ({steps[fewest]} steps, one every "
             f"{frequency}); DST barely changes the topology. --update-frequency {best} gives {FEW_UPDATES}.")
    return counts
