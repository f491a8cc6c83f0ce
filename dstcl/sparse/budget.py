"""A task's budget per layer (weights, or whole channels), and whether T tasks fit side by side without reuse.

With ``reuse="on"`` (the paper) a task's subnetwork may include earlier tasks' weights read-only, so any
budget fits. With ``reuse="off"`` every task takes only free weights (PackNet without sharing): task t
starts after t tasks each took its own ``k_l`` weights of layer l, so T tasks fit only when
``T * k_l <= n_l`` in every layer (channels: ``T * c_l <= C_l``). That is checked from the layer shapes
and the number of tasks before anything trains (``dstcl run`` and ``--check`` build the learner before
the run folder), and a failure names the layer and the sparsity that would fit. The check holds in the
worst case: a task owns at most its ``k_l`` weights of a layer (the classifier: only those in its own
rows, fewer), so the free weights never run out mid-run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import ConfigError
from .config import SparseConfig
from .density import layer_counts, layer_densities
from .structure import channel_counts, fan_in

Shapes = Mapping[str, Sequence[int]]


@dataclass(frozen=True)
class Budget:
    """What each layer gives one task."""

    counts: dict[str, int]  # active weights
    densities: dict[str, float]  # counts="bernoulli": the probability of each position ({} otherwise)
    channels: dict[str, int]  # structure="channel": active output channels of each hidden layer


def task_budget(shapes: Shapes, config: SparseConfig, heads: Sequence[str] = (), num_tasks: int | None = None
                ) -> Budget:
    """The per-task budget of every layer under ``config`` (``heads``: classifier layers, never channels).

    With ``reuse="off"`` and ``num_tasks``, a layer whose exact share fits ``num_tasks`` times but whose
    rounded count does not (uniform 90 % of 9,408 weights: 940.8 rounds to 941, and 10 x 941 > 9,408) is
    rounded down to its room and the weight goes to the layer with the largest remainder that has room,
    so 90 % fits 10 tasks; the total stays exact where other layers have room (:func:`_rounded_into_room`)."""
    counts = layer_counts(shapes, config.density, config.init, power_scale=config.erk_power_scale)
    rule = layer_densities(shapes, config.density, config.init, power_scale=config.erk_power_scale)
    densities = rule if config.counts == "bernoulli" else {}  # Bernoulli counts: drawn per position
    without_reuse = config.reuse == "off" and num_tasks is not None
    if without_reuse:
        counts = _rounded_into_room(shapes, counts, rule, num_tasks)
    channels: dict[str, int] = {}
    if config.structure == "channel":
        hidden = {n: s for n, s in shapes.items() if n not in heads}
        channels = channel_counts(hidden, rule)
        if without_reuse:  # the same for channels: rounding alone never refuses a layer
            channels = {n: min(c, int(hidden[n][0]) // num_tasks) if rule[n] * num_tasks <= 1.0 + 1e-9 else c
                        for n, c in channels.items()}
        counts.update({n: c * fan_in(shapes[n]) for n, c in channels.items()})
    return Budget(counts, densities, channels)


def _rounded_into_room(shapes: Shapes, counts: dict[str, int], rule: Mapping[str, float], num_tasks: int
                       ) -> dict[str, int]:
    """Counts moved by rounding above ``size // num_tasks`` go back to it; the weights freed go, one each, to
    the layers with room and the largest remainders (names break ties). Layers whose exact share is above
    the room keep their count (:func:`check_room_without_reuse` refuses them)."""
    counts = dict(counts)
    room = {n: math.prod(s) // num_tasks for n, s in shapes.items()}
    exact = {n: min(rule[n], 1.0) * math.prod(s) for n, s in shapes.items()}
    freed = 0
    for name in shapes:
        if counts[name] > room[name] >= 1 and exact[name] <= math.prod(shapes[name]) / num_tasks + 1e-6:
            freed += counts[name] - room[name]
            counts[name] = room[name]
    takers = sorted((n for n in shapes if counts[n] < room[n]), key=lambda n: (-round(exact[n] - counts[n], 9), n))
    for name in takers[:freed]:
        counts[name] += 1
    return counts


def overfull(shapes: Shapes, budget: Budget, num_tasks: int) -> list[tuple[str, int, int, str]]:
    """Layers where ``num_tasks`` disjoint budgets do not fit: (name, per task, available, unit)."""
    out = []
    for name, shape in shapes.items():
        if name in budget.channels:
            each, size, unit = budget.channels[name], int(shape[0]), "output channels"
        else:
            each, size, unit = budget.counts[name], math.prod(shape), "weights"
        if num_tasks * each > size:
            out.append((name, each, size, unit))
    return out


def fitting_sparsity(shapes: Shapes, config: SparseConfig, heads: Sequence[str], num_tasks: int) -> float | None:
    """The lowest sparsity (3 decimals) at which ``num_tasks`` disjoint budgets fit under ``config``'s rule,
    or None when none does (a layer with fewer weights than tasks)."""
    def fits(density: float) -> bool:
        budget = task_budget(shapes, dataclasses.replace(config, density=density), heads, num_tasks)
        return not overfull(shapes, budget, num_tasks)

    low, high = 1e-9, min(1.0, 1.0 / num_tasks)
    if not fits(low):
        return None
    if fits(high):
        low = high
    for _ in range(50):  # the largest density that fits, from below
        middle = (low + high) / 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    sparsity = math.ceil(round((1.0 - low) * 1000, 6)) / 1000
    while sparsity < 1.0 and not fits(round(1.0 - sparsity, 12)):
        sparsity = round(sparsity + 0.001, 3)
    return sparsity if sparsity < 1.0 else None


def check_room_without_reuse(shapes: Shapes, config: SparseConfig, heads: Sequence[str], num_tasks: int) -> None:
    """``reuse="off"``: a ConfigError naming the first layer where ``num_tasks`` tasks do not fit side by side."""
    full = overfull(shapes, task_budget(shapes, config, heads, num_tasks), num_tasks)
    if not full:
        return
    name, each, size, unit = full[0]
    others = f" (and {len(full) - 1} more layer(s))" if len(full) > 1 else ""
    fit = fitting_sparsity(shapes, config, heads, num_tasks)
    advice = (f"sparsity {fit:.3f} or more fits with --init {config.init}" if fit is not None else
              f"no sparsity fits with --init {config.init}")
    if config.init != "uniform":
        uniform = fitting_sparsity(shapes, dataclasses.replace(config, init="uniform"), heads, num_tasks)
        if uniform is not None:
            advice += f", {uniform:.3f} or more with --init uniform ({config.init} keeps small layers denser)"
    raise ConfigError(
        f"--reuse off: layer {name} has {size:,} {unit}, but each of the {num_tasks} tasks takes {each:,} of them "
        f"({num_tasks * each:,} in all){others}, and without reuse every task needs its own free ones. "
        f"{advice[0].upper()}{advice[1:]}; or learn fewer tasks, or use --reuse on."
    )
