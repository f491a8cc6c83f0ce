"""Checkpoints of a run: written atomically in the background, read back newest-valid-first.

``save`` takes a snapshot (tensors copied to CPU memory, which is all the training loop waits for),
then a background thread serialises it to ``ckpt-NNNNNN.pt.tmp``, fsyncs and renames it to
``ckpt-NNNNNN.pt``. A kill at any moment leaves either the previous checkpoint or the new one, never
a half file under a checkpoint name. The newest ``keep`` checkpoints are kept, so a checkpoint that
is unreadable anyway (disk error, truncated copy) falls back to the one before, with a warning.
"""

from __future__ import annotations

import io
import os
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from .. import faults
from ..errors import DstclError
from ..files import disk_full_error
from ..safeload import UnsafeFileError, load_torch

_NAME = re.compile(r"^ckpt-(\d{6})\.pt$")


class CheckpointWarning(UserWarning):
    """A checkpoint could not be read and an older one is used."""


def snapshot(obj: Any) -> Any:
    """Deep copy of ``obj`` with every tensor copied to CPU memory (safe to write while training goes on)."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class Checkpointer:
    def __init__(self, folder: str | Path, keep: int = 2, background: bool = True):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.keep = max(int(keep), 1)
        self.background = background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        existing = self.paths()
        self._seq = int(_NAME.match(existing[-1].name).group(1)) if existing else 0
        self.last_finished: float | None = None  # perf_counter when the last write completed
        self.last_cost = 0.0  # seconds the last checkpoint cost (snapshot + write)
        self._blocking = 0.0

    def paths(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        return sorted(p for p in self.folder.iterdir() if _NAME.match(p.name))

    def due(self, budget: float) -> bool:
        """Whether a checkpoint now keeps checkpointing within ``budget`` (a share) of the time.

        True when the time since the last checkpoint is at least the last checkpoint's cost divided
        by ``budget``: with budget 0.02 at most 2 % of the run goes to checkpoints, whatever the
        machine; small models (cheap checkpoints) get one after every epoch.
        """
        if self.last_finished is None:
            return True
        return (time.perf_counter() - self.last_finished) * budget >= self.last_cost

    def save(self, payload: dict, *, blocking: bool = False) -> None:
        """Snapshot ``payload`` now and write it in the background; or, with ``blocking`` (the caller
        waits anyway: a task end) or ``background`` off, write it now with no snapshot copy."""
        started = time.perf_counter()
        now = blocking or not self.background
        data = payload if now else snapshot(payload)
        self.wait()
        self._blocking = time.perf_counter() - started
        self._seq += 1
        path = self.folder / f"ckpt-{self._seq:06d}.pt"
        if not now:
            self._thread = threading.Thread(target=self._write_guarded, args=(path, data), daemon=True)
            self._thread.start()
        else:  # errors surface as from a background write
            self._write_guarded(path, data)
            self.wait()

    def wait(self) -> None:
        """Block until the last write finished; re-raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise DstclError(f"writing a checkpoint failed: {error}") from error

    def _write_guarded(self, path: Path, data: dict) -> None:
        try:
            self._write(path, data)
        except BaseException as exc:  # reported by wait()
            self._error = exc

    def _write(self, path: Path, data: dict) -> None:
        started = time.perf_counter()
        tmp = path.with_name(path.name + ".tmp")
        try:
            with open(tmp, "wb") as handle:
                torch.save(data, _FaultPointWriter(handle))  # streamed: no second copy of the payload in memory
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            full = disk_full_error(exc, path)  # torch reports a full disk as its own RuntimeError
            tmp.unlink(missing_ok=True)  # a half file must not keep the space a full disk needs for metrics.json
            if full is not None:
                advice = f"free space and resume the run with dstcl run --resume {self.folder.parent}"
                raise full.advise(advice) from exc
            raise
        _fsync_dir(path.parent)
        for old in self.paths()[: -self.keep]:
            old.unlink(missing_ok=True)
        self.last_finished = time.perf_counter()
        self.last_cost = self._blocking + (self.last_finished - started)

    def load_latest(self) -> tuple[dict, Path] | None:
        """The newest readable checkpoint (warning about each unreadable newer one), or None."""
        for path in reversed(self.paths()):
            try:
                payload = load_torch(path, "checkpoint")  # never unpickles code: a crafted file is refused
                if not isinstance(payload, dict) or "phase" not in payload:
                    raise ValueError("not a dstcl checkpoint")
                return payload, path
            except UnsafeFileError:
                raise  # not damage but a planted file: continuing from an older one would hide it
            except Exception as exc:  # truncated, corrupt or foreign: fall back to the previous one
                warnings.warn(f"checkpoint {path.name} is unreadable ({exc.__class__.__name__}); "
                              "falling back to the previous one.", CheckpointWarning, stacklevel=2)
        return None


class _FaultPointWriter(io.RawIOBase):
    """A file wrapper that reaches ``faults.point("checkpoint_write")`` once, after the first data is on disk."""

    def __init__(self, handle):
        super().__init__()
        self.handle, self.reached = handle, False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        written = self.handle.write(data)
        if not self.reached and self.handle.tell() > 0:
            self.reached = True
            self.handle.flush()
            faults.point("checkpoint_write")  # the tests kill here: a half-written temporary file
        return written

    def flush(self) -> None:
        self.handle.flush()


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
