"""Channel-structured DST: what a task's subnetwork costs when it runs physically smaller.

At 80 / 90 / 95 % sparsity (uniform channel budgets), one task's subnetwork of ResNet-18 on a batch of
32 px images: forward time of the gathered network (dense convolutions on the active channels,
``dstcl.models.gather``) against the masked full-size network, and the masked training step against a
dense one (dstcl trains the masked network at full size; see docs/algorithm.md). Alternating rounds in
one process, medians; the forward ratio at 90 % is printed last.

    python benchmarks/structured.py [--width 64] [--batch 128] [--threads N]
"""

from __future__ import annotations

import argparse

import torch

from _common import alternate, describe_machine
from dstcl.models import build_model
from dstcl.models.gather import computed_channels, gather_channels
from dstcl.sparse import SparseConfig, SparseLearner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(describe_machine())
    print(f"resnet18 width {args.width}, 100 classes, batch {args.batch} of 3x32x32; medians of {args.rounds} rounds")
    device = torch.device("cpu")
    x = torch.randn(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    ratios, train_ratios = {}, {}
    for sparsity in (0.8, 0.9, 0.95):
        torch.manual_seed(0)
        model = build_model("resnet18", num_classes=100, width=args.width)
        cfg = SparseConfig(density=round(1 - sparsity, 6), init="uniform", structure="channel", free_init="kaiming",
                           update_frequency=10**6)
        learner = SparseLearner(model, cfg, num_tasks=1, heads={"classifier.weight": [slice(0, 100)]})
        learner.start_task(0, 10**6)
        optimizer = learner.make_optimizer("adam", lr=1e-3)
        model.eval()
        gathered = gather_channels(model, (3, 32, 32))
        model.train()
        live = gather_channels(model, (3, 32, 32), live=True)  # --channel-training gathered
        dense = build_model("resnet18", num_classes=100, width=args.width)
        dense_opt = torch.optim.Adam(dense.parameters(), lr=1e-3)

        def masked_forward():
            with torch.inference_mode():
                model(x)

        def gathered_forward():
            with torch.inference_mode():
                gathered(x)

        def masked_step():
            model.train()
            loss = torch.nn.functional.cross_entropy(model(x)[:, :10], y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            learner.step(optimizer)

        def gathered_step():
            loss = torch.nn.functional.cross_entropy(live(x)[:, :10], y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            learner.step(optimizer)

        def dense_step():
            loss = torch.nn.functional.cross_entropy(dense(x)[:, :10], y)
            dense_opt.zero_grad(set_to_none=True)
            loss.backward()
            dense_opt.step()

        times = alternate({"masked": masked_forward, "gathered": gathered_forward}, device, args.rounds, 2, warmup=1)
        steps = alternate({"masked step": masked_step, "gathered step": gathered_step, "dense step": dense_step}, device,
                          args.rounds, 1, warmup=1)
        train_ratios[sparsity] = steps["masked step"] / steps["gathered step"]
        ratios[sparsity] = times["masked"] / times["gathered"]
        active = computed_channels(gathered)
        print(f"sparsity {sparsity:.0%}: forward masked {1000 * times['masked']:.1f} ms, gathered "
              f"{1000 * times['gathered']:.1f} ms ({ratios[sparsity]:.2f}x; {active} active channels); training step "
              f"masked {1000 * steps['masked step']:.1f} ms vs dense {1000 * steps['dense step']:.1f} ms "
              f"({steps['masked step'] / steps['dense step']:.2f}), gathered {1000 * steps['gathered step']:.1f} ms "
              f"({train_ratios[sparsity]:.2f}x faster than masked)", flush=True)
    print(f"gathered/masked training step speed-up at 90 % sparsity: {train_ratios[0.9]:.2f}")
    print(f"gathered/masked forward speed-up at 90 % sparsity: {ratios[0.9]:.2f}")


if __name__ == "__main__":
    main()
