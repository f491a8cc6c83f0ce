"""A run's result files: written with their digests, verified before they are used.

``metrics.json`` of a completed run lists, under ``files``, the BLAKE2b digest of every file its results
live in (``config.json``, ``state.pt`` or ``weights.pt``, ``buffers.pt``, each ``masks/task_NN.npz``).
``metrics.json`` is written last, so a run that says ``completed`` has every one of them; ``export``,
``predict``, ``dstcl.load`` and ``--resume`` verify the ones they read and refuse a missing, truncated
or altered file, naming it, instead of computing something else from it.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from .. import faults
from ..safeload import DamagedFileError, file_digest
from ..train.contract import Learner
from .rundir import BUFFERS, CONFIG, MASKS, STATE, WEIGHTS, RunDir, load_mask

FILES = "files"  # the key of metrics.json holding the digests


def mask_file(task: int) -> str:
    return f"{MASKS}/task_{task:02d}.npz"


class UnverifiedRunWarning(UserWarning):
    """A run written before dstcl recorded file digests: its files cannot be checked."""


class FileDigests:
    """The digests of one run's result files, by name relative to the run folder."""

    def __init__(self, root: Path, digests: Mapping[str, str] | None = None):
        self.root, self.digests = Path(root), dict(digests or {})

    def record(self, name: str) -> None:
        self.digests[name] = file_digest(self.root / name)

    def as_dict(self) -> dict[str, str]:
        return dict(sorted(self.digests.items()))


def write_results(run: RunDir, files: FileDigests, learner: Learner, model: nn.Module) -> None:
    """The final state (sparse learners), weights and buffers, each followed by its digest; a kill or a full
    disk at any of them leaves a run that is not yet completed (``metrics.json`` is written after)."""
    payload = learner.state_payload()
    if payload is not None:
        faults.point("final_write")
        run.save_torch(STATE, payload)
        files.record(STATE)
    faults.point("final_write")
    run.save_torch(WEIGHTS, learner.weights())
    files.record(WEIGHTS)
    buffers = {n: b.detach().cpu() for n, b in model.named_buffers()}
    if buffers:  # per-task BatchNorm statistics (--bn task)
        faults.point("final_write")
        run.save_torch(BUFFERS, buffers)
        files.record(BUFFERS)
    files.record(CONFIG)


def verify_files(run_dir: str | Path, metrics: Mapping, names: Iterable[str]) -> bool:
    """Check ``names`` against the digests in ``metrics``; False (with a warning) when the run has none."""
    run_dir = Path(run_dir)
    recorded = metrics.get(FILES)
    if not isinstance(recorded, dict):
        warnings.warn(f"{run_dir} was written by a dstcl that recorded no file digests; its files cannot be checked "
                      "for damage.", UnverifiedRunWarning, stacklevel=2)
        return False
    for name in names:
        path = run_dir / name
        if name not in recorded:
            raise DamagedFileError(f"{path} is not among the files the run recorded when it finished; its metrics.json "
                                   "was altered or belongs to another run. Run the configuration again "
                                   f"(dstcl run --config {run_dir / 'config.json'}).")
        if not path.is_file():
            raise DamagedFileError(f"{path} is missing, although the run wrote it when it finished. Restore the file, "
                                   f"or run the configuration again (dstcl run --config {run_dir / 'config.json'}).")
        if file_digest(path) != recorded[name]:
            raise DamagedFileError(
                f"{path} is not the file the run wrote ({path.stat().st_size:,} bytes, and its digest differs from "
                "the one recorded in metrics.json): it was truncated, altered or replaced. Restore the file, or run "
                f"the configuration again (dstcl run --config {run_dir / 'config.json'})."
            )
    return True


def repair_masks(run, state, tasks: int, echo) -> None:
    """On resume: each completed task's mask file must hold the masks of the restored state; a missing,
    unreadable or different one is written again from the checkpoint (which is the source of truth)."""
    for task in range(tasks):
        expected = {layer.name: layer.masks[task] for layer in state.layers}
        path = run.path / mask_file(task)
        problem = None
        try:
            found = load_mask(path)
            if found.keys() != expected.keys() or not all(torch.equal(found[k].cpu(), expected[k].cpu())
                                                          for k in expected):
                problem = "it differs from the checkpoint"
        except FileNotFoundError:
            problem = "it is missing"
        except Exception as exc:  # noqa: BLE001 - truncated zip, bad array: all "damaged"
            problem = f"it is unreadable ({type(exc).__name__})"
        if problem is not None:
            run.save_mask(task, expected)
            echo(f"note: {path} was damaged ({problem}); written again from the checkpoint.")
            run.event({"event": "repaired", "file": mask_file(task), "problem": problem})
