"""What a run costs in FLOPs and parameters: per-task inference and the whole run's training.

Counted as RigL does (``dstcl.sparse.flops``): active weights only, the classifier only in the task's
own rows (a task's logits need no other row). Written per task into ``capacity.json`` and summed into
``metrics.json`` (``compute``), so runs can be compared by compute, not only by accuracy.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ..sparse.flops import dense_gradient_steps, forward_flops, training_flops
from ..train.trainer import steps_per_epoch


class ComputeLedger:
    """Accumulates the training FLOPs of a run and records each task's inference cost."""

    def __init__(self, uses: Mapping[str, int], shapes: Mapping[str, tuple[int, ...]], head_layer: str | None,
                 heads: Sequence[slice]):
        self.uses, self.head_layer, self.heads = dict(uses), head_layer, list(heads)
        self.dense_params = sum(int(torch.Size(s).numel()) for s in shapes.values())
        self.dense_flops = forward_flops({n: torch.Size(s).numel() for n, s in shapes.items()}, self.uses)
        self.training = 0
        self.per_task: list[dict] = []

    def active_counts(self, task: int, masks: Mapping[str, torch.Tensor] | None,
                      shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
        """Weights task ``task``'s logits use, per layer (all of them for a dense network)."""
        counts = {}
        for name, shape in shapes.items():
            rows = self.heads[task] if name == self.head_layer else slice(None)
            if masks is None:
                counts[name] = int(torch.zeros(shape)[rows].numel())
            else:
                counts[name] = int(masks[name][rows].sum())
        return counts

    def add_training(self, counts: Mapping[str, int], *, examples: int, steps: int, batch_size: int,
                     growth: str | None = None, updates: int = 0) -> None:
        """Add one training phase: ``examples`` seen through a network with ``counts`` active weights."""
        flops = forward_flops(counts, self.uses)
        dense_steps = dense_gradient_steps(growth, steps, updates) if growth else 0
        dense_examples = examples if dense_steps == steps else min(examples, dense_steps * batch_size)
        self.training += training_flops(flops, self.dense_flops, examples, dense_examples)

    def add_inference(self, task: int, counts: Mapping[str, int]) -> dict:
        """Record task ``task``'s inference cost; returns it with the dense figures beside it."""
        entry = {"task": task, "params": sum(counts.values()), "flops": forward_flops(counts, self.uses)}
        self.per_task.append(entry)
        return {**entry, "dense_params": self.dense_params, "dense_flops": self.dense_flops}

    def record_phase(self, phase: int, masks: Mapping[str, torch.Tensor], train_size: int, tasks: int, cfg,
                     growth: str | None, updates: int, *, sequential: bool, shapes: Mapping[str, tuple[int, ...]],
                     epochs: int | None = None) -> None:
        """Training FLOPs of training phase ``phase`` (``epochs``: what the trainer ran, PackNet's retraining
        included; default the config's) and the inference cost of the task(s) it taught."""
        examples, steps = examples_per_task(train_size, cfg.train.batch_size, epochs or cfg.train.epochs)
        counts = self.active_counts(phase if sequential else 0, masks or None, shapes)
        self.add_training(counts, examples=examples, steps=steps, batch_size=cfg.train.batch_size, growth=growth,
                          updates=updates)
        for task in ([phase] if sequential else range(tasks)):
            self.add_inference(task, self.active_counts(task, masks or None, shapes))

    def dense_figures(self) -> dict:
        return {"dense_params": self.dense_params, "dense_flops": self.dense_flops}

    def summary(self) -> dict:
        return {"training_flops": self.training, "inference_flops_per_task": [e["flops"] for e in self.per_task],
                "inference_params_per_task": [e["params"] for e in self.per_task],
                "dense_inference_flops": self.dense_flops, "dense_params": self.dense_params}

    def state_dict(self) -> dict:
        return {"training": self.training, "per_task": self.per_task}

    def load_state_dict(self, saved: dict) -> None:
        self.training, self.per_task = int(saved["training"]), list(saved["per_task"])


def examples_per_task(train_size: int, batch_size: int, epochs: int) -> tuple[int, int]:
    """(examples trained on, optimizer steps) of one phase: a lone last example per epoch is skipped."""
    steps = steps_per_epoch(train_size, batch_size)
    lone = 1 if train_size % batch_size == 1 else 0
    return (train_size - lone) * epochs, steps * epochs
