"""Schedules of a DST run: how much to drop at a topology update, and when to update.

Small immutable objects with a ``__call__``; the learner asks them by step number (the number of
optimizer steps taken in the current task), so they hold no mutable state and resume trivially.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class CosineDecay:
    """Drop fraction decaying from ``initial`` to ``final`` along a half cosine over ``total_steps``.

    Matches the reference code, which anneals the drop rate with ``CosineAnnealingLR`` stepped once
    per optimizer step over all steps of the task (``eta_min = 0.005``).
    """

    initial: float = 0.5
    total_steps: int = 1
    final: float = 0.005

    def __post_init__(self) -> None:
        _check_fraction("drop_rate", self.initial)
        _check_fraction("final_drop_rate", self.final)
        if int(self.total_steps) < 1:
            raise ConfigError(f"the drop schedule needs at least one step, got total_steps={self.total_steps}.")

    def __call__(self, step: int) -> float:
        t = min(max(step, 0), self.total_steps) / self.total_steps
        return self.final + 0.5 * (self.initial - self.final) * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class ConstantRate:
    """The same drop fraction at every update."""

    rate: float = 0.3

    def __post_init__(self) -> None:
        _check_fraction("drop_rate", self.rate)

    def __call__(self, step: int) -> float:
        return self.rate


@dataclass(frozen=True)
class UpdateEvery:
    """A topology update after every ``frequency`` optimizer steps (steps counted from 1).

    ``frequency`` 0 means never: static sparse training (each task keeps its initial topology).
    """

    frequency: int = 100

    def __post_init__(self) -> None:
        if isinstance(self.frequency, bool) or not isinstance(self.frequency, int) or self.frequency < 0:
            raise ConfigError(f"update_frequency must be a non-negative integer (0 = no topology updates), "
                              f"got {self.frequency!r}.")

    def due(self, step: int) -> bool:
        return self.frequency > 0 and step > 0 and step % self.frequency == 0

    def count(self, total_steps: int) -> int:
        """How many updates a task of ``total_steps`` optimizer steps gets."""
        return total_steps // self.frequency if self.frequency > 0 else 0


FEW_UPDATES = 3  # fewer topology updates per task than this is a warning (dstcl run)


def check_update_count(frequency: int, total_steps: int, task: int, steps_text: str | None = None) -> int:
    """The topology updates a task of ``total_steps`` optimizer steps gets; none at all, with updates asked
    for, is refused (the growth criterion would have no effect), in the library as in ``dstcl run``."""
    count = UpdateEvery(frequency).count(total_steps)
    if frequency > 0 and count == 0:
        best = max(1, total_steps // FEW_UPDATES)
        raise ConfigError(
            f"update_frequency {frequency} gives task {task} no topology update at all "
            f"({steps_text or f'{total_steps} optimizer steps'}), so the growth criterion would have no effect. Use a "
            f"smaller --update-frequency (at most {best} gives {FEW_UPDATES} updates per task), or --method static "
            "(or --update-frequency 0) for static sparse training (each task keeps its initial topology)."
        )
    return count


DROP_SCHEDULES: Registry[type] = Registry("drop schedule")
DROP_SCHEDULES.register("cosine", CosineDecay, help="from drop_rate down to final_drop_rate, as the reference")
DROP_SCHEDULES.register("constant", ConstantRate, help="drop_rate at every update")


def make_drop_schedule(kind: str, drop_rate: float, total_steps: int, final: float = 0.005):
    """Build a drop schedule by name (``cosine`` or ``constant``)."""
    cls = DROP_SCHEDULES.get(kind)
    if cls is CosineDecay:
        return CosineDecay(initial=drop_rate, total_steps=max(int(total_steps), 1), final=final)
    return ConstantRate(rate=drop_rate)


def _check_fraction(what: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= float(value) <= 1.0):
        raise ConfigError(f"{what} must be a fraction in [0, 1], got {value!r}.")
