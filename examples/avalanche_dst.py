"""Avalanche's Naive strategy with dstcl's DSTPlugin on a synthetic task-incremental split (no download).

    pip install torch==2.13.0 && pip install -e ".[avalanche]"
    python examples/avalanche_dst.py [--experiences 3] [--epochs 10] [--density 0.2]

Each experience (two classes of small synthetic images, with its own task label) trains its own sparse
subnetwork of a small CNN, found by DST, plus its own head of a MultiHeadClassifier; the subnetwork is
frozen when the experience ends. The script prints the accuracy of every experience after each one is
learned, and BWT, which parameter isolation makes exactly 0.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn
from torch.utils.data import TensorDataset

from dstcl.avalanche import DSTPlugin  # first: it lets torchvision import beside a CPU torch (docs/avalanche.md)
from dstcl.metrics import acc, bwt
from dstcl.sparse import SparseConfig

from avalanche.benchmarks import nc_benchmark  # noqa: E402  (after dstcl.avalanche)
from avalanche.evaluation.metrics import accuracy_metrics  # noqa: E402
from avalanche.models import MultiHeadClassifier, MultiTaskModule  # noqa: E402
from avalanche.training import Naive  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402


def synthetic_split(classes: int, per_class: int, seed: int) -> tuple[TensorDataset, TensorDataset]:
    """Images of one template per class plus noise: learnable, and different in every run of a seed."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn(classes, 1, 12, 12, generator=gen)

    def draw(n: int) -> TensorDataset:
        y = torch.arange(classes).repeat_interleave(n)
        x = templates[y] + 1.5 * torch.randn(len(y), 1, 12, 12, generator=gen)
        data = TensorDataset(x, y)
        data.targets = y.tolist()  # what Avalanche splits classes by
        return data

    return draw(per_class), draw(per_class // 2)


class SmallCNN(MultiTaskModule):
    """Two convolutions with BatchNorm (kept per task by dstcl) and one head per task label."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.heads = MultiHeadClassifier(32, initial_out_features=2)

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.heads(self.features(x), task_label)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor) -> torch.Tensor:
        return self.heads(self.features(x), task_labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiences", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--density", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a model this small is fastest on one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    n = args.experiences
    train, test = synthetic_split(2 * n, per_class=96, seed=args.seed)
    benchmark = nc_benchmark(train, test, n_experiences=n, task_labels=True, seed=args.seed,
                             class_ids_from_zero_in_each_exp=True)
    plugin = DSTPlugin(SparseConfig(density=args.density, update_frequency=10), seed=args.seed, num_tasks=n)
    model = SmallCNN()
    strategy = Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
                     criterion=nn.CrossEntropyLoss(), train_mb_size=32, train_epochs=args.epochs, eval_mb_size=256,
                     plugins=[plugin], evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]))

    R: list[list[float]] = []  # R[i][j]: accuracy (%) on experience j after learning experience i
    for experience in benchmark.train_stream:
        strategy.train(experience)
        results = strategy.eval(benchmark.test_stream)  # all experiences, the future ones included
        R.append([100 * results[f"Top1_Acc_Exp/eval_phase/test_stream/Task{j:03d}/Exp{j:03d}"] for j in range(n)])
        i = experience.current_experience
        print(f"after experience {i} ({plugin.updates_per_task[-1]} topology updates): "
              + "  ".join(f"exp {j}: {R[-1][j]:5.1f}%" for j in range(i + 1)))
    print(f"ACC {acc(R):.1f}%  BWT {bwt(R):+.1f} points")
    if bwt(R) != 0.0:
        print("BWT is not 0: an earlier experience's accuracy changed", file=sys.stderr)
        return 1
    print("BWT is exactly 0: each experience's subnetwork was frozen when it ended.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
