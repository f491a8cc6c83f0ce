"""Check an exported model against its run: every task's accuracy recomputed from the model file alone.

    python scripts/check_export.py RUN_DIR [--data-dir DIR]

Exports RUN_DIR to a temporary .dstcl file, loads it (no run directory needed), rebuilds each task's
test set in the canonical order the run evaluated it in, and compares, for every task, the model file's
logits with the run's final evaluation: their fingerprint (blake2b of the float32 logits, which the run
recorded in metrics.json as ``final_logits_blake2b``; equal only for bit-identical logits) and the
accuracy. Prints both, the file-size figures, and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import dstcl
from dstcl.config import from_flat, saved_settings
from dstcl.data import load_dataset, make_tasks
from dstcl.deploy import export_run
from dstcl.train.evaluate import EvalSet, logits_fingerprint


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    run = Path(args.run_dir)
    saved = json.loads((run / "config.json").read_text())
    cfg = from_flat({**saved_settings(saved), **({"data_dir": args.data_dir} if args.data_dir else {})})
    torch.set_num_threads(int(saved.get("threads") or torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        sizes = export_run(run, Path(tmp) / "model.dstcl")
        print(f"model file: {sizes.describe()}")
        model = dstcl.load(Path(tmp) / "model.dstcl")
    data = cfg.data
    dataset = load_dataset(data.dataset, data.data_dir, download=False, progress=False, num_classes=data.num_classes,
                           seed=cfg.run.seed, **data.options)
    tasks = make_tasks(dataset, data.tasks, data.class_order, cfg.run.seed, data.class_similarity())
    recorded = json.loads((run / "metrics.json").read_text())
    final = recorded["accuracy_matrix"][-1]
    prints = recorded.get("final_logits_blake2b") or [None] * len(tasks)
    bad = 0
    for j, task in enumerate(tasks):
        test = EvalSet(task.test_x, task.test_y)
        logits = model.logits(test.x, j)
        acc = 100.0 * int((logits.argmax(dim=1) == test.y).sum()) / len(test)
        ours = logits_fingerprint(logits)
        same = acc == final[j] and prints[j] in (None, ours)
        bad += not same
        logit_note = ("logits bit-identical" if prints[j] == ours else
                      "logits not recorded by this run" if prints[j] is None else "LOGITS DIFFER")
        print(f"task {j}: run {final[j]:.4f} %, model file {acc:.4f} %, {logit_note} "
              f"{'(equal)' if same else '(DIFFERENT)'}")
    print("all tasks equal" if not bad else f"{bad} task(s) differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
