"""Grid files: their schema, validation with line numbers, and expansion into points.

A grid file (YAML)::

    name: cifar100-10                # optional, for the report
    preset: cifar100-10              # optional base preset (a name from dstcl.config.PRESETS)
    config: base.yaml                # optional base config file, relative to the grid file
    base: {epochs: 50}               # optional config fields shared by every run
    vary:                            # cartesian product, first key outermost
      init: [erk, uniform]
      growth: [random, unfired, gradient, momentum]
      sparsity: [0.8, 0.9, 0.95]
    include:                         # extra runs, each on top of the base
      - {init: erk, growth: "random@0-4,gradient", sparsity: 0.9}
    exclude:                         # drop product points matching every key of an entry
      - {init: uniform, sparsity: 0.95}
    seeds: [0, 1, 2]                 # every point once per seed (an integer N means 0..N-1)
    resources: {cpus: 4, gpus: 1}    # per run, for --executor ray

``preset`` may also be varied or given in ``include``. Expansion is pure (:func:`expand`); it checks
every key and value against the config's fields and choices first, so a mistake is reported with its
line and the valid options before any run starts.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import PRESETS, SPARSITY
from ..yamlfile import GridError, LineDict, LineList, read_yaml_file
from .checks import Problems, check_resource, check_value, is_scalar, kind_of, run_keys, show, suggest

TOP_KEYS = ("name", "description", "preset", "config", "base", "vary", "include", "exclude", "seeds", "resources")
RESOURCE_KEYS = ("cpus", "gpus")
MAX_RUNS = 100_000  # more points than this is a mistake in the grid (and would not fit in memory)


@dataclass(frozen=True)
class Point:
    """One run before resolution: its settings on top of the grid's base, and where each came from."""

    settings: dict[str, Any]  # base + point values, config fields and "density"; no preset
    preset: str | None
    varied: tuple[str, ...]  # keys this point got from vary / include / seeds (for labels)
    lines: dict[str, int]  # key -> line in the grid file
    origin: str  # "vary", "include entry 2", ...


@dataclass(frozen=True)
class Grid:
    source: str
    name: str | None = None
    description: str | None = None
    preset: str | None = None
    config_file: Path | None = None
    config_line: int = 0  # line of ``config:`` (where a problem that comes from the config file is reported)
    base: Mapping[str, Any] = field(default_factory=LineDict)
    vary: Mapping[str, list] = field(default_factory=LineDict)
    include: list = field(default_factory=LineList)
    exclude: list = field(default_factory=LineList)
    seeds: tuple[int, ...] | None = None
    seeds_line: int = 0
    resources: Mapping[str, float] = field(default_factory=dict)


