"""The run directory: the one owner of its format (file names, status, lock), every file written atomically.

Layout::

    <folder>/
        config.json          resolved configuration (flat; ``dstcl run --config`` reads it back)
        environment.json     versions, device, threads, host
        events.jsonl         one JSON object per line: epochs, topology updates, task ends
        metrics.json         status, accuracy matrix (percent, null where not evaluated) and summaries
        capacity.json        per task, per layer: owned fraction, reuse of earlier tasks' weights
        masks/task_NN.npz    task NN's mask per layer, packed bits (numpy.packbits) + shapes
        checkpoints/         the newest checkpoints of an unfinished run (dstcl.run.checkpoint)
        state.pt             final sparse state: values, owners, all masks (dstcl.sparse.SparseState)
        weights.pt           final stored values per prunable tensor (name -> tensor; W, not W * mask)
        buffers.pt           the network's buffers (per-task BatchNorm statistics), when it has any
        summary.md           the human summary printed at the end
        run.lock             held (an OS file lock) while a process runs here

Sweeps, reports and the CLI ask this module for statuses, locks and file names; nothing else
re-implements them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DstclError
from ..files import atomic_file, atomic_torch_save, atomic_write_json, atomic_write_text

CONFIG = "config.json"
ENVIRONMENT = "environment.json"
EVENTS = "events.jsonl"
METRICS = "metrics.json"
CAPACITY = "capacity.json"
SUMMARY = "summary.md"
STATE = "state.pt"
WEIGHTS = "weights.pt"
BUFFERS = "buffers.pt"
LOCK = "run.lock"
MASKS = "masks"
CHECKPOINTS = "checkpoints"
COMPLETED = "completed"
SWEEP_CONFIG = "sweep-config.json"  # written by dstcl sweep before it starts the run: its resolved config
SWEEP_LOG = "sweep.log"  # the sweep's log of every attempt of the run
# Outputs of a run attempt, removed when a folder is reused for a fresh start.
OUTPUT_FILES = (CONFIG, ENVIRONMENT, EVENTS, METRICS, CAPACITY, STATE, WEIGHTS, BUFFERS, SUMMARY)

Subscriber = Callable[[dict], None]


def run_status(path: str | Path) -> str | None:
    """The ``status`` recorded in ``path/metrics.json`` (completed, running, failed, interrupted), or None
    when there is none readable."""
    try:
        status = json.loads((Path(path) / METRICS).read_text(encoding="utf-8")).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


def read_config(path: str | Path) -> dict:
    """The run's ``config.json`` as a dict, or a DstclError saying why it cannot be used."""
    return _json_object(Path(path) / CONFIG, "a run configuration (a JSON object); it was changed by hand or is "
                        "not a dstcl run directory")


def read_metrics(path: str | Path) -> dict:
    """The run's ``metrics.json``, or a DstclError saying why it cannot be read."""
    return _json_object(Path(path) / METRICS, "run metrics (a JSON object)")


def read_events(path: str | Path) -> list[dict]:
    """The run's ``events.jsonl``, oldest first ([] when there is none; an unreadable line is skipped)."""
    try:
        lines = (Path(path) / EVENTS).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def _json_object(file: Path, what: str) -> dict:
    try:
        value = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DstclError(f"cannot read {file}: {exc}.") from None
    if not isinstance(value, dict):
        raise DstclError(f"{file} does not hold {what}.")
    return value


