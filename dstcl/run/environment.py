"""Where a run executes: its device, its CPU threads, its random number generators, its versions.

Results are bit-identical on the CPU for the same config, seed, **thread count**, torch version and
device (the thread count changes the order of floating-point reductions). The thread count is a
setting (``--threads``); by default it is ``OMP_NUM_THREADS`` when set, else the number of CPUs this
process may actually use, read from its CPU affinity and its cgroup CPU quota rather than from the
machine's core count. Either way the count used is recorded in ``config.json``.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import signal
import threading
import platform
import random
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu or auto.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r} does not exist: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} (Apple GPU) is not available here; use --device cpu or auto.")
    return device


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (cgroup v2 ``cpu.max`` or v1 CFS), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def default_threads() -> int:
    """The thread count of a run that sets none: ``OMP_NUM_THREADS`` when the user set it, else
    :func:`available_cpus`."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return available_cpus()


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by its cgroup quota (at least 1)."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def capped_threads(requested: int | None, echo: Callable[[str], None] = print) -> int:
    """The thread count a run computes with: ``requested`` (or :func:`default_threads`), at most the CPUs this
    process may use, saying so when it caps (more threads than CPUs only share them: many times slower)."""
    count = requested or default_threads()
    cpus = available_cpus()
    if count <= cpus:
        return count
    given = f"--threads {count}" if requested else f"OMP_NUM_THREADS={count}"
    echo(f"{given} is more than the {cpus} CPU{'s' if cpus > 1 else ''} this process may use; using {cpus}")
    return cpus


def use_threads(count: int) -> int:
    """Make torch compute with ``count`` intra-op threads; returns it."""
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def environment(device: torch.device) -> dict:
    """Versions and hardware, so a result can be traced to what produced it (and repeated exactly)."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
        "cpus_available": available_cpus(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cuda_available": torch.cuda.is_available(),
        "pid": os.getpid(),
    }
    try:
        from .. import __version__

        info["dstcl"] = __version__
    except ImportError:  # pragma: no cover
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops as on Ctrl-C (metrics.json says interrupted, with a resume hint)."""


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` in the main thread while the block runs (the CLI uses it)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def release_free_memory() -> bool:
    """Hand freed heap memory back to the operating system (glibc ``malloc_trim``); False where there is none.

    PyTorch's CPU tensors come from ``malloc``; glibc keeps freed blocks of a task's training for reuse,
    so without this the resident size grows by the transient peak of every task end. Called between
    tasks, where it costs a few milliseconds.
    """
    trim = _malloc_trim()
    return bool(trim is not None and trim(0))


@functools.cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
