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

import difflib
import itertools
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import CHOICES, FIELD_NAMES, PRESETS
from ..errors import ConfigError
from .yamllines import GridError, LineDict, LineList, read_yaml_file

TOP_KEYS = ("name", "description", "preset", "config", "base", "vary", "include", "exclude", "seeds", "resources")
RESOURCE_KEYS = ("cpus", "gpus")
MAX_RUNS = 100_000  # more points than this is a mistake in the grid (and would not fit in memory)
# Keys a run may set: every RunConfig field, the density shorthand, and the preset.
RUN_KEYS = (*FIELD_NAMES, "density", "preset")


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
            problems.add(data.line_of(key), f"unknown key {key!r}{_suggest(key, TOP_KEYS)}; valid keys: "
                                            f"{', '.join(TOP_KEYS)}")
    for key in ("name", "description", "config"):
        if key in data and not is_scalar(data[key]):
            what = "a path to a config file" if key == "config" else "a text"
            problems.add(data.line_of(key), f"{key} must be {what}, not a {_kind(data[key])} ({_show(data[key])})")
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
        if key in RUN_KEYS:
            for i, value in enumerate(values):
                message = check_value(key, value)
                if message:
                    problems.add(values.line_of(i), message)
        dupes = _duplicates(values)
        if dupes:
            problems.add(vary.line_of(key), f"vary.{key} lists {dupes[0]!r} twice")
    include = _entries(data, "include", problems)
    exclude = _entries(data, "exclude", problems)
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


def check_value(key: str, value: Any) -> str | None:
    """Why ``value`` is not valid for ``key`` (with the valid options), or None if it is."""
    from ..config import _coerce
    from ..sparse import parse_growth

    if not is_scalar(value):
        return (f"{key} must be a single value, not a {_kind(value)} ({_show(value)}); valid: {valid_options(key)}"
                + (f" (to try several values, list them under vary: {key}: [a, b])" if key != "preset" else
                   " (to try several presets, list them under vary: preset: [a, b])"))
    if key == "preset":
        return None if value in PRESETS else f"unknown preset {value!r}; valid presets: {', '.join(PRESETS)}"
    if key == "density":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
            return f"density must be a number in (0, 1] (density = 1 - sparsity), got {value!r}"
        return None
    try:
        coerced = getattr(_coerce({key: value}), key)
    except ConfigError as exc:
        return str(exc).rstrip(".")
    except OverflowError:  # an integer too large for a float
        return f"{key} must be {valid_options(key)} in the range of a float, got {_show(value)}"
    named = _registries()
    if key in named and coerced is not None and coerced not in named[key]:
        return f"unknown {key} {coerced!r}; valid: {', '.join(sorted(named[key]))}"
    if key in CHOICES and coerced not in CHOICES[key]:
        shown = ", ".join(str(c) for c in CHOICES[key] if c is not None)
        return f"{key} must be one of {shown}; got {value!r}"
    if key == "growth":
        try:
            parse_growth(coerced)
        except ConfigError as exc:
            return str(exc).rstrip(".")
    if key in RANGE_CHECKED and coerced is not None:
        from ..config import RunConfig, validate

        try:  # the field on its own, every other field at its default
            validate(replace(RunConfig(), **{key: coerced}))
        except ConfigError as exc:
            return str(exc).rstrip(".")
    return None


def is_scalar(value: Any) -> bool:
    """True for a single YAML value (text, number, boolean, null, date), False for a list or a mapping."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return False
    try:
        hash(value)
    except TypeError:
        return False
    return True


def valid_options(key: str) -> str:
    """What ``key`` accepts, in words (for error messages)."""
    from ..config import RunConfig
    from ..sparse import GROW

    if key == "preset":
        return ", ".join(PRESETS)
    if key == "density":
        return "a number in (0, 1] (density = 1 - sparsity)"
    named = _registries()
    if key in named:
        return ", ".join(sorted(named[key]))
    if key in CHOICES:
        return ", ".join(str(c) for c in CHOICES[key] if c is not None)
    if key == "growth":
        return f"{', '.join(sorted(GROW))}, or a schedule such as random@0-4,gradient"
    kind = str(RunConfig.__dataclass_fields__[key].type) if key in RunConfig.__dataclass_fields__ else ""
    if kind.startswith("int"):
        return "an integer"
    if kind.startswith("float"):
        return "a number"
    if kind.startswith("bool"):
        return "true or false"
    return "a text value"


def _registries() -> dict[str, Mapping[str, Any]]:
    """Fields whose valid values are the names in a registry (imported late: plugins may add names)."""
    from ..data import DATASETS
    from ..models import MODELS
    from ..sparse import DROP

    return {"dataset": DATASETS, "backbone": MODELS, "drop": DROP}


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Fields whose valid range does not depend on other fields, so a bad value can be reported at its line.
RANGE_CHECKED = frozenset({"sparsity", "lr", "momentum", "weight_decay", "seed", "drop_rate", "epochs",
                           "batch_size", "update_frequency", "width", "num_classes"})


class Problems:
    """Collects the mistakes of one grid file so they are all reported at once."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self.items.append((line, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = sorted(self.items, key=lambda item: item[0])[:10]
        parts = [f"{'command line (--set)' if line == 0 else f'line {line}'}: {message}." for line, message in shown]
        more = len(self.items) - len(shown)
        tail = f" ({more} more problems not shown.)" if more > 0 else ""
        head = f"grid file {self.source} has {len(self.items)} problem{'s' if len(self.items) > 1 else ''}: "
        raise GridError(head + " ".join(parts) + tail + " Nothing was run.")


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
    if key in RUN_KEYS:
        return True
    problems.add(line, f"unknown field {key!r} in {where}{_suggest(str(key), RUN_KEYS)}; valid fields: "
                       f"{', '.join(RUN_KEYS)}")
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


RAY_RESOURCE_UNIT = 1e-4  # Ray rejects fractions of a CPU or GPU finer than this


def check_resource(kind: str, amount: Any, name: str | None = None) -> str | None:
    """Why ``amount`` is not a valid per-run number of ``kind`` ("cpus" or "gpus") for Ray, or None.

    ``name`` is how the message calls the setting (default: ``kind``).

    CPUs: a finite number above 0; GPUs: a finite number of at least 0. Fractions are allowed (0.5 CPU,
    0.25 GPU: several runs share one), down to Ray's unit of 0.0001.
    """
    name = name or kind
    if kind == "cpus":
        wanted = "a finite number greater than 0 (fractions such as 0.5 are allowed)"
    else:
        wanted = "a finite number of at least 0 (fractions such as 0.25 share a GPU between runs)"
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return f"{name} must be {wanted}, got {_show(amount)}"
    if amount > 1e9 and amount != math.inf:  # also an integer too large for a float (math.isfinite would fail)
        return f"{name} must be {wanted} and not more than a cluster can have, got {_show(amount)}"
    if (isinstance(amount, float) and not math.isfinite(amount)) or amount < 0 or (kind == "cpus" and amount == 0):
        return f"{name} must be {wanted}, got {amount!r}"
    if 0 < amount < RAY_RESOURCE_UNIT:
        return f"{name} must be 0 or at least {RAY_RESOURCE_UNIT:g} (Ray's smallest unit), got {amount!r}"
    return None


def _duplicates(values: list) -> list:
    seen: list = []
    dupes: list = []
    for value in values:
        if value in seen and value not in dupes:
            dupes.append(value)
        seen.append(value)
    return dupes


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)
