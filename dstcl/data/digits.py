"""scikit-learn's handwritten digits: the zero-configuration, offline default data set.

1797 grey 8x8 images of the digits 0-9 ship inside scikit-learn, so the first ``dstcl run`` works on a
new machine without a download (5 tasks of 2 classes by default). Pixel values 0..16 are scaled to
0..255 (``round(v * 255 / 16)``).

Split (deterministic, stratified): within each class, in the data set's own order, the first
``floor(0.8 * n)`` images train and the rest test (1433 train, 364 test images). Normalisation uses
the training images' mean and standard deviation. Augmentation: 1-pixel crop padding, no horizontal
flip (a mirrored digit is another symbol).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .base import ImageDataset, first_classes
from .registry import register_dataset

TRAIN_FRACTION = 0.8


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images N x 8 x 8 in 0..16, labels): scikit-learn's copy, read without importing scikit-learn.

    ``sklearn.datasets.load_digits`` reads the same ``digits.csv.gz``, but importing scikit-learn costs
    ~1.6 s of every offline-default run; its API is the fallback when the file is not where expected.
    """
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            data = np.loadtxt(path, delimiter=",")
            return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images, bunch.target.astype(np.int64)


def load_digits_dataset(*_args: Any, num_classes: int | None = None, **_unused: Any) -> ImageDataset:
    """The digits data set split as the module doc says; data directory and download do not apply."""
    raw, labels = digits_arrays()
    images = np.rint(raw * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None]  # N x 1 x 8 x 8
    train_mask = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        index = np.flatnonzero(labels == c)
        train_mask[index[: int(TRAIN_FRACTION * len(index))]] = True
    train = images[train_mask].astype(np.float64) / 255.0
    dataset = ImageDataset(
        name="digits",
        train_x=torch.from_numpy(images[train_mask]), train_y=torch.from_numpy(labels[train_mask]),
        test_x=torch.from_numpy(images[~train_mask]), test_y=torch.from_numpy(labels[~train_mask]),
        class_names=[str(c) for c in range(10)],
        mean=(float(train.mean()),), std=(float(train.std()),),
        crop_padding=1, hflip=False,
    )
    return first_classes(dataset, num_classes)


register_dataset("digits", load_digits_dataset, classes=10, options=(),
                 defaults={"backbone": "cnn", "epochs": 20, "batch_size": 32, "update_frequency": 10},
                 help="scikit-learn's 8x8 digits, offline")
