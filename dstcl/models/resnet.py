"""ResNet-18 exactly as the paper's reference code builds it (no biases, no learned BN parameters).

Stem: 7x7 stride-2 conv (padding 3) + BN + ReLU and *no* max-pool ("imagenet", the reference), or a
3x3 stride-1 conv ("cifar"). Four stages of two BasicBlocks with ``width * (1, 2, 4, 8)`` channels and
strides 1, 2, 2, 2; global average pool; one bias-free linear classifier over all classes. Module names
follow the reference (``conv1``, ``layer1.0.shortcut.0``, ``classifier``) so per-layer reports match.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .conv import Conv2d
from .norm import batch_norm

STEMS = ("imagenet", "cifar")


class BasicBlock(nn.Module):
    """conv3x3(stride)-BN-ReLU-conv3x3-BN, plus a 1x1 conv + BN shortcut when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1, bn: str = "batch", max_tasks: int = 100):
        super().__init__()
        self.conv1 = Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = batch_norm(planes, bn, max_tasks)
        self.conv2 = Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = batch_norm(planes, bn, max_tasks)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                batch_norm(planes, bn, max_tasks),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet with BasicBlocks; ``blocks`` per stage, e.g. (2, 2, 2, 2) for ResNet-18."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        stem: str = "imagenet",
        bn: str = "batch",
        max_tasks: int = 100,
    ):
        super().__init__()
        if stem == "imagenet":
            self.conv1 = Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = batch_norm(width, bn, max_tasks)
        in_planes = width
        stages = []
        for i, n in enumerate(blocks):
            planes = width * 2**i
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            layers = []
            for s in strides:
                layers.append(BasicBlock(in_planes, planes, s, bn, max_tasks))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(in_planes, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.classifier(torch.flatten(self.avgpool(out), 1))


def resnet18(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    *,
    width: int = 64,
    stem: str = "imagenet",
    bn: str = "batch",
    max_tasks: int = 100,
) -> ResNet:
    """ResNet-18 of the reference code; ``width=20`` gives the "reduced ResNet-18" (20-40-80-160).

    ``image_size`` is accepted for a uniform builder signature; the network is size-agnostic.
    """
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ConfigError(f"resnet18 width (base channels) must be a positive integer, got {width!r}.")
    if stem not in STEMS:
        raise ConfigError(f"resnet18 stem must be one of {', '.join(STEMS)} (imagenet: 7x7 stride-2 conv, "
                          f"the reference; cifar: 3x3 stride-1 conv); got {stem!r}.")
    return ResNet((2, 2, 2, 2), num_classes, in_channels, width, stem, bn, max_tasks)
