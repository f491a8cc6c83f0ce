"""One run of a sweep as a job: a ``dstcl run`` subprocess writing into the run's hash directory.

A subprocess (not a thread or an in-process call) so that a crash, an out-of-memory kill or a CUDA
error in one run cannot take the sweep down, and so that each run starts from a clean interpreter,
seeded the same way as when it is launched by hand. Used by both executors (local and Ray).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..io import atomic_write_json
from ..hashing import config_hash
from .plan import DONE, RunSpec, run_status

CONFIG_NAME = "sweep-config.json"  # the resolved config the run was started with
LOG_NAME = "sweep.log"  # stdout and stderr of every attempt, appended
KEEP_ON_RETRY = frozenset({LOG_NAME})


@dataclass(frozen=True)
class Job:
    """Everything needed to execute one run anywhere the output folder is mounted (picklable for Ray)."""

    id: str
    label: str
    run_dir: str
    args: tuple[str, ...]  # arguments after ``python -m dstcl.cli.main``
    uses_cuda: bool  # the run's device is auto or cuda, so CUDA_VISIBLE_DEVICES picks its GPU
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return Path(self.run_dir) / LOG_NAME


@dataclass(frozen=True)
class Outcome:
    id: str
    label: str
    status: str  # completed | failed | skipped (already completed before this sweep)
    seconds: float = 0.0
    returncode: int | None = None
    acc: float | None = None
    message: str = ""


def prepare_job(spec: RunSpec, out: str | Path, tensorboard: str | Path | None = None) -> Job:
    """Make the run directory ready and return its job: resume, or start (again) from scratch.

    An unfinished run that left checkpoints of this very config is resumed (``dstcl run --resume``:
    the result equals an uninterrupted run's). Otherwise the unfinished attempt's outputs are removed
    (its log is kept; attempts are appended) and the run starts from the resolved config written beside
    them, so it can also be repeated by hand with ``dstcl run --config``. A directory locked by a run
    still in progress (another sweep) is left alone; its job then fails with "still running".
    """
    run_dir = spec.run_dir(out).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    extra = ["--tensorboard", str(Path(tensorboard).resolve())] if tensorboard is not None else []
    uses_cuda = spec.config.device in ("auto", "cuda")
    if is_locked(run_dir) or can_resume(run_dir, spec.id):
        args = ["run", "--resume", str(run_dir), "--no-progress", *extra]
        return Job(spec.id, spec.label_text(), str(run_dir), tuple(args), uses_cuda)
    for child in run_dir.iterdir():
        if child.name in KEEP_ON_RETRY:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()
    config = spec.config.as_dict()
    if config.get("data_dir"):
        config["data_dir"] = str(Path(config["data_dir"]).expanduser().resolve())
    config["progress"] = False
    config_path = run_dir / CONFIG_NAME
    atomic_write_json(config_path, config)
    args = ["run", "--config", str(config_path), "--run-dir", str(run_dir), "--no-progress", *extra]
    return Job(spec.id, spec.label_text(), str(run_dir), tuple(args), uses_cuda)


def can_resume(run_dir: Path, run_id: str) -> bool:
    """True when ``run_dir`` holds checkpoints of an unfinished run whose config hashes to ``run_id``."""
    folder = run_dir / "checkpoints"
    if run_status(run_dir) == DONE or not folder.is_dir() or not any(folder.glob("ckpt-*.pt")):
        return False
    try:
        saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and config_hash(saved) == run_id


def is_locked(run_dir: Path) -> bool:
    """True while a ``dstcl run`` process holds the run's ``run.lock`` (see dstcl.rundir.RunDir.lock)."""
    path = run_dir / "run.lock"
    if not path.exists():
        return False
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def execute_job(
    job: Job,
    extra_env: Mapping[str, str] | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> Outcome:
    """Run ``job`` to the end (blocking) with its output appended to its log; never raises for a failed run."""
    env = {**os.environ, **job.env, **(extra_env or {})}
    command = [sys.executable, "-m", "dstcl.cli.main", *job.args]
    started = time.time()
    with open(job.log, "a", encoding="utf-8") as log:
        log.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        if extra_env:
            log.write(f"=== environment: {' '.join(f'{k}={v}' for k, v in sorted(extra_env.items()))}\n")
        log.flush()
        try:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            return Outcome(job.id, job.label, "failed", 0.0, None, None, f"could not start: {exc}")
        if on_start is not None:
            on_start(process)
        try:
            returncode = process.wait()
        except BaseException:  # Ctrl-C or a cancelled Ray task: do not leave the run behind
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    return finished_outcome(job, returncode, time.time() - started)


def finished_outcome(job: Job, returncode: int | None, seconds: float) -> Outcome:
    """Judge a run by its metrics.json (completed or not), not only by its exit status."""
    if run_status(job.run_dir) == DONE:
        return Outcome(job.id, job.label, DONE, seconds, returncode, read_acc(job.run_dir))
    return Outcome(job.id, job.label, "failed", seconds, returncode, None, last_line(job.log) or f"exit status {returncode}")


def skipped_outcome(spec: RunSpec, out: str | Path) -> Outcome:
    return Outcome(spec.id, spec.label_text(), "skipped", acc=read_acc(spec.run_dir(out)), message="already completed")


def read_acc(run_dir: str | Path) -> float | None:
    try:
        value = json.loads((Path(run_dir) / "metrics.json").read_text(encoding="utf-8")).get("acc")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def last_line(path: Path, limit: int = 300) -> str:
    """The last non-empty line of a log (usually the error), shortened to ``limit`` characters."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 8192))
            tail = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip() and not line.startswith("===")]
    starts = [i for i, line in enumerate(lines) if line.startswith("dstcl: error:")]
    if starts:  # the CLI wraps its one-paragraph error over several lines
        text = " ".join(lines[starts[-1]:])
    else:
        text = lines[-1] if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."
