"""Where bf16 pays on this CPU: one masked ResNet-18 step in fp32 and in three bf16 memory layouts.

A ``SparseLearner`` at density 0.2 (task 1, one earlier task frozen), dstcl's optimizer (fused Adam),
batch 64 of 32 px images; variants alternated in one process, medians of ``--rounds`` rounds of 3
steps, at ``--threads`` threads. Each line splits the step into forward + backward and the learner's
optimizer step (masks, Adam). The bf16 variants: model and batches in channels_last; only the batches
in channels_last (what ``--precision bf16`` does on the CPU); the default layout. Last line: the
fp32/bf16 ratio of dstcl's layout (above 1: bf16 is faster).

    python benchmarks/bf16_layout.py --threads 1
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bf16_layout.py --threads 2   # as dstcl's command line runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, learner_in_task_1  # noqa: E402

from dstcl.models import build_model  # noqa: E402
from dstcl.train.precision import cpu_has_native_bf16  # noqa: E402

VARIANTS = {  # name: (bf16, model in channels_last, batches in channels_last)
    "fp32": (False, False, False),
    "bf16, model and batches channels_last": (True, True, True),
    "bf16, batches channels_last (dstcl)": (True, False, True),
    "bf16, default layout": (True, False, False),
}


def make_step(bf16: bool, model_cl: bool, batch_cl: bool, parts: dict[str, float]):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=100)
    if model_cl:
        model.to(memory_format=torch.channels_last)
    learner, optimizer = learner_in_task_1(model)
    x = torch.randn(64, 3, 32, 32)
    if batch_cl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,))

    def step() -> None:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = nn.functional.cross_entropy(model(x)[:, 10:20], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        middle = time.perf_counter()
        learner.step(optimizer)
        parts["forward+backward"] += middle - started
        parts["learner step"] += time.perf_counter() - middle
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine())
    if not cpu_has_native_bf16():
        print("bf16: skipped, this CPU has no native bf16 (it would be emulated, many times slower)")
        return
    parts = {name: {"forward+backward": 0.0, "learner step": 0.0} for name in VARIANTS}
    steps = {name: make_step(*flags, parts[name]) for name, flags in VARIANTS.items()}
    for step in steps.values():
        step()  # warm-up
    rounds: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name, step in steps.items():
            parts[name].update({"forward+backward": 0.0, "learner step": 0.0})
            started = time.perf_counter()
            for _ in range(3):
                step()
            rounds[name].append(((time.perf_counter() - started) / 3, parts[name]["forward+backward"] / 3,
                                 parts[name]["learner step"] / 3))
    medians = {name: sorted(r)[len(r) // 2] for name, r in rounds.items()}
    base = statistics.median(r[0] for r in rounds["fp32"])
    print(f"masked resnet18, density 0.2, batch 64, fused Adam, {args.threads} thread(s), medians of {args.rounds} rounds")
    for name, (total, fb, opt) in medians.items():
        print(f"{name:>38}: {1000 * total:6.0f} ms (forward+backward {1000 * fb:5.0f}, learner step {1000 * opt:4.0f}), "
              f"fp32/variant {base / total:.2f}")
    print(f"fp32/bf16 step time ratio (dstcl's layout): {base / medians['bf16, batches channels_last (dstcl)'][0]:.2f}")


if __name__ == "__main__":
    main()
