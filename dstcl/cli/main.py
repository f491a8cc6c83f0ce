"""The ``dstcl`` command line: a dispatcher over subcommands.

Each subcommand is a module with ``add_parser(subparsers)`` that sets ``execute`` as its default.
User mistakes (bad options, missing data, corrupt files) are printed as one paragraph and exit with
status 2; a run that fails after starting keeps its run directory and exits with status 1.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from typing import Sequence

# Before anything imports torch (plugins included): idle OpenMP threads sleep instead of spinning, so a
# run beside another busy process is not slowed many times over (benchmarks/busy_cpu.py). A value the
# user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .. import __version__
from ..errors import DstclError
from ..plugins import load_plugins
from . import export, predict, report, run, similarity, sweep
from .output import error

COMMANDS = [run, sweep, report, export, predict, similarity]


class Parser(argparse.ArgumentParser):
    """argparse, plus a "did you mean" for an unknown flag or subcommand."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        unknown = re.match(r"unrecognized arguments: (\S+)", message)
        if unknown:
            flags = [s for a in self._actions for s in a.option_strings]
            for sub in (a for a in self._actions if isinstance(a, argparse._SubParsersAction)):
                flags += [s for p in sub.choices.values() for a in p._actions for s in a.option_strings]
            flag = unknown.group(1).split("=")[0]
            close = difflib.get_close_matches(flag, flags, n=1)
            if close:
                message += f" (did you mean {close[0]}?)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="dstcl", description="Continual learning with dynamic sparse training.")
    parser.add_argument("--version", action="version", version=f"dstcl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
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
        error(str(exc) + _resume_hint(exc))
        return 2
    except KeyboardInterrupt as exc:
        hint = _resume_hint(exc)
        error(f"interrupted; completed work is kept{hint or ' in the run directory.'}")
        return 130
    except BrokenPipeError:
        raise  # the reader of our output left: handled quietly by main()
    except OSError as exc:  # disk full, permissions, a path that is a file: what the system said, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        hint = _resume_hint(exc) or " (a started run continues with dstcl run --resume RUN_DIR)."
        error(f"a file operation failed{where}: {exc.strerror or exc}. Completed work is kept; fix the path or "
              f"free space and run again{hint}")
        return 1


def _resume_hint(exc: BaseException) -> str:
    """``; resume with: dstcl run --resume DIR`` when the exception left an unfinished run behind."""
    folder = getattr(exc, "dstcl_run_dir", None)
    if not folder or f"dstcl run --resume {folder}" in str(exc):  # the message says it already
        return ""
    return f"; resume with: dstcl run --resume {folder}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
