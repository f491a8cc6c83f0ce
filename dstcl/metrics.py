"""Continual-learning metrics over an accuracy matrix (pure functions; formulas in docs/metrics.md).

``R[i][j]`` is the accuracy (percent) on task ``j`` after learning tasks ``0..i``; ``R`` is T x T, a
list of lists or a numpy array, with ``None`` or NaN where an entry was not evaluated. Above the
diagonal (``j > i``) dstcl stores task j's test set through task i's mask and head, which is what the
reference code's forward transfer uses.

Missing entries are never silently skipped: a metric that needs a missing entry is ``None``
(undefined), so a number is always computed from the full set of pairs its formula names.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Matrix = Sequence[Sequence["float | None"]] | np.ndarray

# What each summary figure is, in words and units: the one place the console, summary.md and reports read.
LABELS = {
    "acc": "ACC (%)",
    "bwt": "BWT (points)",
    "fwt": "FWT vs untrained (GEM, points)",
    "fwt_reference": "future-task accuracy (reference 'FWT', %)",
    "task_inference_accuracy": "task-inference accuracy, task not given (%)",
    "class_incremental_accuracy": "class-incremental accuracy, task not given (%)",
}
SHORT_LABELS = {"acc": "ACC", "bwt": "BWT", "fwt": "FWT(GEM)", "fwt_reference": "future-task acc",
                "task_inference_accuracy": "task-inference acc", "class_incremental_accuracy": "class-IL acc"}


def as_matrix(R: Matrix) -> np.ndarray:
    """``R`` as a float64 T x T array with NaN for missing entries; ValueError if it is not square."""
    try:
        rows = [list(row) for row in R]
    except TypeError:
        raise ValueError("the accuracy matrix must be a square T x T matrix (a list of T rows of T "
                         "entries or a 2-D array); got something that is not a list of rows") from None
    T = len(rows)
    if T == 0:
        raise ValueError("the accuracy matrix is empty; it needs at least one task (1 x 1)")
    for i, row in enumerate(rows):
        if len(row) != T:
            raise ValueError(f"the accuracy matrix must be square (T x T): it has {T} rows but row {i} has "
                             f"{len(row)} entries")
    out = np.empty((T, T), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            out[i, j] = _number(v, f"R[{i}][{j}]")
    return out


def acc(R: Matrix) -> float | None:
    """Average accuracy after the last task: mean_j R[T-1][j]."""
    m = as_matrix(R)
    return _mean(m[-1])


def bwt(R: Matrix) -> float | None:
    """Backward transfer: mean_{j<T-1} (R[T-1][j] - R[j][j]); None for T = 1. Negative = forgetting."""
    m = as_matrix(R)
    T = len(m)
    if T < 2:
        return None
    return _mean(m[-1, : T - 1] - np.diag(m)[: T - 1])


def fwt(R: Matrix, baseline: Sequence[float | None] | np.ndarray | None) -> float | None:
    """Forward transfer as in GEM: mean_{j>=1} (R[j-1][j] - b[j]).

    ``baseline[j]`` is the accuracy of the untrained (randomly initialised) network on task j. None
    when T = 1 or no baseline is given.
    """
    m = as_matrix(R)
    T = len(m)
    if baseline is None:
        return None
    b = _vector(baseline, T, "baseline")
    if T < 2:
        return None
    return _mean(np.array([m[j - 1, j] - b[j] for j in range(1, T)]))


def fwt_reference(R: Matrix) -> float | None:
    """The reference code's "FWT": mean over i < T-1 of f_i = mean_{j>i} R[i][j].

    R[i][j] for j > i is task j's test set through task i's mask and head, so this is the accuracy of
    future tasks on the current subnetwork, not a difference to a baseline. None for T = 1.
    """
    m = as_matrix(R)
    T = len(m)
    if T < 2:
        return None
    per_row = [_mean(m[i, i + 1 :]) for i in range(T - 1)]
    if any(f is None for f in per_row):
        return None
    return float(np.mean(per_row))


def incremental_accuracy(R: Matrix) -> list[float | None]:
    """Entry i: mean_{j<=i} R[i][j], the average accuracy over tasks seen so far after learning task i."""
    m = as_matrix(R)
    return [_mean(m[i, : i + 1]) for i in range(len(m))]


def final_incremental(R: Matrix) -> list[float | None]:
    """Entry i: mean_{j<=i} R[T-1][j], the running mean over the final row (the reference's
    "incremental accuracy"); its last entry equals ACC."""
    m = as_matrix(R)
    return [_mean(m[-1, : i + 1]) for i in range(len(m))]


def per_task_accuracy(R: Matrix) -> list[list[float | None]]:
    """Entry j: the accuracy curve of task j, [R[j][j], R[j+1][j], ..., R[T-1][j]]."""
    m = as_matrix(R)
    return [[_value(m[i, j]) for i in range(j, len(m))] for j in range(len(m))]


def summarize(R: Matrix, baseline: Sequence[float | None] | np.ndarray | None = None) -> dict:
    """JSON-friendly summary: ``acc``, ``bwt``, ``fwt``, ``fwt_reference``, ``incremental_accuracy``
    (floats or lists of floats, None where undefined)."""
    return {
        "acc": acc(R),
        "bwt": bwt(R),
        "fwt": fwt(R, baseline),
        "fwt_reference": fwt_reference(R),
        "incremental_accuracy": incremental_accuracy(R),
    }


def _number(v: object, where: str) -> float:
    if v is None:
        return math.nan
    if isinstance(v, (str, bytes)):
        raise ValueError(f"{where} must be a number or None, got {v!r}")
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be a number or None, got {v!r}") from None


def _vector(values: Sequence[float | None] | np.ndarray, T: int, what: str) -> np.ndarray:
    try:
        items = list(values)
    except TypeError:
        raise ValueError(f"{what} must be a sequence of {T} numbers (one per task), got {values!r}") from None
    if len(items) != T:
        raise ValueError(f"{what} must have one entry per task: the accuracy matrix has {T} tasks, "
                         f"{what} has {len(items)} entries")
    return np.array([_number(v, f"{what}[{j}]") for j, v in enumerate(items)], dtype=np.float64)


def _mean(values: np.ndarray) -> float | None:
    """Mean of ``values``; None if empty or if any entry is missing (NaN)."""
    if values.size == 0 or np.isnan(values).any():
        return None
    return float(np.mean(values))


def _value(v: float) -> float | None:
    return None if math.isnan(v) else float(v)