def load_grid(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Grid:
    """Read, check and return the grid in ``path``; ``overrides`` (``--set``) are added to its base."""
    path = Path(path)
    data = read_yaml_file(path)
    return parse_grid(data, str(path), path.parent, overrides)


def parse_grid(data: Any, source: str, folder: Path | None = None,
               overrides: Mapping[str, Any] | None = None) -> Grid:
    """Check the structure, keys and values of a parsed grid file; raise one GridError listing every problem."""
    problems = Problems(source)
    if data is None or (isinstance(data, dict) and not data):
        raise GridError(
            f"grid file {source} is empty. A grid names a base (preset: NAME and/or base: {{field: value}}), "
            "the fields to vary (vary: {sparsity: [0.8, 0.9]}) and optionally include:, exclude: and seeds:. "
            "See docs/sweeps.md."
        )
    if not isinstance(data, LineDict):
        raise GridError(f"grid file {source} must be a mapping of keys ({', '.join(TOP_KEYS)}), "
                        f"not a {type(data).__name__}.")
    for key in data:
        if key not in TOP_KEYS:
            problems.add(data.line_of(key), f"unknown key {key!r}{suggest(key, TOP_KEYS)}; valid keys: "
                                            f"{', '.join(TOP_KEYS)}")
    for key in ("name", "description", "config"):
        if key in data and not is_scalar(data[key]):
            what = "a path to a config file" if key == "config" else "a text"
            problems.add(data.line_of(key), f"{key} must be {what}, not a {kind_of(data[key])} ({show(data[key])})")
    preset = data.get("preset")
    if preset is not None:
        message = check_value("preset", preset)
        if message:
            problems.add(data.line_of("preset"), message)
    config_file = None
    if data.get("config") is not None and is_scalar(data["config"]):
        config_file = Path(str(data["config"])).expanduser()
        if not config_file.is_absolute() and folder is not None:
            config_file = folder / config_file
        if not config_file.is_file():
            problems.add(data.line_of("config"), f"config file {config_file} does not exist")
    base = _mapping(data, "base", problems)
    for key, value in (overrides or {}).items():
        base[key] = value
        base.lines[key] = 0  # 0: from the command line
    _check_settings(base, "base", problems, allow_preset=False)
    vary = _mapping(data, "vary", problems)
    for key in list(vary):
        values = vary[key]
        if not isinstance(values, list):  # a single value is a one-element list
            values = LineList([values])
            values.lines = [vary.line_of(key)]
            vary[key] = values
        if not values:
            problems.add(vary.line_of(key), f"vary.{key} is an empty list, so the grid has no runs; give at "
                                            "least one value or remove the key")
        _check_key(key, "vary", vary.line_of(key), problems)
        if key in run_keys():
            for i, value in enumerate(values):
                message = check_value(key, value)
                if message:
                    problems.add(values.line_of(i), message)
        dupes = _duplicates(values)
        if dupes:
            problems.add(vary.line_of(key), f"vary.{key} lists {dupes[0]!r} twice")
    include = _entries(data, "include", problems)
    exclude = _entries(data, "exclude", problems)
    _check_sparsity_and_density([base, vary, *include], problems)
    seeds, seeds_line = _seeds(data, problems)
    if seeds is not None and ("seed" in vary or any("seed" in e for e in include)):
        problems.add(seeds_line, "seeds are given both in seeds: and as a varied field; use one of them")
    resources = _resources(data, problems)
    for i, entry in enumerate(exclude):
        unknown = [k for k in entry if k not in vary]
        if unknown:
            problems.add(entry.line_of(unknown[0]), f"exclude entry {i + 1} names {unknown[0]!r}, which is not "
                                                    f"varied; exclude can only name fields of vary: "
                                                    f"{', '.join(str(k) for k in vary) or '(none)'}")
    problems.raise_if_any()
    combos = math.prod(len(values) for values in vary.values()) if vary else 0
    total = (combos + len(include) or 1) * (len(seeds) if seeds else 1)
    if total > MAX_RUNS:
        raise GridError(f"grid file {source} expands to {total} runs ({combos} combinations of vary, "
                        f"{len(include)} include entries, {len(seeds) if seeds else 1} seeds); at most {MAX_RUNS} "
                        "runs per grid. Vary fewer fields or values, or split the grid. Nothing was run.")
    grid = Grid(
        source=source, name=_optional_str(data.get("name")), description=_optional_str(data.get("description")),
        preset=None if preset is None else str(preset), config_file=config_file,
        config_line=data.line_of("config") if "config" in data else 0, base=base, vary=vary,
        include=include, exclude=exclude, seeds=seeds, seeds_line=seeds_line, resources=resources,
    )
    unused = [i for i, entry in enumerate(exclude) if not any(_matches(p, entry) for p in _product(vary))]
    for i in unused:
        problems.add(exclude[i].line, f"exclude entry {i + 1} matches no combination of vary; check its values")
    problems.raise_if_any()
    return grid


def expand(grid: Grid) -> list[Point]:
    """Every point of the grid: the product of ``vary`` minus ``exclude``, plus ``include``, times ``seeds``.

    Seeds are the outermost loop, so a partly finished sweep has every configuration at the first seed.
    """
    points: list[tuple[dict[str, Any], dict[str, int], str]] = []
    if grid.vary:
        for combo in _product(grid.vary):
            if any(_matches(combo, entry) for entry in grid.exclude):
                continue
            lines = {key: grid.vary[key].line_of(grid.vary[key].index(value)) for key, value in combo.items()}
            points.append((combo, lines, "vary"))
    for i, entry in enumerate(grid.include):
        points.append((dict(entry), {k: entry.line_of(k) for k in entry}, f"include entry {i + 1}"))
    if not grid.vary and not grid.include:
        points.append(({}, {}, "base"))
    seeds: Iterable[int | None] = grid.seeds if grid.seeds is not None else (None,)
    base_lines = dict(getattr(grid.base, "lines", {}))
    out: list[Point] = []
    for seed in seeds:
        for values, lines, origin in points:
            settings = {k: v for k, v in grid.base.items()}
            settings.update({k: v for k, v in values.items() if k != "preset"})
            varied = [k for k in values]
            all_lines = {**base_lines, **lines}
            if seed is not None:
                settings["seed"] = seed
                varied.append("seed")
                all_lines["seed"] = grid.seeds_line
            out.append(Point(settings, values.get("preset", grid.preset), tuple(varied), all_lines, origin))
    return out


def _product(vary: Mapping[str, list]) -> list[dict[str, Any]]:
    keys = list(vary)
    return [dict(zip(keys, values)) for values in itertools.product(*(vary[k] for k in keys))]


def _matches(point: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(key in point and point[key] == value for key, value in entry.items())


def _mapping(data: LineDict, key: str, problems: Problems) -> LineDict:
    value = data.get(key)
    if value is None:
        empty = LineDict()
        empty.line = data.line_of(key)
        return empty
    if not isinstance(value, LineDict):
        problems.add(data.line_of(key), f"{key} must be a mapping of field: value, not {type(value).__name__}")
        return LineDict()
    return value


def _entries(data: LineDict, key: str, problems: Problems) -> LineList:
    value = data.get(key)
    if value is None:
        return LineList()
    if not isinstance(value, LineList):
        problems.add(data.line_of(key), f"{key} must be a list of mappings (- {{field: value, ...}})")
        return LineList()
    good = LineList()
    for i, entry in enumerate(value):
        if not isinstance(entry, LineDict) or not entry:
            problems.add(value.line_of(i), f"{key} entry {i + 1} must be a non-empty mapping of field: value")
            continue
        _check_settings(entry, f"{key} entry {i + 1}", problems, allow_preset=True)
        good.append(entry)
        good.lines.append(value.line_of(i))
    good.line = value.line
    return good


def _check_settings(settings: LineDict, where: str, problems: Problems, *, allow_preset: bool) -> None:
    for key, value in settings.items():
        line = settings.line_of(key)
        if key == "preset" and not allow_preset:
            problems.add(line, f"preset goes at the top level of the grid (preset: NAME), not in {where}")
            continue
        if _check_key(key, where, line, problems):
            message = check_value(key, value)
            if message:
                problems.add(line, message)


def _check_key(key: Any, where: str, line: int, problems: Problems) -> bool:
    keys = run_keys()
    if key in keys:
        return True
    problems.add(line, f"unknown field {key!r} in {where}{suggest(str(key), keys)}; valid fields: "
                       f"{', '.join(keys)}")
    return False


def _seeds(data: LineDict, problems: Problems) -> tuple[tuple[int, ...] | None, int]:
    if data.get("seeds") is None:
        return None, 0
    value, line = data["seeds"], data.line_of("seeds")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            problems.add(line, f"seeds must be a list of seeds or a positive count, got {value}")
            return None, line
        if value > MAX_RUNS:
            problems.add(line, f"seeds: {value} runs every configuration {value} times; at most {MAX_RUNS} "
                               "runs per grid (give a list of seeds or a smaller count)")
            return None, line
        return tuple(range(value)), line
    if not isinstance(value, list) or not value:
        problems.add(line, "seeds must be a non-empty list of integers (seeds: [0, 1, 2]) or a count (seeds: 3)")
        return None, line
    bad = [s for s in value if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if bad:
        problems.add(line, f"seeds must be non-negative integers, got {bad[0]!r}")
        return None, line
    dupes = _duplicates(value)
    if dupes:
        problems.add(line, f"seed {dupes[0]} is listed twice")
    return tuple(value), line


def _resources(data: LineDict, problems: Problems) -> dict[str, float]:
    value = data.get("resources")
    if value is None:
        return {}
    if not isinstance(value, LineDict):
        problems.add(data.line_of("resources"), "resources must be a mapping such as {cpus: 4, gpus: 1}")
        return {}
    out: dict[str, float] = {}
    for key, amount in value.items():
        if key not in RESOURCE_KEYS:
            problems.add(value.line_of(key), f"unknown resource {key!r}; valid: {', '.join(RESOURCE_KEYS)}")
            continue
        message = check_resource(key, amount, f"resources.{key}")
        if message:
            problems.add(value.line_of(key), message)
        else:
            out[key] = float(amount)
    return out


def _check_sparsity_and_density(blocks: list[LineDict], problems: Problems) -> None:
    """Both spellings in one grid would make the runs depend on which one wins: refuse it."""
    where = {key: block.line_of(key) for block in blocks for key in (SPARSITY, "density") if key in block}
    if len(where) == 2:
        problems.add(max(where.values()), "the grid sets both sparsity (line "
                     f"{where[SPARSITY]}) and density (line {where['density']}); use one of them (density = 1 - sparsity)")


def _duplicates(values: list) -> list:
    seen: list = []
    dupes: list = []
    for value in values:
        if value in seen and value not in dupes:
            dupes.append(value)
        seen.append(value)
    return dupes


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
