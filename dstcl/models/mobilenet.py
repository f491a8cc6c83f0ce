"""MobileNetV2 as the paper's reference code builds it (its default backbone for CIFAR-100).

Differences from torchvision's MobileNetV2 that the reference has and we keep: no biases, BatchNorm
without affine parameters or running statistics, ReLU6 everywhere, the 1x1 expansion conv is applied
even when the expansion factor t is 1, the last conv has 1280 channels whatever ``width_mult``.
Deliberate difference from the reference: the classifier has no bias, so the sparse masks cover all
trainable state.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .conv import Conv2d
from .norm import batch_norm

# (expansion t, output channels c, repeats n, first stride s)
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LAST_CHANNELS = 1280


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU6, 3x3 depthwise(stride)-BN-ReLU6, 1x1 project-BN; residual if shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int,
                 bn: str = "batch", max_tasks: int = 100):
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        hidden = in_channels * expand_ratio
        self.conv = nn.Sequential(
            Conv2d(in_channels, hidden, 1, 1, 0, bias=False),
            batch_norm(hidden, bn, max_tasks),
            nn.ReLU6(inplace=True),
            Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            batch_norm(hidden, bn, max_tasks),
            nn.ReLU6(inplace=True),
            Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            batch_norm(out_channels, bn, max_tasks),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` (stem, 17 inverted residuals, 1x1 conv to 1280) then ``classifier`` (pool, linear)."""

    def __init__(self, num_classes: int = 100, in_channels: int = 3, width_mult: float = 1.0,
                 bn: str = "batch", max_tasks: int = 100):
        super().__init__()
        channels = int(32 * width_mult)
        features: list[nn.Module] = [nn.Sequential(
            Conv2d(in_channels, channels, 3, 2, 1, bias=False),
            batch_norm(channels, bn, max_tasks),
            nn.ReLU6(inplace=True),
        )]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            out = int(c * width_mult)
            for i in range(n):
                features.append(InvertedResidual(channels, out, s if i == 0 else 1, t, bn, max_tasks))
                channels = out
        features.append(nn.Sequential(
            Conv2d(channels, LAST_CHANNELS, 1, 1, 0, bias=False),
            batch_norm(LAST_CHANNELS, bn, max_tasks),
            nn.ReLU6(inplace=True),
        ))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(LAST_CHANNELS, num_classes, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def mobilenetv2(
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    *,
    width_mult: float = 1.0,
    bn: str = "batch",
    max_tasks: int = 100,
) -> MobileNetV2:
    """MobileNetV2 of the reference code with a bias-free classifier (``image_size`` is unused)."""
    if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0 \
            or int(16 * width_mult) < 1:
        raise ConfigError(f"mobilenetv2 width_mult must be a number with 16 * width_mult >= 1, got {width_mult!r}.")
    return MobileNetV2(num_classes, in_channels, float(width_mult), bn, max_tasks)
