"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Files get the mode a plain ``open`` would give them (0666 less the process umask), and a write that fails
for a reason the user can fix (a full disk, a folder that is not writable or does not exist) raises a
:class:`FileWriteError` saying so, whose advice the caller may replace with its own (a run's resume command).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

from .errors import DstclError

# A RuntimeError of torch's writer (it reports a failed write as "[enforce fail at inline_container.cc:...]")
# counts as a full disk when the folder has less than this free: the write failed for want of space.
FULL_BELOW_BYTES = 64 * 1024**2
_TORCH_WRITE_FAILED = re.compile(r"enforce fail|file write failed|unexpected pos")
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
_umask_lock = threading.Lock()


class FileWriteError(DstclError, OSError):
    """Writing ``path`` failed for a reason the user can fix; the message is ``problem; advice.``.

    Also an OSError, so code that handles failed writes as OSError keeps doing so.
    """

    remedy = ""  # what fixes the problem in place, if anything (a subclass says)

    def __init__(self, path: str | Path, problem: str, advice: str, code: int | None = None):
        self.path, self.problem, self.advice = Path(path), problem, advice
        super().__init__(f"{problem}; {advice}.")
        self.errno = code

    def advise(self, advice: str) -> "FileWriteError":
        """The same error with the caller's advice instead (e.g. a run's resume command)."""
        return type(self)(self.path, self.problem, advice, self.errno)

    def for_option(self, option: str) -> "FileWriteError":
        """The error of a command's output file given by ``option`` (``-o``): it may choose another one."""
        return self.advise(f"{self.remedy} or choose another {option}" if self.remedy else f"choose another {option}")

    def __reduce__(self):  # picklable (process pools, Ray) despite the extra arguments
        return type(self), (self.path, self.problem, self.advice, self.errno)


class DiskFullError(FileWriteError):
    """No space was left on the device (or in the quota) while writing."""

    remedy = "free space"


class FolderNotWritableError(FileWriteError):
    """The folder of the file cannot be written to (permissions, a read-only file system)."""


class FolderMissingError(FileWriteError):
    """The folder of the file does not exist and the caller asked not to create it."""

    remedy = "create it first"


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status`` on Linux; elsewhere set and restored
    under a lock, which other threads creating files at that instant could still see)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def free_bytes(folder: str | Path) -> int | None:
    """Bytes an unprivileged user may still write in ``folder``'s file system, or None if unknown."""
    try:
        info = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return info.f_bavail * info.f_frsize


def disk_full_error(exc: BaseException, path: str | Path) -> DiskFullError | None:
    """``exc`` as a :class:`DiskFullError` when a full disk caused it (ENOSPC or EDQUOT, or torch's failed write
    in a folder that is (nearly) full), else None."""
    path = Path(path)
    if isinstance(exc, FileWriteError) or not isinstance(exc, (OSError, RuntimeError)):
        return None
    free = free_bytes(path.parent)
    if isinstance(exc, OSError):
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    else:
        context = exc.__cause__ or exc.__context__
        full = bool(_TORCH_WRITE_FAILED.search(str(exc))) and (
            (isinstance(context, OSError) and context.errno in (errno.ENOSPC, errno.EDQUOT))
            or (free is not None and free < FULL_BELOW_BYTES))
    if not full:
        return None
    left = "unknown space" if free is None else f"{free // 1024**2:,} MB"
    return DiskFullError(path, f"No space left on device while writing {path} ({left} free)",
                         "free space and try again", errno.ENOSPC)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, make_parents: bool = True) -> Iterator[IO[bytes]]:
    """A binary handle on a temporary file beside ``path``; on success it is fsynced and renamed to
    ``path``, on any error removed (the old file, if any, stays).

    ``make_parents=False`` (a command's output file) refuses a missing folder instead of creating it.
    """
    path = Path(path)
    folder = path.parent
    if not make_parents and not folder.is_dir():
        raise FolderMissingError(path, f"folder {folder} does not exist", "create it first", errno.ENOENT)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _opening_error(exc, path) from exc
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600 files: give the mode open() would
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        full = disk_full_error(exc, path)  # the free space measured before the half file is removed
        if os.path.exists(tmp):
            os.unlink(tmp)
        if full is not None:
            raise full from exc
        raise


def _opening_error(exc: OSError, path: Path) -> OSError:
    """A failed mkdir or mkstemp, said as what the user can fix where it is one."""
    full = disk_full_error(exc, path)
    if full is not None:
        return full
    if exc.errno in _NOT_WRITABLE:
        folder = path.parent
        return FolderNotWritableError(path, f"cannot write {path}: the folder {folder} is not writable "
                                            f"({exc.strerror or exc})", "make it writable or write elsewhere",
                                      exc.errno)
    return exc


def atomic_write_bytes(path: str | Path, data: bytes, *, make_parents: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync and rename."""
    with atomic_file(path, make_parents=make_parents) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, *, make_parents: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), make_parents=make_parents)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` streamed to disk (no serialised copy of ``obj`` in memory), atomically."""
    with atomic_file(path) as handle:
        torch.save(obj, handle)
