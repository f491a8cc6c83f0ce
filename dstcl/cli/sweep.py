"""``dstcl sweep``: run a grid of configurations, on this machine or on a Ray cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError

EPILOG = """examples:
  dstcl sweep grids/smoke-digits.yaml --out sweeps/smoke        a 1-minute grid on the CPU
  dstcl sweep grids/cifar100-10.yaml --out sweeps/c10 --dry-run list the runs and what is done
  dstcl sweep grids/cifar100-10.yaml --out sweeps/c10 --jobs 4  4 runs at once (one per GPU)
  dstcl sweep grids/cifar100-10.yaml --out /shared/c10 --executor ray --address auto
  dstcl sweep grids/cifar100-10.yaml --set data_dir=/data/cifar --set epochs=10

A run's directory is OUT/<hash of its resolved config>; a repeated sweep skips completed runs and
reruns unfinished ones. See docs/sweeps.md for the grid file format.
"""


def add_parser(sub) -> None:
    parser = sub.add_parser(
        "sweep", help="run a grid of configurations (locally or on Ray)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(execute=execute)
    parser.add_argument("grid", metavar="GRID.yaml", help="grid file: base, vary, include, exclude, seeds")
    parser.add_argument("--out", metavar="DIR", help="folder of the run directories (default sweeps/<grid name>)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and what would be done; run nothing")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="runs at once on this machine (with GPUs: one GPU per run, round robin)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local processes (default) or Ray tasks (pip install 'dstcl[ray]')")
    parser.add_argument("--address", metavar="ADDR",
                        help="Ray cluster to use (e.g. auto, ray://host:10001); default: a local Ray instance")
    parser.add_argument("--cpus-per-run", type=float, metavar="N", help="Ray: CPUs per run (default: grid resources, else 1)")
    parser.add_argument("--gpus-per-run", type=float, metavar="N",
                        help="Ray: GPUs per run (default: grid resources, else 1 when the cluster has GPUs)")
    parser.add_argument("--tensorboard", metavar="DIR", help="also write TensorBoard events, DIR/<run id> per run")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="set a config field for every run (repeatable), e.g. --set data_dir=/data or "
                             "--set threads=1")
    parser.add_argument("--fresh", action="store_true",
                        help="discard a run folder that holds another configuration's work (refused otherwise)")


def execute(args: argparse.Namespace) -> int:
    from ..run.environment import Terminated, stop_on_sigterm
    from ..sweep import format_summary, run_sweep
    from .output import error

    out = args.out or str(Path("sweeps") / Path(args.grid).stem)
    try:
        with stop_on_sigterm():  # SIGTERM stops the runs as Ctrl-C does, instead of leaving them orphaned
            result = run_sweep(
                args.grid, out, dry_run=args.dry_run, jobs=args.jobs, executor=args.executor, address=args.address,
                cpus=args.cpus_per_run, gpus=args.gpus_per_run, tensorboard=args.tensorboard,
                overrides=parse_overrides(args.overrides), fresh=args.fresh,
            )
    except KeyboardInterrupt as exc:
        how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        error(f"sweep stopped by {how}; the runs still going were stopped and keep their completed work. Run the "
              f"same dstcl sweep command again to finish them (completed runs are skipped, stopped ones resumed).")
        return 130
    if args.dry_run:
        return 0
    print(format_summary(result))
    print(f"report: dstcl report {out}")
    return 1 if result.failed else 0


def parse_overrides(items: list[str]) -> dict:
    """``["epochs=5", "data_dir=/x"]`` -> ``{"epochs": 5, "data_dir": "/x"}`` (values read as YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set needs FIELD=VALUE (e.g. --set epochs=5), got {item!r}.")
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            parsed = value
        out[key.strip().replace("-", "_")] = parsed
    return out
