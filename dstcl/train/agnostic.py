"""Prediction when the task is unknown: score every task's subnetwork, choose the task, then the class.

Each learned task j has its own subnetwork and head, so an input gives T sets of logits, ``logits[j]``
over task j's classes. A **task criterion** turns them into one score per task (higher: more likely
the input's task), from what the heads say:

* ``confidence``: the largest softmax probability of task j's head (max-softmax, Hendrycks & Gimpel);
* ``entropy``: minus the entropy of task j's softmax (a confident head has low entropy);
* ``supsup`` (a batch at once, not per input; :func:`supsup_scores`): SupSup's one-shot inference
  (Wortsman et al. 2020): mix the tasks' subnetworks with equal coefficients, take the gradient of the
  output entropy with respect to each coefficient; the task whose coefficient lowers the entropy most
  is chosen for the whole batch.

BatchNorm matters: with batch statistics (``--bn batch``, the paper) a prediction depends on the other
inputs of its batch, so single inputs are ill-defined; with per-task running statistics re-estimated
at the end of each task (``--bn task``) every input is classified on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..registry import Registry

TaskScore = Callable[[torch.Tensor], torch.Tensor]
TASK_CRITERIA: Registry[TaskScore] = Registry("task criterion")


@TASK_CRITERIA.register("confidence")
def confidence(logits: torch.Tensor) -> torch.Tensor:
    """The largest softmax probability of the head (per input)."""
    return torch.softmax(logits.float(), dim=1).amax(dim=1)


@TASK_CRITERIA.register("entropy")
def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Minus the entropy of the head's softmax (per input): the most certain head wins."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * log_p).sum(dim=1)


@dataclass(frozen=True)
class Choice:
    task: torch.Tensor  # (N,) chosen task per input
    local_class: torch.Tensor  # (N,) argmax within the chosen task's head
    confidence: torch.Tensor  # (N,) softmax probability of that class in that head


def choose(per_task_logits: Sequence[torch.Tensor], criterion: str = "entropy") -> Choice:
    """The task (by ``criterion``), the class within it and its probability, for every input."""
    score = TASK_CRITERIA.get(criterion)
    scores = torch.stack([score(logits) for logits in per_task_logits])  # T x N
    task = scores.argmax(dim=0)
    probs = [torch.softmax(logits.float(), dim=1) for logits in per_task_logits]
    rows = torch.arange(len(task), device=task.device)
    local = torch.stack([p.argmax(dim=1) for p in probs])[task, rows]
    conf = torch.stack([p.amax(dim=1) for p in probs])[task, rows]
    return Choice(task, local, conf)


def given_task(logits: torch.Tensor, task: int) -> Choice:
    """The prediction when the task is known (task-incremental)."""
    probs = torch.softmax(logits.float(), dim=1)
    n = len(logits)
    return Choice(torch.full((n,), task, dtype=torch.long, device=logits.device), probs.argmax(dim=1),
                  probs.amax(dim=1))


def supsup_scores(model: torch.nn.Module, params: dict[str, torch.Tensor], masks: Sequence[dict[str, torch.Tensor]],
                  x: torch.Tensor) -> torch.Tensor:
    """One score per task for the batch ``x`` (higher: more likely), by SupSup's one-shot inference.

    ``params`` are the stored values of the masked layers, ``masks[j]`` task j's masks; the mixed
    weight is ``sum_j alpha_j * values * mask_j`` with ``alpha_j = 1/T``, the output entropy is taken
    over all classes, and the score is ``-dH/d alpha_j``.
    """
    T = len(masks)
    alpha = torch.full((T,), 1.0 / T, requires_grad=True, device=x.device)
    mixed = {name: sum(alpha[j] * value * masks[j][name].to(value.dtype) for j in range(T))
             for name, value in params.items()}
    logits = torch.func.functional_call(model, mixed, (x,))
    log_p = torch.log_softmax(logits.float(), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1).mean()
    (grad,) = torch.autograd.grad(entropy, alpha)
    return -grad.detach()
