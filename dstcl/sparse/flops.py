"""FLOPs of sparse networks, counted as RigL does: only active weights, 2 FLOPs per multiply-accumulate.

Pure functions of per-layer active-weight counts and of how often each weight is used per example
(``dstcl.models.probe.weight_uses``). Only Conv and Linear layers are counted (BatchNorm, ReLU and
pooling add well under 1 % for the backbones here). These are the theoretical FLOPs of a sparse
implementation; dstcl's CPU kernels compute the masked network densely.

Training, per example and optimizer step (RigL, Evci et al. 2020, Appendix H): forward ``f_s``, and a
backward pass of twice that (gradients of activations and of the active weights), ``3 f_s``; a step
that needs the **dense** weight gradient replaces the sparse weight gradient by a dense one
(``2 f_s + f_d``): every topology update step of gradient growth, and every step of momentum growth
(its momentum estimate ranks inactive weights too). Random and unfired growth need none.
"""

from __future__ import annotations

from typing import Mapping


def forward_flops(active: Mapping[str, int], uses: Mapping[str, int]) -> int:
    """2 x sum over layers of (active weights x uses per weight): one example's forward pass."""
    return 2 * sum(int(active[name]) * int(uses[name]) for name in active)


def training_flops(sparse_forward: int, dense_forward: int, examples: int, dense_examples: int = 0) -> int:
    """FLOPs of training on ``examples`` examples (counted once per epoch they are seen), of which
    ``dense_examples`` were in steps that need the dense weight gradient (see the module doc)."""
    return examples * 3 * sparse_forward + dense_examples * (dense_forward - sparse_forward)


def dense_gradient_steps(criterion: str, steps: int, updates: int) -> int:
    """How many of a task's steps need the dense weight gradient for growth ``criterion``."""
    from .criteria import grow_reads

    needs = grow_reads(criterion)  # auto may choose momentum growth: its dense estimate at every step
    if needs == "momentum":
        return steps
    if needs == "gradient":
        return updates
    return 0
