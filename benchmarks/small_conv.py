"""bf16 convolutions with few output positions: oneDNN against dstcl's gathered matrix products.

First, every distinct convolution of ResNet-18 (``--width``, ``--image-size`` px, batch 64, under CPU
bf16 autocast, channels-last input): forward + backward with oneDNN (``F.conv2d``) and with
``dstcl.models.conv.gemm_conv2d``, the ratio, and whether ``use_gemm`` picks the gathered path.
Then one masked ResNet-18 training step (density 0.2, fused Adam, as ``bf16_layout.py``) in fp32, in
bf16 with oneDNN everywhere, and in bf16 as dstcl runs it; alternated in one process, medians of
``--rounds`` rounds of 3 steps. Last line: bf16 step time with oneDNN everywhere / dstcl's (above 1:
the rule pays).

    python benchmarks/small_conv.py --threads 2
    python benchmarks/small_conv.py --width 20 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import alternate, describe_machine, learner_in_task_1  # noqa: E402

from dstcl.models import build_model  # noqa: E402
from dstcl.models import conv as conv_module  # noqa: E402
from dstcl.train.precision import cpu_has_native_bf16, memory_format  # noqa: E402


@contextlib.contextmanager
def onednn_everywhere():
    """Run every dstcl Conv2d through oneDNN (the rule never picks the gathered path)."""
    rule = conv_module.use_gemm
    conv_module.use_gemm = lambda positions, channels: False
    try:
        yield
    finally:
        conv_module.use_gemm = rule


def layer_shapes(width: int, image_size: int) -> list[tuple]:
    """Distinct (in channels, out channels, kernel, stride, padding, input size) of ResNet-18's convolutions."""
    model = build_model("resnet18", num_classes=10, width=width)
    shapes: list[tuple] = []

    def hook(module: nn.Conv2d, inputs: tuple) -> None:
        shape = (module.in_channels, module.out_channels, module.kernel_size[0], module.stride[0],
                 module.padding[0], inputs[0].shape[-1])
        if shape not in shapes:
            shapes.append(shape)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.randn(2, 3, image_size, image_size))
    for handle in handles:
        handle.remove()
    return shapes


def layer_table(width: int, image_size: int, rounds: int) -> None:
    print(f"resnet18 width {width}, {image_size} px, batch 64, bf16, forward + backward per layer shape")
    for cin, cout, k, stride, pad, size in layer_shapes(width, image_size):
        x = torch.randn(64, cin, size, size, dtype=torch.bfloat16).contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        w = torch.randn(cout, cin, k, k, dtype=torch.bfloat16, requires_grad=True)
        grad = torch.randn_like(F.conv2d(x, w, stride=stride, padding=pad))
        times = alternate({
            "onednn": lambda: F.conv2d(x, w, stride=stride, padding=pad).backward(grad),
            "gathered": lambda: conv_module.gemm_conv2d(x, w, None, (stride, stride), (pad, pad)).backward(grad),
        }, torch.device("cpu"), rounds=rounds, reps=3)
        out = (size + 2 * pad - k) // stride + 1
        picked = conv_module.use_gemm(out * out, cout)
        print(f"  {cin:4d} -> {cout:4d}, {k}x{k} stride {stride}, output {out}x{out}: oneDNN {1000 * times['onednn']:6.2f} ms, "
              f"gathered {1000 * times['gathered']:6.2f} ms, oneDNN/gathered {times['onednn'] / times['gathered']:.2f}"
              f"{'  <- dstcl gathers' if picked else ''}")


def make_step(bf16: bool, onednn: bool, width: int, image_size: int):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=100, width=width)
    learner, optimizer = learner_in_task_1(model)
    x = torch.randn(64, 3, image_size, image_size)
    x = x.contiguous(memory_format=memory_format("bf16" if bf16 else "fp32", torch.device("cpu"), model))
    y = torch.randint(0, 10, (64,))

    def step() -> None:
        with onednn_everywhere() if onednn else contextlib.nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x)[:, 10:20], y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            learner.step(optimizer)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_machine())
    if not cpu_has_native_bf16():
        print("bf16: skipped, this CPU has no native bf16 (it would be emulated, many times slower)")
        return
    layer_table(args.width, args.image_size, args.rounds)
    steps = {"fp32": make_step(False, False, args.width, args.image_size),
             "bf16, oneDNN everywhere": make_step(True, True, args.width, args.image_size),
             "bf16, dstcl (gathered where use_gemm)": make_step(True, False, args.width, args.image_size)}
    times = alternate(steps, torch.device("cpu"), rounds=args.rounds, reps=3, warmup=1)
    print(f"masked resnet18 step, width {args.width}, density 0.2, batch 64, fused Adam, {args.threads} thread(s), "
          f"medians of {args.rounds} rounds of 3 steps")
    for name, seconds in times.items():
        print(f"  {name:>38}: {1000 * seconds:6.0f} ms, fp32/this {times['fp32'] / seconds:.2f}")
    print(f"bf16 step time, oneDNN everywhere / dstcl's: "
          f"{times['bf16, oneDNN everywhere'] / times['bf16, dstcl (gathered where use_gemm)']:.2f}")


if __name__ == "__main__":
    main()
