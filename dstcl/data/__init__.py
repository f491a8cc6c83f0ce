"""Data sets, task splits and batched augmentation.

``DATASETS`` is the data-set registry (:mod:`.registry`): each built-in reader module registers
itself, and a new data set is one file plus one :func:`register_dataset` call.
"""

from __future__ import annotations

from . import cifar, digits, miniimagenet  # noqa: F401  (each registers its data set)
from .augment import BatchAugment, batches, normalize
from .base import ImageDataset
from .locate import resolve_data_root
from .registry import DATASETS, dataset_classes, dataset_defaults, load_dataset, register_dataset
from .tasks import ORDERS, Task, make_tasks, split_classes

__all__ = [
    "DATASETS", "ORDERS", "BatchAugment", "ImageDataset", "Task", "batches", "dataset_classes", "dataset_defaults",
    "load_dataset", "make_tasks", "normalize", "register_dataset", "resolve_data_root", "split_classes",
]
