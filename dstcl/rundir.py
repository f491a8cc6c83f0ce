"""The run directory: one unique folder per run, never overwritten, every file written atomically.

Layout::

    <out>/<YYYYmmdd-HHMMSS>-<dataset>-<id>/
        config.json          resolved configuration
        environment.json     versions, device, host
        events.jsonl         one JSON object per line: epochs, topology updates, task ends
        metrics.json         accuracy matrix (percent, null where not evaluated) and summaries
        capacity.json        per task, per layer: owned fraction, reuse of earlier tasks' weights
        masks/task_NN.npz    task NN's mask per layer, packed bits (numpy.packbits) + shapes
        state.pt             final sparse state: values, owners, all masks (dstcl.sparse.SparseState)
        weights.pt           final stored values per prunable tensor (name -> tensor; W, not W * mask)
        summary.md           the human summary printed at the end
"""

from __future__ import annotations

import io
import json
import os
import platform
import secrets
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DstclError
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text


# Outputs of a run attempt, removed when a sweep starts a run again in the same folder.
STALE_FILES = ("config.json", "environment.json", "events.jsonl", "metrics.json", "capacity.json",
               "state.pt", "weights.pt", "summary.md")


def run_status(path: Path) -> str | None:
    """The ``status`` recorded in ``path/metrics.json``, or None when there is none readable."""
    try:
        status = json.loads((path / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None
    return status if isinstance(status, str) else None


class RunDir:
    """Writes the files of one run; the folder is created exclusively (os.mkdir fails if it exists)."""

    def __init__(self, path: Path):
        self.path = path
        self._events = None
        self._lock = None

    def lock(self) -> None:
        """Hold ``run.lock`` (an OS file lock, released even on SIGKILL) while this process runs here.

        A second process that tries to run or resume the same directory gets a clear error. Taking
        the lock again in the same RunDir is a no-op.
        """
        import fcntl

        if self._lock is not None:
            return
        handle = open(self.path / "run.lock", "a+")
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

    @classmethod
    def reopen(cls, path: str | Path) -> "RunDir":
        """An existing run directory, for ``--resume`` (events are appended, nothing is deleted)."""
        path = Path(path)
        if not (path / "config.json").is_file():
            raise DstclError(
                f"{path} is not a dstcl run directory (no config.json); give the folder printed as "
                "'run directory:' when the run started."
            )
        run = cls(path)
        run.lock()  # refused at once, before any data is loaded, if the run is still going
        run._repair_events()
        return run

    def _repair_events(self) -> None:
        """Cut a half-written last line (the run was killed mid-write) so appended events stay valid JSON lines."""
        path = self.path / "events.jsonl"
        try:
            with open(path, "rb+") as handle:
                data = handle.read()
                if data and not data.endswith(b"\n"):
                    handle.truncate(data.rfind(b"\n") + 1)
        except FileNotFoundError:
            pass

    @classmethod
    def create(cls, out: str | Path, label: str) -> "RunDir":
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
            (path / "masks").mkdir()
            return cls(path)
        raise DstclError(f"could not find a free run folder name in {root}.")

    @classmethod
    def at(cls, path: str | Path) -> "RunDir":
        """Use exactly ``path`` (for sweeps, which name runs by the hash of their config).

        The folder may exist only if it holds no completed run and no live one: its lock is taken
        first, then every output of the earlier attempt (checkpoints included, so a later
        ``--resume`` can never continue another configuration's state) is removed.
        """
        path = Path(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DstclError(f"cannot create the run folder {path}: {exc.strerror}.") from None
        run = cls(path)
        run.lock()  # a run still going in this folder is refused before anything of it is touched
        try:
            if run_status(path) == "completed":
                raise DstclError(f"{path} already holds a completed run; choose another --run-dir.")
            run._clear()
        except BaseException:
            run.close()
            raise
        return run

    def _clear(self) -> None:
        """Remove what an earlier, unfinished attempt left here (keeps only the lock file)."""
        for name in STALE_FILES:
            (self.path / name).unlink(missing_ok=True)
        shutil.rmtree(self.path / "checkpoints", ignore_errors=True)
        masks = self.path / "masks"
        masks.mkdir(exist_ok=True)
        for old in masks.glob("task_*.npz"):
            old.unlink()

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        atomic_write_text(self.path / name, text)

    def event(self, record: dict) -> None:
        """Append one event line (flushed: a killed run keeps every event up to the kill)."""
        if self._events is None:
            self._events = open(self.path / "events.jsonl", "a", encoding="utf-8")
        record = {"time": round(time.time(), 3), **record}
        self._events.write(json.dumps(record) + "\n")
        self._events.flush()

    def save_mask(self, task: int, masks: dict[str, torch.Tensor]) -> Path:
        """Task ``task``'s masks as packed bits: for layer L, arrays ``L`` (bits) and ``L.shape``."""
        arrays: dict[str, np.ndarray] = {}
        for name, mask in masks.items():
            arrays[name] = np.packbits(mask.detach().cpu().numpy().reshape(-1))
            arrays[f"{name}.shape"] = np.asarray(mask.shape, dtype=np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path = self.path / "masks" / f"task_{task:02d}.npz"
        atomic_write_bytes(path, buffer.getvalue())
        return path

    def save_torch(self, name: str, obj: Any) -> None:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        atomic_write_bytes(self.path / name, buffer.getvalue())

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


def environment(device: torch.device) -> dict:
    """Versions and hardware, so a result can be traced to what produced it."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "pid": os.getpid(),
    }
    try:
        from . import __version__

        info["dstcl"] = __version__
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info
