"""Experiment grids: expand a grid file into runs named by config hash, run them locally or on Ray.

* :mod:`.grid` — grid file schema, validation with line numbers, expansion (pure);
* :mod:`dstcl.run.hashing` — the stable id of a run (shared with run resume and reports);
* :mod:`.plan` — resolved runs and their status on disk;
* :mod:`.jobs` — one run as a ``dstcl run`` subprocess;
* :mod:`.local`, :mod:`.ray_executor` — where the jobs execute;
* :mod:`.runner` — the whole sweep and its summary.
"""

from .grid import Grid, Point, expand, load_grid, parse_grid
from ..run.hashing import NON_RESULT_FIELDS, canonical_json, config_hash, result_settings
from .plan import RunSpec, is_complete, plan_runs, run_status
from .runner import SweepResult, format_plan, format_summary, load_plan, run_sweep
from ..yamlfile import GridError

__all__ = [
    "Grid", "GridError", "NON_RESULT_FIELDS", "Point", "RunSpec", "SweepResult", "canonical_json", "config_hash",
    "expand", "format_plan", "format_summary", "is_complete", "load_grid", "load_plan", "parse_grid",
    "plan_runs", "result_settings", "run_status", "run_sweep",
]
