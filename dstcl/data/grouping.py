"""Equal-size groups of mutually similar classes, and the class orders built from them.

:func:`equal_groups` splits C classes into G groups of C/G classes that maximise the summed similarity of
the pairs inside a group. Two steps, both deterministic (no seed: a matrix gives one grouping):

1. **greedy seeding**: the unassigned class whose C/G - 1 most similar unassigned classes are most
   similar to it (the densest spot left) starts a group with exactly those classes; repeat;
2. **swap refinement** (Kernighan-Lin style local search): swap the two classes of different groups
   whose exchange raises the objective most, until no swap raises it.

Why not agglomerative clustering: merging under a size cap strands fragments that cannot be combined
into groups of exactly C/G (3 + 3 with groups of 4), and repairing them undoes what the merges chose;
greedy seeding has equal sizes by construction, and the swaps undo its worst choice, the leftovers
that make up its last groups. Each swap strictly raises the objective, so the search ends.

The orders (``--class-order``):

* ``clustered``: T groups of C/T classes, one group per task: classes within a task alike, tasks far apart;
* ``interleaved``: C/T groups of T classes, and each task takes one class of every group: tasks alike.

Which group is which task (and, interleaved, which class of a group goes to which task) is drawn from
the seed, as ``random`` draws its permutation: seeds vary the sequence, not the grouping.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_SWAPS_PER_CLASS = 1000  # a guard far beyond what the search needs (it stops at a local optimum)


def equal_groups(matrix: np.ndarray, num_groups: int) -> list[list[int]]:
    """``num_groups`` groups of ``C / num_groups`` class indices (each sorted; groups by their first class)."""
    sim = np.array(matrix, dtype=np.float64)
    C = sim.shape[0]
    if num_groups < 1 or C % num_groups:
        raise ValueError(f"{C} classes cannot be split into {num_groups} groups of equal size")
    size = C // num_groups
    np.fill_diagonal(sim, 0.0)
    group = _greedy(sim, size)
    _refine(sim, group, num_groups)
    groups = [sorted(np.flatnonzero(group == g).tolist()) for g in range(num_groups)]
    return sorted(groups)


def _greedy(sim: np.ndarray, size: int) -> np.ndarray:
    C = sim.shape[0]
    group = np.full(C, -1, dtype=np.int64)
    g = 0
    while (group < 0).any():
        free = np.flatnonzero(group < 0)
        sub = sim[np.ix_(free, free)].copy()
        np.fill_diagonal(sub, -np.inf)
        # each candidate's size-1 most similar free classes (stable: ties go to the lower class index)
        order = np.argsort(-sub, axis=1, kind="stable")[:, : size - 1]
        density = np.take_along_axis(sub, order, axis=1).sum(axis=1) if size > 1 else np.zeros(len(free))
        seed = int(np.argmax(density))
        group[free[[seed, *order[seed].tolist()]]] = g
        g += 1
    return group


def _refine(sim: np.ndarray, group: np.ndarray, num_groups: int) -> None:
    """Best-improvement swaps between groups, in place (``sim`` has a zero diagonal)."""
    C = sim.shape[0]
    if num_groups < 2 or num_groups == C:
        return
    onehot = np.zeros((C, num_groups))
    onehot[np.arange(C), group] = 1.0
    to_group = sim @ onehot  # [i, g]: summed similarity of class i to the members of group g
    for _ in range(MAX_SWAPS_PER_CLASS * C):
        to_other = to_group[:, group]  # [i, j]: of i to the group of j
        own = to_group[np.arange(C), group]  # of i to its own group
        gain = to_other + to_other.T - 2.0 * sim - own[:, None] - own[None, :]
        gain[group[:, None] == group[None, :]] = -np.inf
        best = int(np.argmax(gain))
        i, j = divmod(best, C)
        if not gain[i, j] > 1e-12:
            return
        a, b = group[i], group[j]
        to_group[:, a] += sim[:, j] - sim[:, i]
        to_group[:, b] += sim[:, i] - sim[:, j]
        group[i], group[j] = b, a


def within_score(matrix: np.ndarray, groups: list[list[int]]) -> float:
    """The objective: the summed similarity of the pairs of distinct classes inside a group."""
    return float(sum((matrix[np.ix_(g, g)].sum() - np.trace(matrix[np.ix_(g, g)])) / 2.0 for g in groups))


def clustered_order(matrix: np.ndarray, num_tasks: int, seed: int) -> list[list[int]]:
    """Each task one group of similar classes; the task order of the groups drawn from ``seed``."""
    groups = equal_groups(matrix, num_tasks)
    order = torch.randperm(num_tasks, generator=torch.Generator().manual_seed(seed)).tolist()
    return [groups[g] for g in order]


def interleaved_order(matrix: np.ndarray, num_tasks: int, seed: int) -> list[list[int]]:
    """Each task one class of every group of ``num_tasks`` similar classes; which class to which task drawn
    from ``seed`` (per group), a task's classes in group order."""
    per_task = matrix.shape[0] // num_tasks
    groups = equal_groups(matrix, per_task)
    generator = torch.Generator().manual_seed(seed)
    tasks: list[list[int]] = [[] for _ in range(num_tasks)]
    for members in groups:
        for t, k in enumerate(torch.randperm(num_tasks, generator=generator).tolist()):
            tasks[t].append(members[k])
    return tasks


def adjusted_rand(a: list[int], b: list[int]) -> float:
    """Adjusted Rand index of two labelings of the same items (1: the same partition, about 0: chance)."""
    _, ia = np.unique(a, return_inverse=True)
    _, ib = np.unique(b, return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1))
    np.add.at(table, (ia, ib), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    index, rows, cols, total = pairs(table), pairs(table.sum(1)), pairs(table.sum(0)), len(a) * (len(a) - 1) / 2
    expected = rows * cols / total if total else 0.0
    top = (rows + cols) / 2 - expected
    return float((index - expected) / top) if top else 1.0
