"""Copy the small outputs of every run under a sweep folder (not weights, masks or checkpoints).

    python scripts/keep_small_outputs.py SWEEP_DIR DEST_DIR

Keeps, per run directory: config.json, metrics.json, capacity.json, events.jsonl, environment.json,
summary.md and sweep-config.json, under DEST_DIR/<run id>/, so a study's tables can be regenerated
with ``dstcl report DEST_DIR`` and an interrupted sweep can be compared with on another machine. Only
completed runs are copied unless --all is given.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from dstcl.run.rundir import CAPACITY, COMPLETED, CONFIG, ENVIRONMENT, EVENTS, METRICS, SUMMARY, run_status

SMALL = (CONFIG, METRICS, CAPACITY, EVENTS, ENVIRONMENT, SUMMARY, "sweep-config.json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("source")
    parser.add_argument("dest")
    parser.add_argument("--all", action="store_true", help="also unfinished runs")
    args = parser.parse_args()
    copied = 0
    for config in sorted(Path(args.source).rglob(CONFIG)):
        run = config.parent
        if not args.all and run_status(run) != COMPLETED:
            continue
        target = Path(args.dest) / run.name
        target.mkdir(parents=True, exist_ok=True)
        for name in SMALL:
            if (run / name).is_file():
                shutil.copy2(run / name, target / name)
        copied += 1
    print(f"{copied} run(s) copied to {args.dest}")


if __name__ == "__main__":
    main()
