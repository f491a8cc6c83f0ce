"""Task-agnostic evaluation at the end of a run: the task is not given, so it must be inferred.

Every test image of every task, in one canonical class-mixed order over all tasks (so a batch does
not reveal its task through BatchNorm's batch statistics), goes through every task's subnetwork and
head; a task criterion (``dstcl.train.agnostic``) picks the task and the class within it. Reported:

* **task-inference accuracy**: the chosen task is the image's task;
* **class-incremental accuracy**: the chosen task's predicted class is the image's class, among all
  classes seen (task-incremental ACC, the task given, is the usual ``acc``).

T passes over all T test sets (T^2 task-test-set passes), hence opt-in (``--agnostic``).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..models import set_task
from ..train.agnostic import TASK_CRITERIA, choose
from ..train.evaluate import EVAL_BATCH_SIZE, EvalSet, eval_batches
from ..train.precision import autocast

DEFAULT_CRITERION = "entropy"


@torch.inference_mode()
def agnostic_accuracy(model: nn.Module, load_task: Callable[[int], None], heads: Sequence[slice],
                      tests: Sequence[EvalSet], prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                      precision: str = "fp32") -> dict:
    """``{"task_inference": {criterion: %}, "class_incremental": {criterion: %}}`` over all test sets."""
    per_task = heads[0].stop - heads[0].start
    x = torch.cat([t.x.cpu() for t in tests])
    y = torch.cat([t.y.cpu() + j * per_task for j, t in enumerate(tests)])  # global labels
    union = EvalSet(x, y).to(device)
    logits: list[torch.Tensor] = []
    model.eval()
    for j, head in enumerate(heads):
        load_task(j)
        set_task(model, j)
        parts = []
        for start, stop in eval_batches(len(union), EVAL_BATCH_SIZE):
            with autocast(precision, device):
                parts.append(model(prepare(union.x[start:stop]))[:, head].float())
        logits.append(torch.cat(parts))
    true_task = union.y // per_task
    out: dict = {"task_inference": {}, "class_incremental": {}, "images": len(union)}
    for criterion in TASK_CRITERIA.names():
        chosen = choose(logits, criterion)
        right_task = chosen.task == true_task
        right_class = right_task & (chosen.local_class == union.y % per_task)
        out["task_inference"][criterion] = 100.0 * float(right_task.float().mean())
        out["class_incremental"][criterion] = 100.0 * float(right_class.float().mean())
    return out
