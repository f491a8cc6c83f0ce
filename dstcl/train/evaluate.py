"""Task-incremental evaluation: accuracy of one task's test set through one task's subnetwork.

Deterministic by construction: fixed batch size (BatchNorm uses batch statistics, so accuracy depends
on how the test set is batched), fixed order, no test-time augmentation. Evaluating the same weights
twice gives the same number, which is what makes BWT exactly 0 under parameter isolation.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

EVAL_BATCH_SIZE = 128


@torch.no_grad()
def accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    logit_slice: slice,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | str = "cpu",
) -> float:
    """Top-1 accuracy in percent, the argmax taken over the logits in ``logit_slice`` only.

    ``x`` is uint8 (any device), ``y`` holds labels local to the slice (0..k-1); ``prepare`` turns a
    uint8 batch on ``device`` into the normalised float input.
    """
    if len(y) == 0:
        return float("nan")
    model.eval()
    correct = 0
    for start, stop in eval_batches(len(y), batch_size):
        xb = prepare(x[start:stop].to(device, non_blocking=True))
        yb = y[start:stop].to(device, non_blocking=True)
        logits = model(xb)[:, logit_slice]
        correct += int((logits.argmax(dim=1) == yb).sum())
    return 100.0 * correct / len(y)


def eval_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges of ``batch_size``; a last batch of one image joins the one before,
    since batch statistics of a single image are undefined (BatchNorm would fail on it)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds
