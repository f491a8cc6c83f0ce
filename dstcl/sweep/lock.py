"""One sweep per output folder: ``sweep.lock``, an OS file lock held while a sweep runs into it.

Two sweeps on one ``--out`` would each judge the other's runs (running, then finished by someone else) and
mark them failed; the second is refused at once instead, naming the first. The lock is released by the
operating system when the sweep's process ends, however it ends (a kill included), so a stale lock file
never blocks the next sweep.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

from ..errors import DstclError

LOCK_NAME = "sweep.lock"


@contextlib.contextmanager
def sweep_lock(out: str | Path) -> Iterator[None]:
    """Hold ``out/sweep.lock`` for the block; a DstclError naming the holder if another sweep has it."""
    import fcntl

    path = Path(out) / LOCK_NAME
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise DstclError(
                f"another dstcl sweep ({owner}) is running into {out}; two sweeps on one folder would mark each "
                "other's runs failed. Wait for it to finish (or stop it), then run this sweep again: it skips what "
                "the other completed. To run beside it, give this sweep another --out."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
