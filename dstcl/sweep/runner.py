"""A whole sweep: plan the runs, skip the finished ones, execute the rest, summarise.

The output folder holds one directory per run, named by the hash of its resolved config, plus
``sweep.json`` (the runs of the latest sweep into it and how each ended). Because a run's directory
is a function of its config, rerunning a sweep (after a crash, a Ctrl-C, a fix, or with more seeds
or values added to the grid) does only what is missing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import DstclError
from ..files import atomic_write_json
from ..run.environment import available_cpus, default_threads
from ..run.rundir import is_locked
from .grid import Grid, check_resource, load_grid
from .jobs import Outcome, can_resume, holds_other_run, prepare_job, skipped_outcome
from .lock import sweep_lock
from .plan import DONE, RunSpec, plan_runs, run_status

EXECUTORS = ("local", "ray")


@dataclass
class SweepResult:
    grid: Grid
    specs: list[RunSpec]
    outcomes: list[Outcome]  # in grid order; empty for a dry run

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]


def load_plan(grid_path: str | Path, overrides: Mapping[str, Any] | None = None) -> tuple[Grid, list[RunSpec]]:
    grid = load_grid(grid_path, overrides)
    return grid, plan_runs(grid)


def run_sweep(
    grid_path: str | Path,
    out: str | Path,
    *,
    dry_run: bool = False,
    jobs: int = 1,
    executor: str = "local",
    address: str | None = None,
    cpus: float | None = None,
    gpus: float | None = None,
    tensorboard: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    fresh: bool = False,
    echo: Callable[[str], None] = print,
) -> SweepResult:
    """Run (or, with ``dry_run``, list) every run of the grid not yet completed under ``out``.

    A run folder holding another configuration's work is left alone (that run fails, saying so) unless
    ``fresh``. Each run computes with the thread count its grid (or ``--set threads=N``) gives; without
    one, with the CPUs it may use, as a ``dstcl run`` would, so a run repeats exactly outside the sweep.
    """
    if executor not in EXECUTORS:
        raise DstclError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}.")
    if jobs < 1:
        raise DstclError(f"--jobs must be at least 1, got {jobs}.")
    check_executor_options(executor, address, cpus, gpus)
    grid, specs = load_plan(grid_path, overrides)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DstclError(f"--out {out} is a file; give a folder for the run directories.")
    with contextlib.ExitStack() as held:
        if not dry_run:  # a dry run creates nothing and reads only
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DstclError(f"cannot create the output folder {out}: {exc.strerror}.") from None
            held.enter_context(sweep_lock(out))  # before any status is read: one sweep per folder
        statuses = {spec.id: run_status(spec.run_dir(out)) for spec in specs}
        todo = [spec for spec in specs if statuses[spec.id] != DONE]
        echo(f"{grid.name or grid.source}: {len(specs)} runs, {len(specs) - len(todo)} already completed, "
             f"{len(todo)} to run (output: {out})")
        if dry_run:
            echo(format_plan(specs, statuses, out, fresh))
            return SweepResult(grid, specs, [])
        if executor == "local" and jobs > 1:
            threads = [spec.config.run.threads or default_threads() for spec in todo]
            if threads and jobs * max(threads) > available_cpus():
                echo(f"note: {jobs} runs at once x {max(threads)} thread(s) each on {available_cpus()} CPU(s): the "
                     "runs share cores (slower, same results). Set threads in the grid (--set threads=1) to avoid it.")
        write_manifest(out, grid, specs, statuses, {})
        ray_threads = None
        if executor == "ray":  # a Ray task's CPUs, not the node's, unless the grid says otherwise
            ray_threads = max(1, int(cpus if cpus is not None else grid.resources.get("cpus", 1.0)))
        job_list = [prepare_job(spec, out, tensorboard, fresh=fresh, threads=ray_threads) for spec in todo]
        progress = _Progress(len(job_list), echo)
        if not job_list:
            outcomes = []
        elif executor == "ray":
            from .ray_executor import run_ray

            cpus = cpus if cpus is not None else grid.resources.get("cpus", 1.0)
            gpus = gpus if gpus is not None else grid.resources.get("gpus")
            outcomes = run_ray(job_list, address=address, cpus=cpus, gpus=gpus, on_start=progress.started,
                               on_done=progress.done)
        else:
            from .local import run_local

            outcomes = run_local(job_list, jobs, on_start=progress.started, on_done=progress.done)
        by_id = {o.id: o for o in outcomes}
        ordered = [by_id.get(spec.id) or skipped_outcome(spec, out) for spec in specs]
        write_manifest(out, grid, specs, statuses, by_id)
        return SweepResult(grid, specs, ordered)


def check_executor_options(executor: str, address: str | None, cpus: float | None, gpus: float | None) -> None:
    """Reject Ray options given with the local executor, and per-run resources Ray would refuse, up front."""
    if executor != "ray":
        given = [flag for flag, value in (("--address", address), ("--cpus-per-run", cpus), ("--gpus-per-run", gpus))
                 if value is not None]
        if given:
            raise DstclError(
                f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to --executor ray; this sweep runs "
                f"with --executor {executor}, where {'it' if len(given) == 1 else 'they'} would be ignored. Add "
                "--executor ray, or drop the option (locally, --jobs N sets how many runs go at once)."
            )
        return
    for flag, kind, value in (("--cpus-per-run", "cpus", cpus), ("--gpus-per-run", "gpus", gpus)):
        if value is not None:
            message = check_resource(kind, value, flag)
            if message:
                raise DstclError(f"{message}. Nothing was run.")


def planned_action(spec: RunSpec, out: str | Path, status: str, fresh: bool = False) -> str:
    """What a sweep does with a run in the state ``status``: run, skip, resume, restart or refuse."""
    run_dir = spec.run_dir(out)
    if status == DONE:
        return "skip (completed)"
    if is_locked(run_dir):
        return "busy (running now)"
    if holds_other_run(run_dir, spec.id):
        return "discard other run" if fresh else "refuse (other settings)"
    if status == "new":
        return "run"
    return f"resume ({status})" if can_resume(run_dir, spec.id) else f"restart ({status})"


def format_plan(specs: Sequence[RunSpec], statuses: Mapping[str, str], out: str | Path, fresh: bool = False) -> str:
    """The dry-run listing: one line per run with what a sweep would do with it."""
    lines = [f"{'id':<12}  {'action':<22}  run"]
    for spec in specs:
        action = planned_action(spec, out, statuses.get(spec.id, "new"), fresh)
        lines.append(f"{spec.id:<12}  {action:<22}  {spec.label_text()}")
    return "\n".join(lines)


def format_summary(result: SweepResult) -> str:
    """The table printed at the end: every run, its status, time, ACC and, for failures, why."""
    lines = [f"{'id':<12}  {'status':<9}  {'time':>8}  {'ACC':>6}  run"]
    for o in result.outcomes:
        seconds = "-" if o.status == "skipped" else f"{o.seconds:.1f} s"
        acc = "-" if o.acc is None else f"{o.acc:.2f}"
        tail = f"  -- {o.message}" if o.status == "failed" and o.message else ""
        lines.append(f"{o.id:<12}  {o.status:<9}  {seconds:>8}  {acc:>6}  {o.label}{tail}")
    counts = {s: sum(1 for o in result.outcomes if o.status == s) for s in (DONE, "skipped", "failed")}
    lines.append(
        f"{len(result.outcomes)} runs: {counts[DONE]} completed now, {counts['skipped']} already completed, "
        f"{counts['failed']} failed."
    )
    if counts["failed"]:
        lines.append("Each failed run's output is in its sweep.log; run the sweep again to retry only those.")
    return "\n".join(lines)


def write_manifest(out: Path, grid: Grid, specs: Sequence[RunSpec], before: Mapping[str, str],
                   outcomes: Mapping[str, Outcome]) -> None:
    runs = []
    for spec in specs:
        outcome = outcomes.get(spec.id)
        status = outcome.status if outcome else ("skipped" if before.get(spec.id) == DONE else "pending")
        runs.append({"id": spec.id, "label": dict(spec.label), "origin": spec.origin, "status": status})
    atomic_write_json(out / "sweep.json", {"grid": grid.source, "name": grid.name, "description": grid.description,
                                           "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": runs})


class _Progress:
    """One line per started and finished run (thread-safe: executors call it from worker threads)."""

    def __init__(self, total: int, echo: Callable[[str], None]):
        self.total, self.echo = total, echo
        self.finished = 0
        self.lock = threading.Lock()

    def started(self, job) -> None:
        with self.lock:
            self.echo(f"start  {job.id}  {job.label}")

    def done(self, outcome: Outcome) -> None:
        with self.lock:
            self.finished += 1
            result = f"ACC {outcome.acc:.2f} %" if outcome.acc is not None else f"FAILED: {outcome.message}"
            self.echo(f"[{self.finished}/{self.total}] {outcome.status:<9} {outcome.id}  {outcome.label}  "
                      f"{result} ({outcome.seconds:.1f} s)")

