"""``dstcl export``: a completed run as one compact ``.dstcl`` model file."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    parser = sub.add_parser("export", help="write a completed run as one compact model file (.dstcl)",
                            description="Write the union of the tasks' owned weights, each task's packed mask, the "
                                        "task heads, per-task BatchNorm statistics, class names and preprocessing "
                                        "of a completed run into one file that dstcl.load and dstcl predict read.")
    parser.set_defaults(execute=execute)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a completed run directory")
    parser.add_argument("-o", "--output", metavar="FILE", required=True, help="the model file to write (model.dstcl)")


def execute(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..deploy import export_run
    from ..errors import DstclError

    if Path(args.output).is_dir():
        raise DstclError(f"-o {args.output} is a folder; give the name of the file to write, e.g. -o "
                         f"{Path(args.output) / 'model.dstcl'}.")
    if not Path(args.output).parent.is_dir():  # said before the work; export_run checks it again when writing
        raise DstclError(f"folder {Path(args.output).parent} does not exist; create it first or choose another -o.")
    sizes = export_run(args.run_dir, args.output)
    print(f"{args.output}: {sizes.describe()}")
    return 0
