"""``--backbone alexnet-cl``: the 5-layer AlexNet of GPM (Saha et al. 2021) and WSN (Kang et al. 2022)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dstcl.models import build_model, output_weight
from dstcl.models.alexnet import feature_size, smallest_image
from dstcl.sparse import prunable_parameters

# The published layers (GPM's appendix A, and the AlexNet of GPM's and WSN's code): convolutions of 64 4x4, 128 3x3
# and 256 2x2 filters without padding, each followed by a 2x2 max-pool, then 2048 and 2048 units, no biases; the
# per-task heads of 10-way tasks on CIFAR-100 are 10 x (2048 x 10) weights, dstcl's one classifier sliced per task.
PUBLISHED = [(64, 3, 4, 4), (128, 64, 3, 3), (256, 128, 2, 2), (2048, 256 * 2 * 2), (2048, 2048), (100, 2048)]
PUBLISHED_COUNT = 6_704_128  # 3,072 + 73,728 + 131,072 + 2,097,152 + 4,194,304 + 204,800


def test_layers_and_parameter_count_are_the_published_ones_on_cifar100():
    model = build_model("alexnet-cl", num_classes=100, in_channels=3, image_size=32)
    assert [tuple(p.shape) for _, p in prunable_parameters(model)] == PUBLISHED
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED_COUNT
    assert all(name.endswith("weight") for name, _ in model.named_parameters())  # no biases, no affine BatchNorm
    assert output_weight(model, 100) == "classifier.weight"
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts == [0.2, 0.2, 0.5, 0.5, 0.5]


@pytest.mark.parametrize("size,channels", [(32, 3), (84, 3), (8, 1)])
def test_it_classifies_every_built_in_image_size(size, channels):
    model = build_model("alexnet-cl", num_classes=10, in_channels=channels, image_size=size, bn="task", max_tasks=2)
    model.eval()
    assert model(torch.randn(2, channels, size, size)).shape == (2, 10)
    assert feature_size(32) == 2 and smallest_image() == 19
    assert model.enlarge == (3 if size == 8 else 1)  # the 8x8 digits are enlarged to 24x24 (too small unpadded)