def is_run_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def is_locked(path: str | Path) -> bool:
    """True while a ``dstcl run`` process holds the run's lock (see :meth:`RunDir.lock`)."""
    file = Path(path) / LOCK
    if not file.exists():
        return False
    import fcntl

    with open(file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def remove_stale_temporaries(path: str | Path) -> int:
    """Delete the temporary files a killed write left (``.NAME.*.tmp``, ``ckpt-*.pt.tmp``); returns how many."""
    root = Path(path)
    stale = [*root.glob(".*.tmp"), *(root / MASKS).glob(".*.tmp"), *(root / CHECKPOINTS).glob("*.tmp")]
    for file in stale:
        file.unlink(missing_ok=True)
    return len(stale)


class RunDir:
    """Writes the files of one run and publishes its events to subscribers (loggers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._events = None
        self._lock = None
        self._subscribers: list[Subscriber] = []

    # --- opening -----------------------------------------------------------------------------------

    @classmethod
    def create(cls, out: str | Path, label: str) -> "RunDir":
        """A new, uniquely named folder under ``out`` (created exclusively: never an existing one)."""
        return cls(cls.reserve(out, label))

    @staticmethod
    def reserve(out: str | Path, label: str) -> Path:
        """Create a new unique run folder ``<out>/<YYYYmmdd-HHMMSS>-<label>-<id>`` and return its path."""
        root = Path(out)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DstclError(f"cannot create the output folder {root}: {exc.strerror}. Choose another with --out.") from None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for _ in range(100):
            path = root / f"{stamp}-{label}-{secrets.token_hex(3)}"
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise DstclError(f"cannot create a run folder in {root}: {exc.strerror}. Choose another with --out.") from None
            (path / MASKS).mkdir()
            return path
        raise DstclError(f"could not find a free run folder name in {root}.")

    @staticmethod
    def release_if_unused(path: str | Path) -> None:
        """Remove a reserved folder again if the run failed before writing anything into it."""
        path = Path(path)
        if path.is_dir() and not (path / CONFIG).exists():
            shutil.rmtree(path, ignore_errors=True)

    @classmethod
    def reopen(cls, path: str | Path) -> "RunDir":
        """An existing run directory, to continue it (events are appended, nothing is deleted)."""
        path = Path(path)
        if not is_run_dir(path):
            raise DstclError(f"{path} is not a dstcl run directory (no {CONFIG}); give the folder printed as "
                             "'run directory:' when the run started.")
        run = cls(path)
        run.lock()  # refused at once, before any data is loaded, if the run is still going
        run._repair_events()
        remove_stale_temporaries(path)
        return run

    @classmethod
    def fresh(cls, path: str | Path) -> "RunDir":
        """Exactly ``path``, emptied of any earlier attempt's outputs (after taking its lock)."""
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DstclError(f"cannot create the run folder {path}: {exc.strerror}.") from None
        run = cls(path)
        run.lock()  # a run still going in this folder is refused before anything of it is touched
        try:
            run.clear()
        except BaseException:
            run.close()
            raise
        return run

    def lock(self) -> None:
        """Hold ``run.lock`` (an OS file lock, released even on SIGKILL) while this process runs here.

        A second process that tries to run or resume the same directory gets a clear error. Taking
        the lock again in the same RunDir is a no-op.
        """
        import fcntl

        if self._lock is not None:
            return
        handle = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise DstclError(
                f"the run in {self.path} is still running ({owner}); wait for it to finish or stop it "
                "before resuming."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._lock = handle

    def clear(self, keep: tuple[str, ...] = ()) -> None:
        """Remove every output of an earlier attempt (checkpoints included; the lock and ``keep`` stay)."""
        for name in OUTPUT_FILES:
            if name not in keep:
                (self.path / name).unlink(missing_ok=True)
        checkpoints = self.path / CHECKPOINTS
        if checkpoints.is_dir():  # only dstcl's own checkpoints: a file of the user's there stays
            for old in [*checkpoints.glob("ckpt-*.pt"), *checkpoints.glob("ckpt-*.pt.tmp")]:
                old.unlink(missing_ok=True)
            if not any(checkpoints.iterdir()):
                checkpoints.rmdir()
        masks = self.path / MASKS
        masks.mkdir(exist_ok=True)
        for old in masks.glob("task_*.npz"):
            old.unlink()
        remove_stale_temporaries(self.path)

    def _repair_events(self) -> None:
        """Cut a half-written last line (the run was killed mid-write) so appended events stay valid JSON lines."""
        path = self.path / EVENTS
        try:
            with open(path, "rb+") as handle:
                data = handle.read()
                if data and not data.endswith(b"\n"):
                    handle.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    # --- writing -----------------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Pass every event written from now on to ``subscriber`` too (TensorBoard, tests)."""
        self._subscribers.append(subscriber)

    def event(self, record: dict) -> None:
        """Append one event line (flushed: a killed run keeps every event up to the kill), then publish it."""
        if self._events is None:
            self._events = open(self.path / EVENTS, "a", encoding="utf-8")
        record = {"time": round(time.time(), 3), **record}
        self._events.write(json.dumps(record) + "\n")
        self._events.flush()
        for subscriber in self._subscribers:
            subscriber(record)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def save_mask(self, task: int, masks: dict[str, torch.Tensor]) -> Path:
        """Task ``task``'s masks as packed bits: for layer L, arrays ``L`` (bits) and ``L.shape``."""
        arrays: dict[str, np.ndarray] = {}
        for name, mask in masks.items():
            arrays[name] = np.packbits(mask.detach().cpu().numpy().reshape(-1))
            arrays[f"{name}.shape"] = np.asarray(mask.shape, dtype=np.int64)
        path = self.path / MASKS / f"task_{task:02d}.npz"
        with atomic_file(path) as handle:
            np.savez(handle, **arrays)
        return path

    def save_torch(self, name: str, obj: Any) -> None:
        atomic_torch_save(self.path / name, obj)

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def load_mask(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``masks/task_NN.npz`` file back into boolean tensors."""
    with np.load(path) as data:
        names = [k for k in data.files if not k.endswith(".shape")]
        out = {}
        for name in names:
            shape = tuple(int(s) for s in data[f"{name}.shape"])
            flat = np.unpackbits(data[name], count=int(np.prod(shape))).astype(bool)
            out[name] = torch.from_numpy(flat.reshape(shape))
        return out


def mask_shapes(path: str | Path) -> dict[str, tuple[int, ...]] | None:
    """Shapes of the prunable layers, read from the run's first mask file (no model is built)."""
    file = Path(path) / MASKS / "task_00.npz"
    if not file.is_file():
        return None
    try:
        with np.load(file) as data:
            return {k[: -len(".shape")]: tuple(int(s) for s in data[k]) for k in data.files if k.endswith(".shape")}
    except (OSError, ValueError, KeyError):
        return None
