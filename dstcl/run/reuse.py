"""What to do when a run is started in a folder that already holds one: never lose finished work silently.

* no run there (or ``--fresh``): start;
* the same settings (the same run id) and unfinished: resume it, and say so;
* the same settings and completed: nothing to do;
* other settings: refuse, naming the differences, ``--resume DIR`` and ``--fresh``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..config import RunConfig
from ..errors import DstclError
from .hashing import config_hash, result_settings
from .rundir import CHECKPOINTS, COMPLETED, EVENTS, LOCK, MASKS, METRICS, SWEEP_CONFIG, SWEEP_LOG, is_run_dir, read_config, run_status


def foreign_entries(path: Path) -> list[str]:
    """What ``path`` holds besides an empty run skeleton (the lock, empty masks/ and checkpoints/ folders)."""
    if not path.is_dir():
        return []
    found = []
    for entry in sorted(path.iterdir()):
        if entry.name in (LOCK, SWEEP_CONFIG, SWEEP_LOG) or (entry.name in (MASKS, CHECKPOINTS) and entry.is_dir()
                                                               and not any(entry.iterdir())):
            continue
        found.append(entry.name + ("/" if entry.is_dir() else ""))
    return found


@dataclass(frozen=True)
class Reuse:
    action: str  # start | resume | done
    note: str = ""


def decide(path: str | Path, cfg: RunConfig, *, fresh: bool = False) -> Reuse:
    path = Path(path)
    if not is_run_dir(path):
        foreign = foreign_entries(path)
        if foreign:  # never delete what dstcl did not write (or a run whose config.json was lost)
            lost = (" It looks like a run folder whose config.json was lost." if {METRICS, EVENTS} & set(foreign)
                    else "")
            raise DstclError(
                f"{path} is not empty and is not a dstcl run folder (no config.json): it holds "
                f"{', '.join(foreign[:4])}{', ...' if len(foreign) > 4 else ''}.{lost} dstcl never deletes files it did "
                "not write; give --run-dir a new or empty folder, or move those files away."
            )
        return Reuse("start")
    if fresh:
        return Reuse("start")
    saved = read_config(path)
    status = run_status(path)
    if config_hash(saved) == config_hash(cfg):
        if status == COMPLETED:
            threads = saved.get("threads")
            other = (f" It ran with {threads} CPU thread(s), this command asks for {cfg.run.threads}: the thread count "
                     "changes floating-point results, so the run was not repeated." if threads not in
                     (None, cfg.run.threads) and cfg.run.threads is not None else "")
            return Reuse("done", f"{path} already holds this run, completed (same settings); nothing to do.{other}")
        threads = saved.get("threads")
        kept = f"; it keeps its recorded {threads} CPU thread(s)" if threads not in (None, cfg.run.threads) else ""
        return Reuse("resume", f"resuming the unfinished run in {path} (same settings as this command{kept})")
    differences = describe_differences(saved, cfg.flat())
    if status == COMPLETED:
        raise DstclError(f"{path} already holds a completed run with other settings ({differences}). Choose another "
                         "--run-dir, or add --fresh to discard that run and start this one there.")
    raise DstclError(
        f"{path} holds an unfinished run with other settings ({differences}); nothing was changed. To continue "
        f"that run: dstcl run --resume {path}. To discard it and start this configuration there: add --fresh."
    )


def describe_differences(saved: Mapping[str, Any], wanted: Mapping[str, Any], limit: int = 4) -> str:
    """``sparsity 0.5 there, 0.8 here; ...`` over the result settings that differ."""
    old, new = result_settings(saved), result_settings(wanted)
    keys = sorted(set(old) | set(new), key=lambda k: (k not in new, k))
    diffs = [f"{k} {old.get(k, '(unset)')!s} there, {new.get(k, '(unset)')!s} here" for k in keys
             if old.get(k) != new.get(k)]
    shown = "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")
    return shown or "settings from another dstcl version"
