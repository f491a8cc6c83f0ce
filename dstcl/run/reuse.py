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
from .rundir import COMPLETED, is_run_dir, read_config, run_status


@dataclass(frozen=True)
class Reuse:
    action: str  # start | resume | done
    note: str = ""


def decide(path: str | Path, cfg: RunConfig, *, fresh: bool = False) -> Reuse:
    path = Path(path)
    if fresh or not is_run_dir(path):
        return Reuse("start")
    saved = read_config(path)
    status = run_status(path)
    if config_hash(saved) == config_hash(cfg):
        if status == COMPLETED:
            return Reuse("done", f"{path} already holds this run, completed (same settings); nothing to do.")
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
