"""Tables shaped like the paper's: rows init x growth, columns sparsity x number of tasks.

Other settings that vary between runs either follow from the row and column (the presets tie epochs
and update frequency to the number of tasks; those are noted, not split on) or split the runs into
separate tables. The data set and the backbone always split (one table per data set, as in the paper).
Pure functions: no formatting here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from ..run.hashing import canonical_value
from .aggregate import Group, varying_fields

ROW_KEYS = ("init", "growth")
COL_KEYS = ("sparsity", "tasks")
GROWTH_ORDER = ("random", "unfired", "gradient", "momentum")
INIT_ORDER = ("erk", "uniform")
# Never mixed in one table, even when the columns happen to tell them apart.
ALWAYS_SPLIT = ("dataset", "backbone")


@dataclass
class PaperTable:
    split: dict[str, Any]  # the settings this table is restricted to ({} when there is one table)
    rows: list[tuple]  # (init, growth)
    cols: list[tuple]  # (sparsity, tasks)
    cells: dict[tuple[tuple, tuple], Group]
    derived: list[str] = field(default_factory=list)  # varying fields implied by rows and columns

    def cell(self, row: tuple, col: tuple) -> Group | None:
        return self.cells.get((row, col))


def paper_tables(groups: Sequence[Group]) -> list[PaperTable]:
    """One table per combination of the varying fields that rows and columns do not determine."""
    varying = varying_fields(groups)
    others = [f for f in varying if f not in ROW_KEYS + COL_KEYS]
    split_on = [f for f in others if f in ALWAYS_SPLIT]
    for name in others:  # field order: data set and backbone first, then what they may imply
        if name not in split_on and not _determined(groups, name, list(ROW_KEYS + COL_KEYS) + split_on):
            split_on.append(name)
    derived = [f for f in others if f not in split_on]
    parts: dict[tuple, list[Group]] = {}
    for g in groups:
        parts.setdefault(tuple(_key(g.get(f)) for f in split_on), []).append(g)
    tables = []
    for members in parts.values():
        rows = sorted({tuple(g.get(k) for k in ROW_KEYS) for g in members}, key=_row_order)
        cols = sorted({tuple(g.get(k) for k in COL_KEYS) for g in members}, key=_col_order)
        cells = {(tuple(g.get(k) for k in ROW_KEYS), tuple(g.get(k) for k in COL_KEYS)): g for g in members}
        tables.append(PaperTable({f: members[0].get(f) for f in split_on}, rows, cols, cells, derived))
    return sorted(tables, key=lambda t: [_sortable(t.split[f]) for f in split_on])


def best_in_column(table: PaperTable, col: tuple, metric: str) -> float | None:
    """The highest mean of ``metric`` in a column (higher is better for ACC, BWT and FWT)."""
    means = [g.stat(metric).mean for row in table.rows if (g := table.cell(row, col)) is not None]
    means = [m for m in means if m is not None]
    if len(means) < 2 or min(means) == max(means):  # nothing to single out
        return None
    return max(means)


def _determined(groups: Sequence[Group], name: str, by: list[str]) -> bool:
    seen: dict[tuple, Any] = {}
    for g in groups:
        key = tuple(_key(g.get(f)) for f in by)
        value = _key(g.get(name))
        if seen.setdefault(key, value) != value:
            return False
    return True


def _key(value: Any) -> str:
    return repr(canonical_value(value))


def _row_order(row: tuple) -> tuple:
    return tuple(value_order(k, v) for k, v in zip(ROW_KEYS, row))


def value_order(name: str, value: Any) -> tuple:
    """Sort key of a setting's value: the paper's order for init and growth, numbers by size, else text."""
    if name == "init":
        return (INIT_ORDER.index(value) if value in INIT_ORDER else len(INIT_ORDER), *_sortable(value))
    if name == "growth":
        return (GROWTH_ORDER.index(value) if value in GROWTH_ORDER else len(GROWTH_ORDER), *_sortable(value))
    return (0, *_sortable(value))


def group_order(groups: Sequence[Group]) -> list[Group]:
    """Groups in reading order: by the varying fields, row and column keys first."""
    fields = varying_fields(groups)
    first = [f for f in (*ROW_KEYS, *COL_KEYS) if f in fields]
    keys = first + [f for f in fields if f not in first]
    return sorted(groups, key=lambda g: [value_order(f, g.get(f)) for f in keys])


def _col_order(col: tuple) -> tuple:
    return tuple(_sortable(v) for v in col)


def _sortable(value: Any) -> tuple:
    if value is None:
        return (0, 0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0, str(value))
