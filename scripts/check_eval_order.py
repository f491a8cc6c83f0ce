"""Check the evaluator on real data: the reported accuracy against other batchings of the same weights.

Trains one configuration with ``run_experiment``, then evaluates every task's final weights three
ways: the canonical class-mixed order (what dstcl reports), several independent random orders (an
unbiased reference), and the stored order of the reader (class-sorted for miniImageNet: the old bug).

    python scripts/check_eval_order.py --data-dir ../shared/data/miniimagenet \
        --dataset miniimagenet --num-classes 10 --tasks 1 --width 20 --sparsity 0.8 --epochs 4
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from dstcl.config import resolve
from dstcl.experiment import Experiment
from dstcl.models import set_task
from dstcl.rundir import RunDir
from dstcl.train.evaluate import EVAL_BATCH_SIZE, EvalSet, accuracy


def stored_order_accuracy(exp: Experiment, task: int) -> float:
    """The old evaluator: the test set in the order the reader stored it."""
    t = exp.tasks[task]
    model = exp.model
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(t.test_y), EVAL_BATCH_SIZE):
            xb = exp._prepare(t.test_x[start:start + EVAL_BATCH_SIZE].to(exp.device))
            logits = model(xb)[:, exp.heads[task]]
            correct += int((logits.argmax(1).cpu() == t.test_y[start:start + EVAL_BATCH_SIZE]).sum())
    return 100.0 * correct / len(t.test_y)


def shuffled_accuracy(exp: Experiment, task: int, seed: int) -> float:
    """A random batching: EvalSet's canonical order is bypassed by permuting after construction."""
    t = exp.tasks[task]
    data = EvalSet(t.test_x, t.test_y)
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    data.x, data.y = data.x[perm], data.y[perm]
    return accuracy(exp.model, data.to(exp.device), exp.heads[task], exp._prepare, device=exp.device)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="miniimagenet")
    parser.add_argument("--data-dir")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--sparsity", type=float, default=0.8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--update-frequency", type=int, default=20)
    parser.add_argument("--shuffles", type=int, default=5)
    args = parser.parse_args()
    cfg = resolve({"dataset": args.dataset, "data_dir": args.data_dir, "num_classes": args.num_classes,
                   "tasks": args.tasks, "width": args.width, "sparsity": args.sparsity, "epochs": args.epochs,
                   "update_frequency": args.update_frequency, "progress": False, "device": "cpu"})
    with tempfile.TemporaryDirectory() as tmp:
        exp = Experiment(cfg)
        exp.execute(RunDir.create(tmp, cfg.dataset))
        print(f"\n{'task':>4}  {'reported':>9}  {'random orders (mean ± std)':>27}  {'stored order':>12}")
        for task in range(cfg.tasks):
            exp.learner.apply_task(task)
            set_task(exp.model, task)
            shuffled = [shuffled_accuracy(exp, task, seed) for seed in range(args.shuffles)]
            print(f"{task:>4}  {exp.R[-1][task]:>8.2f}%  {statistics.mean(shuffled):>17.2f} ± "
                  f"{statistics.stdev(shuffled) if len(shuffled) > 1 else 0:.2f} %  {stored_order_accuracy(exp, task):>11.2f}%")


if __name__ == "__main__":
    main()
