"""Checks of grid-file keys and values, each reported with its line, before anything runs.

A value is checked by the declaration of its config field (:func:`dstcl.config.check_field`, the
same rule ``dstcl run`` applies); options of backbones and data sets are checked when each point is
resolved (they depend on the point's backbone and data set).
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Iterable

from ..config import FIELD_NAMES, PRESETS, PROTOCOL, PROTOCOLS, SPARSITY, all_option_names, check_field
from ..errors import ConfigError
from ..yamlfile import GridError


def run_keys() -> list[str]:
    """Keys a run may set: every config field, the density shorthand, the preset, and every option a
    registered backbone or data set declares (read now: plugins may have added some)."""
    return [*FIELD_NAMES, "density", "preset", PROTOCOL, *sorted(all_option_names() - set(FIELD_NAMES))]


def check_value(key: str, value: Any) -> str | None:
    """Why ``value`` is not valid for ``key`` (with the valid options), or None if it is."""
    from ..sparse import parse_growth

    if not is_scalar(value):
        return (f"{key} must be a single value, not a {kind_of(value)} ({show(value)}); valid: {valid_options(key)}"
                + (f" (to try several values, list them under vary: {key}: [a, b])" if key != "preset" else
                   " (to try several presets, list them under vary: preset: [a, b])"))
    if key == "preset":
        return None if value in PRESETS else f"unknown preset {value!r}; valid presets: {', '.join(PRESETS)}"
    if key == PROTOCOL:
        return None if value in PROTOCOLS else f"protocol must be one of {', '.join(PROTOCOLS)}, got {value!r}"
    if key == "density":
        from ..sparse.density import check_density

        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"density must be a number in (0, 1] (density = 1 - sparsity), got {value!r}"
        try:
            check_density(value)
        except ConfigError as exc:
            return str(exc).rstrip(".")
        return None
    if key not in FIELD_NAMES:
        return None  # a backbone's or data set's option: checked with the point's backbone and data set
    try:
        coerced = check_field(key, value)
        if key == "growth":
            parse_growth(coerced)
    except ConfigError as exc:
        return str(exc).rstrip(".")
    except OverflowError:  # an integer too large for a float
        return f"{key} must be a number in the range of a float, got {show(value)}"
    return None


def valid_options(key: str) -> str:
    """What ``key`` accepts, in words, from its declaration (for error messages)."""
    from ..config import FLAT
    from ..settings import choices_of, scalar_type, type_word
    from ..sparse import GROW

    if key == "preset":
        return ", ".join(PRESETS)
    if key == "density":
        return "a number in (0, 1] (density = 1 - sparsity)"
    if key == PROTOCOL:
        return ", ".join(PROTOCOLS)
    if key == SPARSITY:
        return "a number in [0, 1) (0.8 = 80 % inactive)"
    if key == "growth":
        return f"{', '.join(GROW.names())}, or a schedule such as random@0-4,gradient"
    if key not in FLAT:
        return "a single value of the option"
    section, field = FLAT[key]
    choices = choices_of(field)
    if choices is not None:
        return ", ".join(map(str, choices))
    from ..config import SECTIONS

    return type_word(scalar_type(field, SECTIONS[section]))


def is_scalar(value: Any) -> bool:
    """True for a single YAML value (text, number, boolean, null, date), False for a list or a mapping."""
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return False
    try:
        hash(value)
    except TypeError:
        return False
    return True


def kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__


def show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Problems:

    """Collects the mistakes of one grid file so they are all reported at once."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[tuple[int, str]] = []

    def add(self, line: int, message: str) -> None:
        self.items.append((line, message))

    def raise_if_any(self) -> None:
        if not self.items:
            return
        shown = sorted(self.items, key=lambda item: item[0])[:10]
        parts = [f"{'command line (--set)' if line == 0 else f'line {line}'}: {message}." for line, message in shown]
        more = len(self.items) - len(shown)
        tail = f" ({more} more problems not shown.)" if more > 0 else ""
        head = f"grid file {self.source} has {len(self.items)} problem{'s' if len(self.items) > 1 else ''}: "
        raise GridError(head + " ".join(parts) + tail + " Nothing was run.")


RAY_RESOURCE_UNIT = 1e-4  # Ray rejects fractions of a CPU or GPU finer than this


def check_resource(kind: str, amount: Any, name: str | None = None) -> str | None:
    """Why ``amount`` is not a valid per-run number of ``kind`` ("cpus" or "gpus") for Ray, or None.

    ``name`` is how the message calls the setting (default: ``kind``).

    CPUs: a finite number above 0; GPUs: a finite number of at least 0. Fractions are allowed (0.5 CPU,
    0.25 GPU: several runs share one), down to Ray's unit of 0.0001.
    """
    name = name or kind
    if kind == "cpus":
        wanted = "a finite number greater than 0 (fractions such as 0.5 are allowed)"
    else:
        wanted = "a finite number of at least 0 (fractions such as 0.25 share a GPU between runs)"
    if isinstance(amount, bool) or not isinstance(amount, (int, float)):
        return f"{name} must be {wanted}, got {show(amount)}"
    if amount > 1e9 and amount != math.inf:  # also an integer too large for a float (math.isfinite would fail)
        return f"{name} must be {wanted} and not more than a cluster can have, got {show(amount)}"
    if (isinstance(amount, float) and not math.isfinite(amount)) or amount < 0 or (kind == "cpus" and amount == 0):
        return f"{name} must be {wanted}, got {amount!r}"
    if 0 < amount < RAY_RESOURCE_UNIT:
        return f"{name} must be 0 or at least {RAY_RESOURCE_UNIT:g} (Ray's smallest unit), got {amount!r}"
    return None
