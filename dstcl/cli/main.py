"""The ``dstcl`` command line: a dispatcher over subcommands.

Each subcommand is a module with ``add_parser(subparsers)`` that sets ``execute`` as its default.
User mistakes (bad options, missing data, corrupt files) are printed as one paragraph and exit with
status 2; a run that fails after starting keeps its run directory and exits with status 1.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from ..errors import DstclError
from ..plugins import load_plugins
from . import report, run, sweep
from .output import error

COMMANDS = [run, sweep, report]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dstcl", description="Continual learning with dynamic sparse training.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `dstcl report DIR | head`: the reader left, which is not an error of ours
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        except (OSError, ValueError):
            pass
        return 141


def _main(argv: Sequence[str] | None) -> int:
    try:
        load_plugins()
    except DstclError as exc:
        error(str(exc))
        return 2
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed its usage error (or --help)
        return int(exc.code or 0)
    if getattr(args, "execute", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.execute(args) or 0)
    except DstclError as exc:
        error(str(exc))
        return 2
    except KeyboardInterrupt:
        error("interrupted; completed work is kept in the run directory.")
        return 130
    except BrokenPipeError:
        raise  # the reader of our output left: handled quietly by main()
    except OSError as exc:  # disk full, permissions, a path that is a file: what the system said, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        error(f"a file operation failed{where}: {exc.strerror or exc}. Completed work is kept; fix the path or "
              "free space and run again (a started run continues with --resume).")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
