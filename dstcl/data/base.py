"""The in-memory image data set every reader returns.

A whole data set is kept as uint8 tensors (CIFAR-100 is 180 MB, miniImageNet at 32 px 184 MB), so
training never waits on a file system or a decoder; augmentation and normalisation happen batched on
the training device (see :mod:`dstcl.data.augment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import DataError


@dataclass
class ImageDataset:
    """A labelled image data set, train and test, held in memory.

    ``mean`` and ``std`` are per-channel statistics in [0, 1] units (pixel / 255), used to normalise;
    ``crop_padding`` and ``hflip`` describe the training augmentation that suits these images.
    """

    name: str
    train_x: torch.Tensor  # uint8, N x C x H x W
    train_y: torch.Tensor  # int64 class ids 0..num_classes-1
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_padding: int
    hflip: bool

    def __post_init__(self) -> None:
        self.validate()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def validate(self) -> None:
        """Check dtypes, shapes and labels, so a broken reader or file fails here, not mid-training."""
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(f"{self.name}: {split} images must be a uint8 N x C x H x W tensor, "
                                f"got {x.dtype} with shape {tuple(x.shape)}.")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DataError(f"{self.name}: {split} labels must be int64 with one label per image, "
                                f"got {y.dtype} with shape {tuple(y.shape)} for {x.shape[0]} images.")
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(f"{self.name}: {split} labels must lie in 0..{self.num_classes - 1} "
                                f"(one per class name), found {int(y.min())}..{int(y.max())}.")
        if self.test_x.shape[1:] != self.train_x.shape[1:]:
            raise DataError(f"{self.name}: train images are {tuple(self.train_x.shape[1:])} but test images "
                            f"are {tuple(self.test_x.shape[1:])}.")
        if len(self.mean) != self.train_x.shape[1] or len(self.std) != self.train_x.shape[1]:
            raise DataError(f"{self.name}: mean and std need one value per channel ({self.train_x.shape[1]}).")
        for split, y in (("train", self.train_y), ("test", self.test_y)):
            counts = torch.bincount(y, minlength=self.num_classes)
            missing = [self.class_names[c] for c in (counts == 0).nonzero().flatten().tolist()]
            if missing:
                shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
                raise DataError(f"{self.name}: {len(missing)} classes have no {split} images ({shown}); "
                                "the files are incomplete. Replace them with a complete copy of the data set.")


def first_classes(dataset: ImageDataset, num_classes: int | None) -> ImageDataset:
    """The data set restricted to its first ``num_classes`` classes (labels keep their values).

    Small runs and tests use a few classes of a large data set; ``None`` keeps all of them.
    """
    if num_classes is None or num_classes == dataset.num_classes:
        return dataset
    check_num_classes(dataset.name, num_classes, dataset.num_classes)
    train, test = dataset.train_y < num_classes, dataset.test_y < num_classes
    return ImageDataset(
        name=dataset.name,
        train_x=dataset.train_x[train], train_y=dataset.train_y[train],
        test_x=dataset.test_x[test], test_y=dataset.test_y[test],
        class_names=dataset.class_names[:num_classes],
        mean=dataset.mean, std=dataset.std, crop_padding=dataset.crop_padding, hflip=dataset.hflip,
    )


def check_num_classes(name: str, num_classes: int | None, available: int) -> None:
    """Reject a class limit outside 1..available with a message that gives the valid range."""
    if num_classes is not None and not 1 <= num_classes <= available:
        raise DataError(f"{name} has {available} classes; num_classes must be between 1 and {available}, "
                        f"got {num_classes}.")
