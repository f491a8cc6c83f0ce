"""Small backbones for tiny data (8x8 digits, quick tests): an MLP and a 3-conv CNN.

Same contract as the large backbones: no biases, no learned normalisation parameters, logits for all
classes from one bias-free classifier.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from .conv import Conv2d
from .norm import batch_norm, check_bn


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}.")
    return value


class MLP(nn.Module):
    """Flatten, bias-free hidden Linear layers with ReLU, bias-free classifier."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h, bias=False), nn.ReLU(inplace=True)]
            width = h
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class SmallCNN(nn.Module):
    """Three 3x3 conv-BN-ReLU layers (width, 2*width, 4*width), max-pool after the first two,
    global average pool, bias-free classifier. Works from 8x8 inputs upwards."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, bn: str = "batch", max_tasks: int = 100):
        super().__init__()
        c1, c2, c3 = width, 2 * width, 4 * width
        self.features = nn.Sequential(
            Conv2d(in_channels, c1, 3, padding=1, bias=False),
            batch_norm(c1, bn, max_tasks),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            Conv2d(c1, c2, 3, padding=1, bias=False),
            batch_norm(c2, bn, max_tasks),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            Conv2d(c2, c3, 3, padding=1, bias=False),
            batch_norm(c3, bn, max_tasks),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Linear(c3, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def mlp(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    *,
    hidden: Sequence[int] | int = (256, 256),
    width: int | None = None,
    bn: str = "batch",
    max_tasks: int = 100,
) -> MLP:
    """MLP over ``in_channels * image_size**2`` inputs; ``hidden`` sizes (default 2 x 256).

    ``width`` (the CLI's ``--width``) sets every hidden layer to that size. The MLP has no
    normalisation layers, so ``bn`` only gets validated: a single input is always classifiable.
    """
    check_bn(bn, max_tasks)
    sizes = [hidden] if isinstance(hidden, int) else list(hidden)
    sizes = [_positive_int(h, "mlp hidden layer size") for h in sizes]
    if width is not None:
        sizes = [_positive_int(width, "mlp width")] * len(sizes)
    in_features = _positive_int(in_channels, "in_channels") * _positive_int(image_size, "image_size") ** 2
    return MLP(in_features, sizes, num_classes)


def cnn(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    *,
    width: int = 32,
    bn: str = "batch",
    max_tasks: int = 100,
) -> SmallCNN:
    """Small CNN with ``width``-``2*width``-``4*width`` channels (default 32-64-128); size-agnostic."""
    return SmallCNN(in_channels, num_classes, _positive_int(width, "cnn width"), bn, max_tasks)
