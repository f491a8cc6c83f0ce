"""Saving and restoring an :class:`~dstcl.run.experiment.Experiment`: what a checkpoint holds.

A checkpoint (after an epoch, within the time budget, and after every task) holds the weights, the
learner (owners, masks, the task in progress, its RNG), the trainer (optimizer, scheduler, augmentation
RNG, gradient scaler), every global RNG state, the accuracy matrix, capacity and compute so far, and the
hash of the settings (a checkpoint of other settings is never continued).
"""

from __future__ import annotations

import warnings

from ..errors import DstclError
from ..train.trainer import TaskTrainer
from .checkpoint import CheckpointWarning
from .environment import rng_states, set_rng_states
from .hashing import config_hash
from .rundir import RunDir

CHECKPOINT_VERSION = 2


class ExperimentCheckpoints:
    """The checkpoint half of an experiment (mixed into :class:`~dstcl.run.experiment.Experiment`)."""

    def _checkpoint(self, phase: str, task: int, trainer: TaskTrainer | None, *, blocking: bool = False) -> None:
        self.checkpointer.save({
            "version": CHECKPOINT_VERSION, "phase": phase, "task": task, "config": config_hash(self.cfg),
            "model": self.model.state_dict(), "learner": self.learner.state_dict(),
            "trainer": trainer.state_dict() if trainer is not None else None,
            "generator": self.generator.get_state(), "rng": rng_states(),
            "matrix": self.matrix.state_dict(), "capacity": self.capacity, "compute": self.compute.state_dict(),
        }, blocking=blocking)

    def _restore(self, payload: dict) -> None:
        if payload.get("version") != CHECKPOINT_VERSION:
            raise DstclError(f"checkpoint version {payload.get('version')} is not supported by this dstcl "
                             f"(it writes version {CHECKPOINT_VERSION}); finish the run with the dstcl that started it.")
        if payload.get("config") != config_hash(self.cfg):
            raise DstclError(
                "the newest checkpoint in this run directory was written by a run with other settings than its "
                "config.json (the folder was reused); resuming would continue the wrong run. Start it again "
                "with --fresh or in a new folder."
            )
        self.model.load_state_dict(payload["model"])
        self.learner.load_state_dict(payload["learner"])
        self.generator.set_state(payload["generator"])
        set_rng_states(payload["rng"])
        self.matrix.load_state_dict(payload["matrix"])
        self.capacity = payload["capacity"]
        self.compute.load_state_dict(payload["compute"])
        if payload["phase"] == "task_done":
            self.next_task, self.trainer_state = payload["task"] + 1, None
        else:
            self.next_task, self.trainer_state = payload["task"], payload["trainer"]

    def _resume_from_checkpoint(self, run: RunDir) -> None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CheckpointWarning)
            found = self.checkpointer.load_latest()
        for warning in caught:
            self.echo(f"warning: {warning.message}")
            run.event({"event": "warning", "message": str(warning.message)})
        if found is None:
            self.echo(f"no readable checkpoint in {run.path}; starting it from the beginning.")
            return
        self._restore(found[0])
        self.echo(f"resuming {run.path} from {found[1].name}: task {self.next_task + 1}/{self.cfg.data.tasks}"
                  + (f", epoch {self.trainer_state['epochs_done'] + 1}" if self.trainer_state else ""))
        run.event({"event": "resumed", "checkpoint": found[1].name, "task": self.next_task})
