"""How often each weight is used in one forward pass: what FLOPs accounting multiplies by.

A Conv weight is applied at every output position (``H_out x W_out``, per output element of a
Conv1d/3d likewise), a Linear weight once per sample. One forward pass of a single example records the
output sizes with hooks; nothing is trained.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def weight_uses(model: nn.Module, input_shape: tuple[int, ...], weights: Iterable[str]) -> dict[str, int]:
    """``{weight name: multiply-accumulates per weight per example}`` for each of ``weights`` (the names of
    Conv/Linear weights, as ``dstcl.sparse.prunable_parameters`` lists them: the one definition of them)."""
    wanted = set(weights)
    uses: dict[str, int] = {}
    hooks = []
    for name, module in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if key in wanted:

            def record(mod, inputs, output, key=key):
                if isinstance(mod, nn.Linear):
                    uses[key] = math.prod(output.shape[1:-1]) if output.dim() > 2 else 1
                else:  # every output position of every output channel's group reads each of its weights once
                    uses[key] = math.prod(output.shape[2:])
            hooks.append(module.register_forward_hook(record))
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        model(torch.zeros((2, *input_shape), device=device))  # two examples: batch statistics need them
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return uses
