"""Task-incremental splits: C classes into T tasks of C/T classes each.

Class order is ``sequential`` (0..C-1, the reference code) or ``random`` (a permutation drawn by a
generator seeded with ``seed``): task ``t`` takes the classes at positions ``t*k .. t*k+k-1`` of that
order. ``clustered`` and ``interleaved`` build the tasks from a class-similarity matrix
(:mod:`.grouping`): each task one group of similar classes, or one class of every group. Inside a task,
labels are local (0..k-1, in that order), which is what a multi-head learner trains on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import DataError
from .base import ImageDataset
from .grouping import clustered_order, interleaved_order
from .similarity import ClassSimilarity

ORDERS = ("sequential", "random", "clustered", "interleaved")
SIMILARITY_ORDERS = {"clustered": clustered_order, "interleaved": interleaved_order}  # orders read a similarity


def split_classes(num_classes: int, num_tasks: int, order: str = "sequential", seed: int = 0,
                  similarity: np.ndarray | None = None) -> list[list[int]]:
    """The global class ids of each task (see the module doc); ``similarity`` (C x C) for the orders that
    need one."""
    if order not in ORDERS:
        raise DataError(f"unknown class order {order!r}; valid: {', '.join(ORDERS)}.")
    if num_tasks < 1 or num_classes % num_tasks:
        valid = [t for t in range(1, num_classes + 1) if num_classes % t == 0]
        raise DataError(f"{num_classes} classes cannot be split into {num_tasks} tasks of equal size; valid task "
                        f"counts: {', '.join(map(str, valid))} (or use num_classes to keep fewer classes).")
    if order in SIMILARITY_ORDERS:
        if similarity is None or np.shape(similarity) != (num_classes, num_classes):
            raise DataError(f"class order {order} builds tasks from a class similarity: give the {num_classes} x "
                            f"{num_classes} similarity of the classes (dstcl run --similarity FILE, written by dstcl "
                            "similarity; docs/similarity.md).")
        return SIMILARITY_ORDERS[order](np.asarray(similarity, dtype=np.float64), num_tasks, seed)
    if order == "random":
        classes = torch.randperm(num_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    else:
        classes = list(range(num_classes))
    k = num_classes // num_tasks
    return [classes[t * k:(t + 1) * k] for t in range(num_tasks)]


@dataclass
class Task:
    """One task's data; labels are task-local, ``classes[l]`` is the global class of local label ``l``."""

    index: int
    classes: list[int]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor

    @property
    def global_classes(self) -> torch.Tensor:
        """Lookup from local to global labels: ``task.global_classes[task.train_y]``."""
        return torch.tensor(self.classes, dtype=torch.int64)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def make_tasks(dataset: ImageDataset, num_tasks: int, order: str = "sequential", seed: int = 0,
               similarity: ClassSimilarity | None = None) -> list[Task]:
    """Cut ``dataset`` into ``num_tasks`` tasks (see :func:`split_classes`); image order is kept.
    ``similarity`` (clustered, interleaved) is matched to the data set's classes by name."""
    matrix = similarity.for_classes(dataset.class_names) if similarity is not None and order in SIMILARITY_ORDERS \
        else None
    splits = split_classes(dataset.num_classes, num_tasks, order, seed, matrix)
    tasks = []
    for index, classes in enumerate(splits):
        local = torch.full((dataset.num_classes,), -1, dtype=torch.int64)
        local[classes] = torch.arange(len(classes))
        parts = []
        for x, y in ((dataset.train_x, dataset.train_y), (dataset.test_x, dataset.test_y)):
            keep = local[y] >= 0
            parts += [x[keep], local[y[keep]]]
        tasks.append(Task(index, list(classes), *parts))
    return tasks
