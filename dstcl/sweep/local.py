"""Run jobs on this machine, N at a time, one GPU per run when there are GPUs.

Each worker slot keeps its GPU for its whole life, so with ``--jobs`` equal to the number of GPUs
every run has a device of its own (``CUDA_VISIBLE_DEVICES`` is set per run). CPU threads are not
derived from ``--jobs``: a run's thread count is part of its config (``threads``), because it changes
floating-point results, and a run must repeat exactly inside and outside a sweep.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Callable, Sequence

from .jobs import Job, Outcome, execute_job


def visible_gpus() -> list[str]:
    """The GPU ids runs may use: ``CUDA_VISIBLE_DEVICES`` when set, else every CUDA device torch sees."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        ids = [part.strip() for part in value.split(",") if part.strip()]
        return [] if ids and ids[0] == "-1" else ids
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    except Exception:  # noqa: BLE001 - no usable CUDA means CPU runs
        return []


def slot_environment(slot: int, jobs: int, job: Job, gpus: Sequence[str]) -> dict[str, str]:
    """Environment additions for the run in worker ``slot`` (pure; see the module docstring)."""
    if gpus and job.uses_cuda:
        return {"CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]}
    return {}


def stop_all(processes: Sequence[subprocess.Popen], grace: float = 30.0) -> None:
    """Wait up to ``grace`` seconds for terminated ``processes`` to end, then kill those still there."""
    for process in processes:
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_local(
    jobs: Sequence[Job],
    parallel: int,
    *,
    on_start: Callable[[Job], None] = lambda job: None,
    on_done: Callable[[Outcome], None] = lambda outcome: None,
    gpus: Sequence[str] | None = None,
) -> list[Outcome]:
    """Execute ``jobs`` with at most ``parallel`` at once; returns their outcomes in completion order.

    On Ctrl-C (or SIGTERM, which the CLI turns into a KeyboardInterrupt) the runs still going are stopped,
    and waited for, and the KeyboardInterrupt is raised again; their directories stay unfinished, so the
    next sweep resumes them.
    """
    gpus = visible_gpus() if gpus is None else list(gpus)
    parallel = max(1, min(parallel, len(jobs))) if jobs else 1
    slots: queue.Queue[int] = queue.Queue()
    for slot in range(parallel):
        slots.put(slot)
    processes: set[subprocess.Popen] = set()
    lock = threading.Lock()
    stopping = threading.Event()

    def register(process: subprocess.Popen) -> None:
        with lock:
            processes.add(process)
            if stopping.is_set():  # started while the sweep was being stopped: stop it too
                process.terminate()

    def work(job: Job) -> Outcome:
        slot = slots.get()
        try:
            on_start(job)
            return execute_job(job, slot_environment(slot, parallel, job, gpus), register)
        finally:
            slots.put(slot)

    outcomes: list[Outcome] = []
    pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="dstcl-sweep")
    pending: set[Future] = {pool.submit(work, job) for job in jobs}
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                outcome = future.result()
                outcomes.append(outcome)
                on_done(outcome)
    except KeyboardInterrupt:
        for future in pending:
            future.cancel()
        with lock:
            stopping.set()
            running = [process for process in processes if process.poll() is None]
            for process in running:
                process.terminate()  # each run writes metrics.json saying interrupted, then exits
        stop_all(running)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return outcomes
