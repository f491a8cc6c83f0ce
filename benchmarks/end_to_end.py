"""A whole ``dstcl run`` against a plain dense PyTorch loop over the same images and epochs.

Synthetic data in the real CIFAR-100 format (10 classes per task, 500 training and 100 test images per
class: 5,000 and 1,000 per task, 32 px), ResNet-18 at full width, density 0.2, ERK, random growth,
batch 64, 1 epoch per task. The dense loop is what a user would write without dstcl: read the pickles,
then per task a fresh ResNet-18 and Adam, shuffled batches, normalisation, the task's logits, backward,
step; no masks, no augmentation, no evaluation, no checkpoints, and torch's own ``nn.Conv2d``. Everything dstcl adds (masks and
isolation, DST updates, augmentation, the accuracy matrix, checkpoints, data checks, start-up) is the
difference. Both run as fresh subprocesses, back to back, with the same thread count.

    python benchmarks/end_to_end.py                          # the full size (tens of minutes on 2 cores)
    python benchmarks/end_to_end.py --tasks 2 --width 32     # a quick check (~2 min)
    python benchmarks/end_to_end.py --device cuda            # both sides on the GPU (default: the CPU)

The issue's setting "update every 400 steps" gives no update in a 78-step task (dstcl refuses a DST
run without any topology update), so the default is every 26 steps: 3 updates per task, DST included.
Prints each wall time, the peak resident memory of each process, and the ratios last. On a machine whose
speed drifts (shared hosts: 10-25 % between runs minutes apart), ``--repeat N`` alternates N pairs and
takes each side's fastest run.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine  # noqa: E402

from dstcl.train.evaluate import EVAL_MODES  # noqa: E402

MEAN = (0.5071, 0.4865, 0.4409)
STD = (0.2673, 0.2564, 0.2762)


def write_cifar100(root: Path, classes: int, train_per_class: int, test_per_class: int, seed: int = 0) -> Path:
    """Random images in the exact cifar-100-python layout (pixel values do not change the speed)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(classes), per_class)
        labels = labels[rng.permutation(len(labels))]
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        with open(folder / split, "wb") as handle:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist(),
                         b"filenames": [f"{split}_{i}.png".encode() for i in range(len(labels))]}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({b"fine_label_names": [f"class{c}".encode() for c in range(100)],
                     b"coarse_label_names": [f"super{c}".encode() for c in range(20)]}, handle)
    return folder


def plain(model):
    """The same ResNet-18 with torch's own ``nn.Conv2d`` (dstcl's ``Conv2d`` gathers small bf16 convolutions
    into matrix products, which a plain loop would not have): parameters and initialisation unchanged."""
    from torch import nn

    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.__class__ = nn.Conv2d
    return model


