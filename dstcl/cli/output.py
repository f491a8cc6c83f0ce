"""Printing for the command line: one-paragraph errors on stderr."""

from __future__ import annotations

import sys
import textwrap


def error(message: str) -> None:
    """Print ``dstcl: error: message`` wrapped as one paragraph on stderr."""
    _paragraph("error", message)


def warn(message: str) -> None:
    """Print ``dstcl: warning: message`` wrapped as one paragraph on stderr (the command goes on)."""
    _paragraph("warning", message)


def _paragraph(kind: str, message: str) -> None:
    text = textwrap.fill(f"dstcl: {kind}: {message}", width=100, break_long_words=False, break_on_hyphens=False)
    print(text, file=sys.stderr)
