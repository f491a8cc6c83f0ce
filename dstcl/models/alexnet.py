"""The 5-layer AlexNet of continual-learning papers (GPM, Saha et al. 2021; WSN, Kang et al. 2022).

Layer sizes as published (GPM's appendix and both papers' code): three convolutions without padding,
64 filters 4x4, 128 filters 3x3, 256 filters 2x2, each followed by BatchNorm, ReLU, dropout (0.2, 0.2,
0.5) and 2x2 max-pooling; two fully connected layers of 2048 units, each followed by BatchNorm, ReLU
and dropout 0.5; a bias-free classifier. On 3x32x32 images the last feature map is 256x2x2, so
``fc1`` has 1024 inputs and the network 6,499,328 weights before the classifier (2048 per class).

As every dstcl backbone: no biases, BatchNorm without affine parameters (``bn``: batch statistics as in
the papers' ``track_running_stats=False``, or per-task statistics), one classifier over all classes
sliced per task (the papers' per-task heads of 2048 x classes each, the same weights). Images smaller
than 19 pixels (the 8x8 digits), for which the unpadded layers leave no feature map, are enlarged by
nearest-neighbour repetition (8x8 to 24x24) first: a convenience for tiny data, not the published net.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conv import Conv2d
from .norm import batch_norm, check_bn

KERNELS = (4, 3, 2)
CHANNELS = (64, 128, 256)
DROPOUT = (0.2, 0.2, 0.5)
HIDDEN = 2048


def feature_size(image_size: int) -> int:
    """Side of the last feature map: each stage is a valid convolution then a 2x2 max-pool (floor)."""
    side = image_size
    for k in KERNELS:
        side = (side - k + 1) // 2
    return side


def smallest_image() -> int:
    """The smallest image side the network takes (19: a 1x1 last feature map)."""
    side = 1
    while feature_size(side) < 1:
        side += 1
    return side


class AlexNetCL(nn.Module):
    """conv-BN-ReLU-dropout-pool x3, fc-BN-ReLU-dropout x2, classifier."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int = 32, bn: str = "batch",
                 max_tasks: int = 100):
        super().__init__()
        check_bn(bn, max_tasks)
        if image_size < 1:
            raise ConfigError(f"image_size must be a positive integer, got {image_size!r}.")
        # images too small for the unpadded layers (the 8x8 digits) are enlarged by pixel repetition
        self.enlarge = 1 if feature_size(image_size) >= 1 else math.ceil(smallest_image() / image_size)
        side = feature_size(image_size * self.enlarge)
        layers: list[nn.Module] = []
        width = in_channels
        for channels, k, p in zip(CHANNELS, KERNELS, DROPOUT):
            layers += [Conv2d(width, channels, k, bias=False), batch_norm(channels, bn, max_tasks), nn.ReLU(),
                       nn.Dropout(p), nn.MaxPool2d(2)]
            width = channels
        layers.append(nn.Flatten())
        width = width * side * side
        for _ in range(2):
            layers += [nn.Linear(width, HIDDEN, bias=False), batch_norm(HIDDEN, bn, max_tasks, dims=1), nn.ReLU(),
                       nn.Dropout(0.5)]
            width = HIDDEN
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(HIDDEN, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.enlarge > 1:
            x = F.interpolate(x, scale_factor=self.enlarge, mode="nearest")
        return self.classifier(self.features(x))


def alexnet_cl(num_classes: int, in_channels: int = 3, image_size: int = 32, *, bn: str = "batch",
               max_tasks: int = 100) -> AlexNetCL:
    """The 5-layer AlexNet of GPM and WSN (see the module doc) for ``image_size`` x ``image_size`` inputs."""
    return AlexNetCL(in_channels, num_classes, image_size, bn, max_tasks)