def dense_loop(data_dir: str, tasks: int, epochs: int, width: int, batch: int, precision: str, threads: int,
               device: str = "cpu") -> None:
    """The child process of the dense baseline (data and model on ``device``, as dstcl keeps them)."""
    import torch

    from dstcl.models import build_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with open(Path(data_dir) / "cifar-100-python" / "train", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    x_all = torch.from_numpy(np.asarray(raw[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)).to(device)
    y_all = torch.tensor(raw[b"fine_labels"]).to(device)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
    per_task = 10
    for task in range(tasks):
        keep = (y_all >= task * per_task) & (y_all < (task + 1) * per_task)
        x, y = x_all[keep], y_all[keep] - task * per_task
        model = plain(build_model("resnet18", num_classes=per_task * tasks, width=width)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(y), device=device)
            for start in range(0, len(y) - 1, batch):
                idx = order[start:start + batch]
                xb = (x[idx].float() - mean) / std
                with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    logits = model(xb)[:, task * per_task:(task + 1) * per_task]
                    loss = torch.nn.functional.cross_entropy(logits, y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()  # the wall time includes the queued GPU work


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident memory in GB) of one child process (its own peak, via wait4)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            out.seek(0)
            raise SystemExit(f"{' '.join(command[:6])} ... failed:\n{out.read()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024 / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--update-frequency", type=int, default=26)
    parser.add_argument("--batch-size", type=int, default=64, help="64 (the reference); the CPU study uses 32")
    parser.add_argument("--threads", type=int, default=None, help="default: the CPUs this process may use")
    parser.add_argument("--precision", choices=("both", "fp32", "bf16"), default="both")
    parser.add_argument("--eval", choices=EVAL_MODES, default="needed")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda / cuda:N: both sides run there")
    parser.add_argument("--repeat", type=int, default=1,
                        help="back-to-back pairs per precision; the ratios use each side's fastest run")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        data_dir, precision, threads = args.child
        dense_loop(data_dir, args.tasks, args.epochs, args.width, args.batch_size, precision, int(threads), args.device)
        return
    from dstcl.run.environment import available_cpus
    from dstcl.train.precision import cpu_has_native_bf16

    threads = args.threads or available_cpus()
    print(describe_machine())
    print(f"{args.tasks} tasks x 10 classes, 5000 train / 1000 test images per task, 32 px, resnet18 width "
          f"{args.width}, density 0.2, ERK, random growth every {args.update_frequency} steps, batch {args.batch_size}, "
          f"{args.epochs} epoch(s), {threads} thread(s), eval {args.eval}, device {args.device}")
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    if "bf16" in precisions and args.device == "cpu" and not cpu_has_native_bf16():
        print("bf16: skipped, this CPU has no native bf16 (it would be emulated, many times slower)")
        precisions = [p for p in precisions if p != "bf16"]
    env_python = [sys.executable]
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_cifar100(root / "data", 100, 500, 100)  # the reader checks every class has images
        for repeat in range(args.repeat):
            for precision in precisions:
                dense = timed(env_python + [__file__, "--tasks", str(args.tasks), "--epochs", str(args.epochs),
                                            "--width", str(args.width), "--batch-size", str(args.batch_size),
                                            "--device", args.device, "--child", str(root / "data"), precision,
                                            str(threads)])
                results.setdefault(f"dense {precision}", []).append(dense)
                print(f"dense loop ({precision}): {dense[0]:.1f} s, peak {dense[1]:.2f} GB", flush=True)
                run_dir = root / f"run-{precision}-{repeat}"
                command = env_python + ["-m", "dstcl.cli.main", "run", "--dataset", "cifar100", "--data-dir",
                                        str(root / "data"), "--no-download", "--num-classes", str(10 * args.tasks),
                                        "--tasks", str(args.tasks), "--backbone", "resnet18", "--width",
                                        str(args.width), "--sparsity", "0.8", "--init", "erk", "--growth", "random",
                                        "--update-frequency", str(args.update_frequency), "--batch-size", str(args.batch_size),
                                        "--epochs", str(args.epochs), "--threads", str(threads), "--precision",
                                        precision, "--eval", args.eval, "--device", args.device, "--no-progress",
                                        "--run-dir", str(run_dir)]
                run = timed(command)
                results.setdefault(f"dstcl {precision}", []).append(run)
                seconds = _phase_seconds(run_dir)
                print(f"dstcl run ({precision}): {run[0]:.1f} s (training {seconds['train']:.1f} s, evaluation "
                      f"{seconds['eval']:.1f} s = {100 * seconds['eval'] / seconds['train']:.1f} % of training, the "
                      f"rest {run[0] - seconds['train'] - seconds['eval']:.1f} s), peak {run[1]:.2f} GB", flush=True)
                per_pass = seconds["eval"] / seconds["passes"]
                print(f"  evaluation: {seconds['passes']} passes over 1000 images, {per_pass:.2f} s each; "
                      f"--eval acc measures {2 * args.tasks - 1} passes: about "
                      f"{100 * per_pass * (2 * args.tasks - 1) / seconds['train']:.1f} % of training at that pace",
                      flush=True)
    # with --repeat N, each side's fastest run: the one least slowed by whatever else the machine did
    best = {key: min(wall for wall, _ in runs) for key, runs in results.items()}
    if args.repeat > 1:
        print(f"fastest of {args.repeat} runs each: " + ", ".join(f"{key} {wall:.1f} s" for key, wall in best.items()))
    dense = best.get("dense fp32")
    if "bf16" in precisions:
        print(f"(for reference: the bf16 loop / the bf16 run: {best['dense bf16'] / best['dstcl bf16']:.2f})")
    for precision in precisions:
        base = dense if dense is not None else best[f"dense {precision}"]
        label = "" if precision == "fp32" else f" ({precision} run vs the fp32 loop)"
        print(f"dense-loop/dstcl wall time ratio{label}: {base / best[f'dstcl {precision}']:.2f}")


def _phase_seconds(run_dir: Path) -> dict[str, float]:
    """Training seconds of the run, from its task_end events."""
    train = 0.0
    for line in (run_dir / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "task_end":
            train += float(event.get("seconds") or 0.0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    evaluation = metrics.get("evaluation", {})
    return {"train": train, "eval": float(evaluation.get("seconds", float("nan"))),
            "passes": int(evaluation.get("measured", 0)) or 1}


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as dstcl's command line does, for both processes
    main()
