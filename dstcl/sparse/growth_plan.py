"""Which growth criterion each task uses: one criterion, or a per-task schedule.

Syntax (tasks are numbered from 0, ranges are inclusive)::

    SPEC  := ITEM ("," ITEM)*
    ITEM  := NAME | NAME "@" RANGE
    RANGE := INT | INT "-" INT | INT "-"        # "5-" means task 5 to the end

An item without a range is the default for every task no range covers (at most one default).

Examples::

    gradient                    every task uses gradient growth
    random@0-4,gradient         tasks 0-4 random, the rest gradient (the paper's adaptive run)
    random@0-4,gradient@5-9     the same, spelled out for 10 tasks
    auto                        chosen at every topology update by a bandit (dstcl.sparse.auto)
    unfired@0,momentum@1-       task 0 unfired, tasks 1 onwards momentum
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ConfigError
from .criteria import GROW

_ITEM = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:@\s*(\d+)\s*(?:(-)\s*(\d+)?)?)?\s*$")


@dataclass(frozen=True)
class GrowthPlan:
    """An ordered list of (first task, last task or None for open-ended, criterion) plus a default."""

    ranges: tuple[tuple[int, int | None, str], ...]
    default: str | None
    spec: str

    def for_task(self, task: int) -> str:
        for first, last, name in self.ranges:
            if first <= task and (last is None or task <= last):
                return name
        if self.default is None:
            raise ConfigError(
                f"growth schedule {self.spec!r} names no criterion for task {task}; add a default "
                "item without '@' (e.g. '...,gradient') or extend a range."
            )
        return self.default

    def validate(self, num_tasks: int) -> "GrowthPlan":
        """Check the plan against a sequence of ``num_tasks`` tasks; returns self."""
        for first, last, _ in self.ranges:
            highest = first if last is None else last
            if highest >= num_tasks:
                raise ConfigError(
                    f"growth schedule {self.spec!r} names task {highest}, but the sequence has "
                    f"{num_tasks} tasks (0-{num_tasks - 1})."
                )
        for task in range(num_tasks):
            self.for_task(task)
        return self

    def describe(self, num_tasks: int) -> list[str]:
        return [self.for_task(t) for t in range(num_tasks)]

    def criteria(self) -> set[str]:
        """Every criterion the plan names."""
        return {name for _, _, name in self.ranges} | ({self.default} if self.default else set())


def parse_growth(spec: str) -> GrowthPlan:
    """Parse a growth spec (see module docstring); unknown names list the registered criteria."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"growth must be a criterion name or a schedule such as 'random@0-4,gradient', got {spec!r}.")
    ranges: list[tuple[int, int | None, str]] = []
    default: str | None = None
    for item in spec.split(","):
        match = _ITEM.match(item)
        if not match:
            raise ConfigError(
                f"cannot read {item.strip()!r} in growth schedule {spec!r}; write NAME or NAME@A-B, "
                "e.g. 'random@0-4,gradient'."
            )
        name, first, dash, last = match.groups()
        if name not in GROW:
            raise ConfigError(GROW.unknown(name))
        if first is None:
            if default is not None:
                raise ConfigError(f"growth schedule {spec!r} has two defaults ({default!r}, {name!r}); give ranges with '@'.")
            default = name
            continue
        lo = int(first)
        hi = None if (dash and last is None) else int(last) if last is not None else lo
        if hi is not None and hi < lo:
            raise ConfigError(f"empty task range {lo}-{hi} in growth schedule {spec!r}.")
        for a, b, other in ranges:
            if (b is None or lo <= b) and (hi is None or a <= hi):
                raise ConfigError(f"tasks of {item.strip()!r} overlap those of {other}@{a}-{'' if b is None else b} in {spec!r}.")
        ranges.append((lo, hi, name))
    return GrowthPlan(tuple(ranges), default, spec.strip())
