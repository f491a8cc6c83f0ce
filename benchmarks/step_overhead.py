"""Masked training step vs the plain dense step of the same network, alternated in one process.

ResNet-18 (100 classes), batch 64 of 32x32 images, density 0.2, Adam (the fused kernel on both sides,
as dstcl uses it, so the ratio is what masking costs). The masked step is measured
in task 1 (after task 0 is frozen), so it includes everything isolation costs: gradient masking at
frozen weights, the optimizer step, and resetting inactive weights. No topology update falls inside
the measurement (those are measured by topology_update.py).

Last line: ``masked/dense step time ratio: R``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, pick_device  # noqa: E402

from dstcl.models import build_model  # noqa: E402
from dstcl.sparse import SparseConfig, SparseLearner  # noqa: E402
from dstcl.train.precision import autocast, memory_format  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--density", type=float, default=0.2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: autocast, and channels_last on the CPU, on both sides (as dstcl runs it)")
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    masked_model = build_model("resnet18", num_classes=100).to(device)
    layout = memory_format(args.precision, device, masked_model)  # the batch layout dstcl uses
    dense_model = copy.deepcopy(masked_model)
    learner = SparseLearner(masked_model, SparseConfig(density=args.density, update_frequency=10**9), num_tasks=2)
    learner.start_task(0, 1)
    learner.end_task()
    learner.start_task(1, 10**6)
    masked_opt = learner.make_optimizer("adam", lr=1e-3)
    dense_opt = torch.optim.Adam(dense_model.parameters(), lr=1e-3, fused=True)  # the same kernel as dstcl's
    x = torch.randn(args.batch_size, 3, 32, 32, device=device).contiguous(memory_format=layout)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def dense_step() -> None:
        with autocast(args.precision, device):
            loss = loss_fn(dense_model(x)[:, 10:20], y)
        dense_opt.zero_grad(set_to_none=True)
        loss.backward()
        dense_opt.step()

    def masked_step() -> None:
        with autocast(args.precision, device):
            loss = loss_fn(masked_model(x)[:, 10:20], y)
        masked_opt.zero_grad(set_to_none=True)
        loss.backward()
        learner.step(masked_opt)

    t = alternate({"dense": dense_step, "masked": masked_step}, device, args.rounds, args.reps)
    print(f"device: {device}, threads: {torch.get_num_threads()}, batch {args.batch_size}, density {args.density}, "
          f"{args.precision}")
    print(f"dense step:  {t['dense'] * 1e3:8.2f} ms (median of {args.rounds} rounds x {args.reps})")
    print(f"masked step: {t['masked'] * 1e3:8.2f} ms")
    print(f"masked/dense step time ratio: {t['masked'] / t['dense']:.3f}")


if __name__ == "__main__":
    main()
