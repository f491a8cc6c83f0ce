"""One run of a sweep as a job: a ``dstcl run`` subprocess writing into the run's hash directory.

A subprocess (not a thread or an in-process call) so that a crash, an out-of-memory kill or a CUDA
error in one run cannot take the sweep down, and so that each run starts from a clean interpreter,
seeded the same way as when it is launched by hand. Used by both executors (local and Ray).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..files import atomic_write_json
from ..run.hashing import config_hash
from ..run.rundir import COMPLETED, METRICS, SWEEP_CONFIG, SWEEP_LOG, is_run_dir, read_config, run_status
from .plan import RunSpec

CONFIG_NAME = SWEEP_CONFIG  # the resolved config the run was started with
LOG_NAME = SWEEP_LOG  # stdout and stderr of every attempt, appended
DONE = COMPLETED


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


def prepare_job(spec: RunSpec, out: str | Path, tensorboard: str | Path | None = None, *,
                fresh: bool = False, threads: int | None = None) -> Job:
    """Write the run's resolved config beside it and return its job: ``dstcl run --config ... --run-dir``.

    The run itself applies the one rule for a folder that already holds a run (``dstcl.run.reuse``): the
    same settings unfinished are resumed (the result equals an uninterrupted run's), other settings are
    refused unless ``fresh`` (the sweep's ``--fresh``), so finished work is never discarded silently.
    ``threads`` (the sweep's ``--threads``) applies to runs whose grid sets no thread count.
    """
    run_dir = spec.run_dir(out).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    extra = ["--tensorboard", str(Path(tensorboard).resolve())] if tensorboard is not None else []
    uses_cuda = spec.config.run.device in ("auto", "cuda")
    config = spec.config.flat()
    if config.get("data_dir"):
        config["data_dir"] = str(Path(config["data_dir"]).expanduser().resolve())
    config["progress"] = False
    if config.get("threads") is None and threads is not None:
        config["threads"] = threads
    config_path = run_dir / CONFIG_NAME
    atomic_write_json(config_path, config)
    args = ["run", "--config", str(config_path), "--run-dir", str(run_dir), "--no-progress", *extra]
    if fresh:
        args.append("--fresh")
    return Job(spec.id, spec.label_text(), str(run_dir), tuple(args), uses_cuda)


def can_resume(run_dir: Path, run_id: str) -> bool:
    """True when ``run_dir`` holds an unfinished run whose config hashes to ``run_id``."""
    if run_status(run_dir) == DONE or not is_run_dir(run_dir):
        return False
    try:
        return config_hash(read_config(run_dir)) == run_id
    except Exception:  # noqa: BLE001 - an unreadable config.json is not resumable
        return False


def holds_other_run(run_dir: Path, run_id: str) -> bool:
    """True when ``run_dir`` holds the work of a run with other settings (its config.json hashes elsewhere)."""
    if not is_run_dir(run_dir):
        return False
    try:
        return config_hash(read_config(run_dir)) != run_id
    except Exception:  # noqa: BLE001
        return True


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
        value = json.loads((Path(run_dir) / METRICS).read_text(encoding="utf-8")).get("acc")
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
