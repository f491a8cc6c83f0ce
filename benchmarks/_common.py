"""Helpers shared by the benchmark scripts: timing with warm-up, alternation and medians."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def alternate(fns: dict[str, Callable[[], None]], device: torch.device, rounds: int, reps: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per call of each function, measured in alternating rounds in one process."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            sync(device)
            times[name].append((time.perf_counter() - start) / reps)
    return {name: statistics.median(values) for name, values in times.items()}


def pick_device(arg: str) -> torch.device:
    if arg == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(arg)


def describe_machine() -> str:
    """One line naming the CPU (model, cores available, AVX-512 / bf16 support) and torch, for the record."""
    import os
    import platform

    model = platform.processor() or "unknown CPU"
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name") and model in ("", "unknown CPU", "x86_64"):
                    model = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    features = [name for name in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {name}" in flags]
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return (f"machine: {model}, {cpus} CPU(s) available, {' '.join(features) or 'no AVX2'}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread(s)")


def learner_in_task_1(model: torch.nn.Module, density: float = 0.2):
    """(learner, optimizer): ``model`` under a SparseLearner with task 0 learned and frozen (one step) and
    task 1 in progress, no topology update due, with dstcl's optimizer (fused Adam): a masked step as a
    run's second task takes it."""
    import warnings

    from dstcl.sparse import SparseConfig, SparseLearner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # capacity notes of the one-step task 0
        learner = SparseLearner(model, SparseConfig(density=density, growth="random", update_frequency=10**9),
                                num_tasks=2)
        learner.start_task(0, 1)
        learner.end_task()
    learner.start_task(1, 10**6)
    return learner, learner.make_optimizer("adam", lr=1e-3)
