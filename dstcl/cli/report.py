"""``dstcl report``: tables (and figures) over the runs of a sweep or of chosen run directories."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DstclError
from .output import warn

EPILOG = """examples:
  dstcl report sweeps/cifar100-10                       Markdown tables on stdout
  dstcl report sweeps/cifar100-10 --format latex -o table.tex
  dstcl report sweeps/c5 sweeps/c10 sweeps/c20 --plots figures/
  dstcl report runs/20250101-120000-digits-a1b2c3       one run directory
  dstcl report sweeps/c10 --format csv --per-run        one row per run, full precision
"""


def add_parser(sub) -> None:
    from ..report import FORMATS, METRICS

    parser = sub.add_parser(
        "report", help="tables and plots over run directories (mean ± std over seeds)", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(execute=execute)
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="sweep output folders and/or run directories")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="output format (default markdown)")
    parser.add_argument("--metrics", default="acc,bwt,fwt",
                        help=f"metrics of the paper-shaped tables, comma-separated from {', '.join(METRICS)} "
                             "(default acc,bwt,fwt)")
    parser.add_argument("--per-run", action="store_true", help="also list every run (CSV: one row per run)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument("--plots", metavar="OUT", help="write PNG figures into folder OUT (needs matplotlib)")


EXTENSIONS = {"markdown": "md", "csv": "csv", "latex": "tex"}


def execute(args: argparse.Namespace) -> int:
    from ..report import METRICS, build_report, collect, render

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise DstclError(f"--metrics: unknown metric {unknown[0] if unknown else '(none)'!r}; valid: {', '.join(METRICS)}.")
    check_output_paths(args.output, args.plots, args.format)
    if args.plots:
        from ..report.plots import pyplot

        pyplot()  # matplotlib missing is said before any report is printed
    collection = collect(args.dirs)
    for kept, duplicate in collection.duplicates:
        warn(f"{duplicate} is a duplicate of {kept} (same settings and seed); counted once, from {kept}.")
    for path, reason in collection.unreadable:
        warn(f"{path} is left out: its {reason}.")
    report = build_report(collection, metrics)
    text = render(report, args.format, per_run=args.per_run)
    if args.output:
        write_output(Path(args.output), text if text.endswith("\n") else text + "\n", args.format)
        print(f"report written to {args.output}")
    else:
        print(text)
    if args.plots:
        from ..report.plots import write_plots

        files = write_plots(report, Path(args.plots))
        print(f"{len(files)} figures written to {args.plots}")
    return 0


def check_output_paths(output: str | None, plots: str | None, fmt: str) -> None:
    """Refuse an -o that is a folder and a --plots that is a file before any work is done."""
    if output is not None:
        path = Path(output)
        if path.is_dir():
            raise DstclError(
                f"-o {path} is a folder; -o takes the name of the file to write, e.g. -o "
                f"{path / ('report.' + EXTENSIONS.get(fmt, 'txt'))}. Nothing was written."
            )
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and not parent.is_dir():
            raise DstclError(f"-o {path}: {parent} is a file, not a folder, so {path} cannot be created; give a "
                             "path in a folder you can write to. Nothing was written.")
    if plots is not None:
        path = Path(plots)
        if path.exists() and not path.is_dir():
            raise DstclError(
                f"--plots {path} is a file; --plots takes a folder to write the PNG figures into (it is created "
                "if missing), e.g. --plots figures/. Nothing was written."
            )


def write_output(path: Path, text: str, fmt: str) -> None:
    from ..files import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DstclError(
            f"cannot write the report to {path}: {reason}. Give -o a file in a folder you can write to (e.g. -o "
            f"report.{EXTENSIONS.get(fmt, 'txt')}), or leave -o out to print the report."
        ) from None

