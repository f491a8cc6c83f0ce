"""What a checkpoint of a run holds, and how a run continues from one: explicit in, explicit out.

A checkpoint (after an epoch, within the time budget, and after every task) holds the weights, the
learner (owners, masks, the task in progress, its RNG), the trainer (optimizer, scheduler, augmentation
RNG, gradient scaler), every global RNG state, the accuracy matrix, capacity and compute so far, and the
hash of the settings (a checkpoint of other settings is never continued). :class:`RunParts` names what
a checkpoint is taken from and restored into; nothing here reads an experiment's attributes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..config import RunConfig
from ..errors import DstclError
from ..train.contract import Learner
from ..train.trainer import TaskTrainer
from .checkpoint import Checkpointer, CheckpointWarning
from .compute import ComputeLedger
from .environment import rng_states, set_rng_states
from .hashing import config_hash
from .matrix import AccuracyMatrix
from .rundir import RunDir

CHECKPOINT_VERSION = 2


@dataclass
class RunParts:
    """The stateful parts of a run that a checkpoint covers."""

    cfg: RunConfig
    model: nn.Module
    learner: Learner
    generator: torch.Generator
    matrix: AccuracyMatrix
    compute: ComputeLedger
    capacity: list[dict]


@dataclass(frozen=True)
class ResumePoint:
    """Where a restored run goes on: the next task, and the trainer state of a task cut mid-way (or None)."""

    next_task: int
    trainer_state: dict | None
    capacity: list[dict]


def save_checkpoint(checkpointer: Checkpointer, parts: RunParts, phase: str, task: int,
                    trainer: TaskTrainer | None, *, blocking: bool = False) -> None:
    checkpointer.save({
        "version": CHECKPOINT_VERSION, "phase": phase, "task": task, "config": config_hash(parts.cfg),
        "model": parts.model.state_dict(), "learner": parts.learner.state_dict(),
        "trainer": trainer.state_dict() if trainer is not None else None,
        "generator": parts.generator.get_state(), "rng": rng_states(),
        "matrix": parts.matrix.state_dict(), "capacity": parts.capacity, "compute": parts.compute.state_dict(),
    }, blocking=blocking)


def restore(payload: dict, parts: RunParts) -> ResumePoint:
    """Load ``payload`` into ``parts``; where the run goes on."""
    if payload.get("version") != CHECKPOINT_VERSION:
        raise DstclError(f"checkpoint version {payload.get('version')} is not supported by this dstcl "
                         f"(it writes version {CHECKPOINT_VERSION}); finish the run with the dstcl that started it.")
    if payload.get("config") != config_hash(parts.cfg):
        raise DstclError(
            "the newest checkpoint in this run directory was written by a run with other settings than its "
            "config.json (the folder was reused); resuming would continue the wrong run. Start it again "
            "with --fresh or in a new folder."
        )
    parts.model.load_state_dict(payload["model"])
    parts.learner.load_state_dict(payload["learner"])
    parts.generator.set_state(payload["generator"])
    set_rng_states(payload["rng"])
    parts.matrix.load_state_dict(payload["matrix"])
    parts.compute.load_state_dict(payload["compute"])
    if payload["phase"] == "task_done":
        return ResumePoint(payload["task"] + 1, None, payload["capacity"])
    return ResumePoint(payload["task"], payload["trainer"], payload["capacity"])


def resume_from_checkpoint(checkpointer: Checkpointer, parts: RunParts, run: RunDir,
                           echo: Callable[[str], None]) -> ResumePoint:
    """Restore the newest readable checkpoint (an unreadable newer one is reported and skipped)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CheckpointWarning)
        found = checkpointer.load_latest()
    for warning in caught:
        echo(f"warning: {warning.message}")
        run.event({"event": "warning", "message": str(warning.message)})
    if found is None:
        echo(f"no readable checkpoint in {run.path}; starting it from the beginning.")
        return ResumePoint(0, None, parts.capacity)
    point = restore(found[0], parts)
    echo(f"resuming {run.path} from {found[1].name}: task {point.next_task + 1}/{parts.cfg.data.tasks}"
         + (f", epoch {point.trainer_state['epochs_done'] + 1}" if point.trainer_state else ""))
    run.event({"event": "resumed", "checkpoint": found[1].name, "task": point.next_task})
    return point
