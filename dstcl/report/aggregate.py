"""Group runs that differ only in their seed, and summarise each metric as mean and std over seeds.

Pure functions over :class:`RunRecord` lists. The standard deviation is the sample one (ddof = 1),
as papers report it; with a single seed it is undefined (None), not 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ..config import FIELD_NAMES
from ..metrics import LABELS
from ..run.hashing import canonical_value, result_settings
from .collect import RunRecord

METRICS = tuple(LABELS)
METRIC_TITLES = LABELS


@dataclass(frozen=True)
class Stat:
    mean: float | None
    std: float | None
    n: int
    values: tuple[float, ...]


def stat(values: Iterable[Any]) -> Stat:
    """Mean and sample standard deviation of the numbers among ``values`` (None entries are skipped)."""
    numbers = tuple(float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and math.isfinite(float(v)))
    n = len(numbers)
    if n == 0:
        return Stat(None, None, 0, ())
    mean = math.fsum(numbers) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in numbers) / (n - 1)) if n > 1 else None
    return Stat(mean, std, n, numbers)


@dataclass(frozen=True)
class Group:
    """The runs of one configuration (all fields but the seed equal)."""

    settings: dict[str, Any]
    runs: tuple[RunRecord, ...]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.runs if r.seed is not None)

    def stat(self, metric: str) -> Stat:
        return stat(r.metrics.get(metric) for r in self.runs)

    def get(self, key: str) -> Any:
        return self.settings.get(key)


def config_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that identify a configuration: its result settings, the seed excluded (runs that differ
    only in it are averaged)."""
    settings = result_settings(config)
    settings.pop("seed", None)
    return settings


def setting_names(groups: Sequence[Group]) -> list[str]:
    """Every setting any group has, in config order (fields first, then backbone and data-set options)."""
    names = {k for g in groups for k in g.settings}
    order = {name: i for i, name in enumerate(FIELD_NAMES)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def group_runs(runs: Sequence[RunRecord]) -> list[Group]:
    """Runs grouped by configuration, groups in first-seen order, runs in seed order."""
    groups: dict[str, list[RunRecord]] = {}
    settings: dict[str, dict[str, Any]] = {}
    for run in runs:
        s = config_settings(run.config)
        key = repr(sorted(canonical_value(s).items()))
        groups.setdefault(key, []).append(run)
        settings.setdefault(key, s)
    return [
        Group(settings[k], tuple(sorted(v, key=lambda r: (r.seed is None, r.seed or 0, r.id))))
        for k, v in groups.items()
    ]


def varying_fields(groups: Sequence[Group]) -> list[str]:
    """Config fields whose value is not the same in every group (in RunConfig field order)."""
    out = []
    for f in setting_names(groups):
        values = {repr(canonical_value(g.get(f))) for g in groups}
        if len(values) > 1:
            out.append(f)
    return out


def common_settings(groups: Sequence[Group]) -> dict[str, Any]:
    """Config fields with one value across all groups (shown once above the tables)."""
    varying = set(varying_fields(groups))
    return {f: groups[0].get(f) for f in setting_names(groups) if f not in varying} if groups else {}
