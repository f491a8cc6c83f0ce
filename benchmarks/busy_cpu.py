"""Wall time of a whole ``dstcl run`` on a quiet CPU and beside another busy process.

On a 2-core machine another process that keeps the cores busy (here: a PyTorch job with its own
threads, as a second run would be) used to slow a run up to ~18x, because OpenMP threads spin-wait for
a core they share. dstcl's command line makes idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``,
unless you set the variable yourself) and uses as many threads as the CPUs the process may use.

    python benchmarks/busy_cpu.py [--epochs 5] [--repeats 3] [--compare]

Each configuration runs ``--repeats`` times quiet and ``--repeats`` times busy, alternating; the
medians are compared. ``--compare`` also measures the run with OpenMP's default (spinning) wait
policy, for the record. The ratio is printed last.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import describe_machine

HOG = """
import torch
torch.set_num_threads({threads})
a = torch.randn(256, 256)
while True:
    a = torch.tanh(a @ a)
"""


def timed_run(env: dict, epochs: int, out: Path) -> float:
    command = [sys.executable, "-m", "dstcl.cli.main", "run", "--no-progress", "--epochs", str(epochs),
               "--out", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"dstcl run failed:\n{done.stderr}")
    return seconds


def measure(env: dict, epochs: int, repeats: int, hog_threads: int, out: Path) -> tuple[float, float]:
    quiet, busy = [], []
    for _ in range(repeats):
        quiet.append(timed_run(env, epochs, out))
        hog = subprocess.Popen([sys.executable, "-c", HOG.format(threads=hog_threads)],
                               env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"})
        try:
            time.sleep(1.5)  # let the other process occupy the cores
            busy.append(timed_run(env, epochs, out))
        finally:
            hog.kill()
            hog.wait()
    return statistics.median(quiet), statistics.median(busy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per task of the offline default run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hog-threads", type=int, default=2, help="threads of the other busy process")
    parser.add_argument("--compare", action="store_true", help="also measure OpenMP's spinning wait policy")
    args = parser.parse_args()
    print(describe_machine())
    print(f"offline default (digits, small CNN), {args.epochs} epochs per task; the other process: a PyTorch job "
          f"with {args.hog_threads} threads; medians of {args.repeats}")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.compare:
            spinning = {**base, "OMP_WAIT_POLICY": "ACTIVE"}
            q, b = measure(spinning, args.epochs, args.repeats, args.hog_threads, out)
            print(f"OpenMP spinning (OMP_WAIT_POLICY=ACTIVE): quiet {q:.1f} s, busy {b:.1f} s, ratio {b / q:.2f}")
        quiet, busy = measure(base, args.epochs, args.repeats, args.hog_threads, out)
        print(f"dstcl default: quiet {quiet:.1f} s, busy {busy:.1f} s")
    print(f"busy/quiet wall time ratio: {busy / quiet:.2f}")


if __name__ == "__main__":
    main()
