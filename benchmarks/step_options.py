"""Which execution options make dstcl's masked training step faster on this machine.

One ResNet-18 masked training step (a ``SparseLearner`` at density 0.2, Adam, batch 64 of 32 px images)
in several variants, measured in alternating rounds in one process (medians): the default; channels_last
memory format; Adam with ``foreach``; Adam ``fused``; ``torch.compile`` of the model (compile time
reported separately); bf16 autocast (where the CPU has it natively). Each line prints the variant's
time and its ratio to the default; the best ratio is printed last. docs/performance.md records what
was kept.

    python benchmarks/step_options.py [--width 64] [--batch 64] [--rounds 5] [--no-compile]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import alternate, describe_machine
from dstcl.models import build_model
from dstcl.sparse import SparseConfig, SparseLearner
from dstcl.train.precision import cpu_has_native_bf16


def make(width: int, *, channels_last: bool = False, adam: dict | None = None, compiled: bool = False):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=100, width=width)
    learner = SparseLearner(model, SparseConfig(density=0.2, update_frequency=10**6), num_tasks=1,
                            heads={"classifier.weight": [slice(0, 100)]})
    learner.start_task(0, 10**6)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(list(learner.params.values()), lr=1e-3, **(adam or {}))
    learner._checked_optimizer = id(optimizer)
    forward = torch.compile(model) if compiled else model
    return model, learner, optimizer, forward


def step_fn(width: int, batch: int, precision: str = "fp32", **options):
    model, learner, optimizer, forward = make(width, **options)
    x = torch.randn(batch, 3, 32, 32)
    if options.get("channels_last"):
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        model.train()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = torch.nn.functional.cross_entropy(forward(x)[:, :10], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        learner.step(optimizer)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    print(describe_machine())
    print(f"masked resnet18 width {args.width}, density 0.2, batch {args.batch} of 3x32x32, Adam; medians of "
          f"{args.rounds} rounds")
    variants = {
        "default": step_fn(args.width, args.batch),
        "channels_last": step_fn(args.width, args.batch, channels_last=True),
        "adam foreach": step_fn(args.width, args.batch, adam={"foreach": True}),
        "adam fused": step_fn(args.width, args.batch, adam={"fused": True}),
    }
    if cpu_has_native_bf16():
        variants["bf16 autocast"] = step_fn(args.width, args.batch, precision="bf16")
    if not args.no_compile:
        compiled = step_fn(args.width, args.batch, compiled=True)
        started = time.perf_counter()
        compiled()
        print(f"torch.compile: first step (compilation) {time.perf_counter() - started:.1f} s")
        variants["torch.compile"] = compiled
    times = alternate(variants, torch.device("cpu"), args.rounds, 3, warmup=2)
    base = times["default"]
    for name, seconds in times.items():
        print(f"{name:>14}: {1000 * seconds:7.1f} ms per step, default/variant {base / seconds:.2f}")
    best = max((n for n in times if n != "default"), key=lambda n: base / times[n])
    print(f"best speed-up over the default step ({best}): {base / times[best]:.2f}")


if __name__ == "__main__":
    main()
