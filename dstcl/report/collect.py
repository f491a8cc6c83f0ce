"""Find run directories and read what the report needs from them (config, metrics, capacity).

A run directory is any folder holding both ``config.json`` and ``metrics.json``; a sweep folder,
a ``runs/`` folder of single runs, or a mix of both all work. Only completed runs enter the tables;
unfinished ones are listed so that a half-done sweep is not silently reported as a whole one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import DstclError
from ..run.hashing import config_hash
from ..run.rundir import CAPACITY, CONFIG, METRICS, mask_shapes, read_events


class ReportError(DstclError):
    """Nothing to report, or an unreadable input."""


@dataclass(frozen=True)
class RunRecord:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def id(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return str(self.metrics.get("status", "unknown"))

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    def capacity(self) -> list[dict] | None:
        """capacity.json (per task, per layer), or None when the run has none."""
        return _read_json(self.path / CAPACITY)

    def events(self) -> list[dict]:
        """The run's events.jsonl (unreadable lines skipped)."""
        return read_events(self.path)

    def layer_shapes(self) -> dict[str, tuple[int, ...]] | None:
        """Shapes of the prunable layers, read from the first task's mask file (no model is built)."""
        return mask_shapes(self.path)


@dataclass
class Collection:
    completed: list[RunRecord] = field(default_factory=list)
    unfinished: list[RunRecord] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    sources: list[Path] = field(default_factory=list)
    # (kept, duplicate): completed runs with the same result settings and seed as an earlier one
    # (a run copied into two folders, or one config run twice); only the first counts.
    duplicates: list[tuple[Path, Path]] = field(default_factory=list)


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory at or below each of ``paths`` (in sorted order, each once)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise ReportError(f"{path} does not exist; give a sweep output folder or run directories.")
        if not path.is_dir():
            raise ReportError(f"{path} is a file; give a sweep output folder or run directories.")
        if _is_run_dir(path):
            found.append(path)
            continue
        found.extend(sorted(m.parent for m in path.rglob(METRICS) if _is_run_dir(m.parent)))
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def collect(paths: Iterable[str | Path]) -> Collection:
    """Read every run under ``paths``; raise a clear ReportError when there is none.

    Completed runs with the same result settings and seed (the same run copied into two folders, or
    one configuration run twice) count once: the first in path order; the others go to ``duplicates``.
    """
    paths = list(paths)
    out = Collection(sources=[Path(p) for p in paths])
    first: dict[str, Path] = {}
    for path in find_run_dirs(paths):
        config = _read_json(path / CONFIG)
        metrics = _read_json(path / METRICS)
        if not isinstance(config, dict) or not isinstance(metrics, dict):
            bad = CONFIG if not isinstance(config, dict) else METRICS
            out.unreadable.append((path, f"{bad} is not a readable JSON object"))
            continue
        record = RunRecord(path, config, metrics)
        if not record.completed:
            out.unfinished.append(record)
            continue
        key = config_hash(config)  # every setting that can change results, the seed included
        if key in first:
            out.duplicates.append((first[key], path))
            continue
        first[key] = path
        out.completed.append(record)
    if not out.completed:
        where = ", ".join(str(p) for p in paths)
        if out.unfinished or out.unreadable:
            named = "; ".join([f"{r.path} ({r.status})" for r in out.unfinished[:3]]
                              + [f"{p} ({why})" for p, why in out.unreadable[:3]])
            raise ReportError(
                f"no completed run under {where}: {len(out.unfinished)} unfinished and {len(out.unreadable)} "
                f"unreadable run directories ({named}). Finish the unfinished ones (rerun the sweep, or dstcl run "
                "--resume DIR); an unreadable one has a damaged config.json or metrics.json."
            )
        raise ReportError(
            f"no runs under {where}: no folder there holds config.json and metrics.json. Give the --out "
            "folder of a sweep (dstcl sweep GRID --out DIR) or run directories (under runs/ by default)."
        )
    return out


def _is_run_dir(path: Path) -> bool:
    return (path / METRICS).is_file() and (path / CONFIG).is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
