"""Per-task copies of the state no mask covers: biases, affine normalisation, running statistics.

The masks cover Conv and Linear weights. A model from elsewhere (a torchvision ResNet, a framework's
multi-head classifier) also has biases, BatchNorm/GroupNorm/LayerNorm scale and shift, and BatchNorm
running statistics. Shared across tasks they would be overwritten by every later task, so each task
keeps its own copy, as PackNet and WSN do for BatchNorm: a task starts from the copy the previous
task ended with (the state it was trained on top of), trains it freely, and stores its own copy at
the end; evaluating task ``j`` loads task ``j``'s copy. The cost is small (these tensors are a few
thousand numbers per layer) and isolation stays exact: an earlier task's copy is never written again.

dstcl's own backbones have none of this state (no biases, BatchNorm without affine parameters, and
``--bn task`` statistics kept by :mod:`dstcl.models.norm` itself), so for them this is empty.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

# torch's own BatchNorm layers keep running statistics in these buffers (dstcl's TaskBatchNorm does not
# derive from them and manages its statistics per task itself)
_NORMS_WITH_STATS = (nn.modules.batchnorm._NormBase,)


def unmasked_state(model: nn.Module, masked: Iterable[nn.Parameter]) -> tuple[dict, dict]:
    """(trainable parameters no mask covers, running-statistics buffers of torch's norm layers), by name."""
    ids = {id(p) for p in masked}
    params = {n: p for n, p in model.named_parameters() if p.requires_grad and id(p) not in ids}
    buffers = {}
    for prefix, module in model.named_modules():
        if isinstance(module, _NORMS_WITH_STATS) and module.track_running_stats:
            for name, buffer in module.named_buffers(recurse=False):
                if buffer is not None:
                    buffers[f"{prefix}.{name}" if prefix else name] = buffer
    return params, buffers


class TaskCopies:
    """One copy per learned task of every tensor :func:`unmasked_state` finds (see the module doc)."""

    def __init__(self, model: nn.Module, masked: Iterable[nn.Parameter]):
        self.model = model
        self.masked = list(masked)
        self.params, self.buffers = unmasked_state(model, self.masked)
        self.copies: list[dict[str, torch.Tensor]] = []  # per learned task

    def __bool__(self) -> bool:
        return bool(self.params or self.buffers)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {**self.params, **self.buffers}

    def adopt(self, model: nn.Module, masked: Iterable[nn.Parameter], learned_tasks: int) -> list[str]:
        """Pick up tensors of modules added since (a new task head); returns their names. Earlier tasks
        never used them: their copies get the new tensors' current values, which they never read."""
        params, buffers = unmasked_state(model, masked)
        new = [n for n in {**params, **buffers} if n not in self.params and n not in self.buffers]
        self.params, self.buffers = params, buffers
        if new:
            while len(self.copies) < learned_tasks:  # there was nothing to copy before
                self.copies.append({})
            for copy in self.copies:
                for name in new:
                    copy[name] = self.tensors()[name].detach().clone()
        return new

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {n: t.detach().clone() for n, t in self.tensors().items()}

    @torch.no_grad()
    def load(self, values: dict[str, torch.Tensor]) -> None:
        for name, tensor in self.tensors().items():
            tensor.copy_(values[name].to(tensor.device))

    def start_task(self) -> None:
        """The task trains on from the copy the previous task ended with (already in the model)."""
        if self and self.copies:
            self.load(self.copies[-1])

    def end_task(self) -> None:
        if self:
            self.copies.append(self.snapshot())

    def apply(self, task: int) -> None:
        if self:
            self.load(self.copies[task])

    def digest_bytes(self, task: int) -> bytes:
        if not self:
            return b""
        return b"".join(t.detach().cpu().numpy().tobytes() for _, t in sorted(self.copies[task].items()))

    def state_dict(self) -> list[dict[str, torch.Tensor]]:
        return [{n: t.cpu() for n, t in copy.items()} for copy in self.copies]

    def load_state_dict(self, saved: list[dict[str, torch.Tensor]] | None) -> None:
        self.copies = [dict(copy) for copy in (saved or [])]


@torch.no_grad()
def refresh_running_statistics(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Re-estimate the running statistics of torch's BatchNorm layers as plain averages over ``batches``.

    A short task leaves them far from the data when the layer's momentum is small (torchvision's
    MobileNetV3 uses 0.01), so evaluation in ``eval()`` mode scores at chance although training went
    well. Call it at the end of a task, before ``learner.end_task()`` stores the task's copy.
    """
    norms = [m for m in model.modules() if isinstance(m, _NORMS_WITH_STATS) and m.track_running_stats]
    saved = [(m, m.momentum) for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
