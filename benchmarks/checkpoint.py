"""Cost of an epoch checkpoint of ResNet-18 (weights, sparse state, Adam state) vs one epoch.

The checkpoint is written in the background: the training loop only waits for the snapshot (tensors
copied to CPU memory). Both the blocking time and the full write (serialise + fsync + rename) are
measured, side by side with training steps in one process. The epoch is split CIFAR-100 with 10
tasks: 5000 training images per task, batch 64 -> 79 steps (measured step time x 79).

Last line: ``checkpoint/epoch time share: blocking B %, full write W %``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import pick_device, sync  # noqa: E402

from dstcl.run.checkpoint import Checkpointer  # noqa: E402
from dstcl.models import build_model  # noqa: E402
from dstcl.sparse import SparseConfig, SparseLearner  # noqa: E402
from dstcl.train.trainer import steps_per_epoch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    device = pick_device(args.device)
    warnings.simplefilter("ignore")  # capacity warnings of the synthetic tasks
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=100).to(device)
    learner = SparseLearner(model, SparseConfig(density=0.2, update_frequency=10**9), num_tasks=10)
    for t in range(3):  # a few learned tasks: masks in the state
        learner.start_task(t, 1)
        learner.end_task()
    learner.start_task(3, 10**6)
    opt = learner.make_optimizer("adam", lr=1e-3)
    x = torch.randn(64, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (64,), device=device)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x)[:, 30:40], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        learner.step(opt)

    def payload() -> dict:
        return {"phase": "training", "model": model.state_dict(), "learner": learner.state_dict(),
                "optimizer": opt.state_dict()}

    for _ in range(3):
        step()
    steps, blocking, full, overlapped = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        ckpt = Checkpointer(folder)
        for _ in range(args.rounds):
            sync(device)
            t0 = time.perf_counter()
            for _ in range(3):
                step()
            sync(device)
            steps.append((time.perf_counter() - t0) / 3)
            t0 = time.perf_counter()
            ckpt.save(payload())
            blocking.append(time.perf_counter() - t0)
            ckpt.wait()
            full.append(time.perf_counter() - t0)
            # the same checkpoint again, this time training while it is written in the background
            t0 = time.perf_counter()
            ckpt.save(payload())
            for _ in range(3):
                step()
            sync(device)
            ckpt.wait()
            overlapped.append(time.perf_counter() - t0)
        size = ckpt.paths()[-1].stat().st_size
    step_s = statistics.median(steps)
    epoch_s = step_s * steps_per_epoch(5000, 64)
    b, f = statistics.median(blocking), statistics.median(full)
    # extra wall time of (checkpoint + 3 steps) over 3 plain steps: what the checkpoint really costs
    extra = max(statistics.median(overlapped) - 3 * step_s, b)
    print(f"device: {device}; checkpoint size {size / 2**20:.1f} MiB")
    print(f"training step {step_s * 1e3:.1f} ms -> epoch (79 steps) {epoch_s:.2f} s")
    print(f"checkpoint: blocking {b * 1e3:.1f} ms, full write incl. fsync {f * 1e3:.1f} ms")
    print(f"checkpoint written while training: {extra * 1e3:.1f} ms of extra wall time")
    import math

    every = max(1, math.ceil(extra / (0.02 * epoch_s)))
    print(f"with --checkpoint-budget 0.02 an epoch checkpoint is written every {every} epoch(s) here: "
          f"{100 * extra / (every * epoch_s):.2f} % of training time")
    print(f"checkpoint/epoch time share: blocking {100 * b / epoch_s:.2f} %, extra wall time "
          f"{100 * extra / epoch_s:.2f} %, full write if waited for {100 * f / epoch_s:.2f} %")


if __name__ == "__main__":
    main()
