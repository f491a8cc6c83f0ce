"""From grid points to runs: resolve each point's config, name its directory by hash, read its status."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import RunConfig, resolve
from ..errors import ConfigError
from ..run.hashing import config_hash
from ..run.rundir import COMPLETED, METRICS
from ..run.rundir import run_status as read_status
from ..yamlfile import GridError
from .grid import Grid, Point, Problems, expand

DONE = COMPLETED


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: its resolved config, its id (hash) and what distinguishes it in the grid."""

    id: str
    config: RunConfig
    label: tuple[tuple[str, Any], ...]  # (key, value) of the varied keys, for tables and logs
    origin: str

    def run_dir(self, out: str | Path) -> Path:
        return Path(out) / self.id

    def label_text(self) -> str:
        return " ".join(f"{k}={_short(v)}" for k, v in self.label) or "(base)"


def plan_runs(grid: Grid) -> list[RunSpec]:
    """Resolve every point of ``grid``; every invalid point is reported (with its lines) before any run.

    Points that resolve to the same configuration (same hash) are one run.
    """
    points = expand(grid)
    if not points:
        raise GridError(f"grid file {grid.source} has no runs: every combination of vary is excluded.")
    problems = Problems(grid.source)
    specs: list[RunSpec] = []
    seen: set[str] = set()
    failed: set[str] = set()
    for point in points:
        try:
            cfg = resolve(point.settings, preset=point.preset, config_file=grid.config_file)
        except (ConfigError, OverflowError) as exc:  # OverflowError: a number from the config file too large
            message = str(exc).rstrip(".") if isinstance(exc, ConfigError) else f"a number is too large ({exc})"
            if message not in failed:  # report each distinct problem once, not once per seed
                failed.add(message)
                problems.add(_line_for(point, message, grid.config_line), f"the run {_describe(point)} ({point.origin}) is invalid: {message}")
            continue
        spec = RunSpec(config_hash(cfg), cfg, _label(point, cfg), point.origin)
        if spec.id not in seen:
            seen.add(spec.id)
            specs.append(spec)
    problems.raise_if_any()
    return specs


def run_status(run_dir: str | Path) -> str:
    """``new`` (no metrics yet), ``unreadable``, or the status in its metrics.json (completed, running, ...)."""
    if not (Path(run_dir) / METRICS).exists():
        return "new"
    return read_status(run_dir) or "unreadable"


def is_complete(run_dir: str | Path) -> bool:
    return run_status(run_dir) == DONE


def _label(point: Point, cfg: RunConfig) -> tuple[tuple[str, Any], ...]:
    values = cfg.as_dict()
    out = []
    for key in point.varied:
        if key == "preset":
            out.append((key, point.preset))
        elif key == "density":
            out.append(("sparsity", cfg.sparsity))
        else:  # a backbone or data option left unset (null) is not in the resolved config
            out.append((key, values.get(key, point.settings.get(key))))
    return tuple(dict(out).items())


def _describe(point: Point) -> str:
    shown = {k: point.settings.get(k) for k in point.varied if k in point.settings}
    if point.preset is not None and "preset" in point.varied:
        shown = {"preset": point.preset, **shown}
    return "{" + ", ".join(f"{k}: {v}" for k, v in shown.items()) + "}" if shown else "of the base"


def _line_for(point: Point, message: str, config_line: int = 0) -> int:
    """The line of the key the message is about: varied keys first, the key it starts with first.

    A message about no key of the point comes from the grid's config file (its ``config:`` line) when
    there is one, else from the first key (line 1 when the point has none: line 0 means --set).
    """
    keys = [k for k in point.varied if k in point.lines] + [k for k in point.lines if k not in point.varied]
    tests = (lambda k: message.startswith(k), lambda k: f" {k} " in f" {message} " or f"{k!r}" in message)
    for test in tests:
        for key in keys:
            if test(key):
                return point.lines[key]
    if config_line:
        return config_line
    return point.lines[keys[0]] if keys else 1


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

