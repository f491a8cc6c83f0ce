"""Declaring a setting once: its default, help, accepted values and whether it changes results.

Config dataclasses (``SparseConfig``, ``TrainConfig``, the run's sections) declare each field with
:func:`setting`; the command line, YAML and grid files, the run hash and the validation all read the
declaration, so a field's facts have one owner. :func:`check_fields` is the generic validation of
those declarations (type, choices, range); a config adds only its cross-field rules.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Iterable

from .errors import ConfigError
from .registry import Registry, coerce_scalar

Choices = Registry | tuple | Callable[[], Iterable[Any]] | None


def setting(default: Any, help: str, *, choices: Choices = None, minimum: float | None = None,
            maximum: float | None = None, above: float | None = None, below: float | None = None,
            result: bool = True, user: bool = True, metavar: str | None = None, added: bool = False,
            reference: Any = None) -> Any:
    """A dataclass field carrying its declaration in ``metadata``.

    ``minimum``/``maximum`` are inclusive bounds, ``above``/``below`` exclusive ones; ``result=False``
    marks a field that cannot change results (where or how a run executes: left out of its id);
    ``user=False`` keeps a library-only field out of the command line and config files. ``added=True``
    marks a result field added after runs were published whose default is what dstcl did before: at
    its default it is left out of the run id, so every earlier run keeps its id (and is found again).
    ``reference`` marks a *protocol switch*: the value that reproduces the reference code's behaviour
    where dstcl deliberately differs (``--protocol reference`` sets every switch to it; docs/algorithm.md).
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above,
            "below": below, "result": result, "user": user, "metavar": metavar, "added": added,
            "reference": reference}
    return dataclasses.field(default=default, metadata=meta)


def choices_of(field: dataclasses.Field) -> list[Any] | None:
    """The accepted values of a field (a registry's names are read now: plugins may have added some)."""
    choices = field.metadata.get("choices")
    if choices is None:
        return None
    if isinstance(choices, Registry):
        return choices.names()
    if callable(choices):
        return list(choices())
    return list(choices)


def scalar_type(field: dataclasses.Field, owner: type) -> type:
    """int, float, bool or str: the field's annotation without ``| None``."""
    hint = typing.get_type_hints(owner)[field.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    kind = args[0]
    return kind if kind in (int, float, bool, str) else object


def optional(field: dataclasses.Field, owner: type) -> bool:
    hint = typing.get_type_hints(owner)[field.name]
    return type(None) in typing.get_args(hint)


def check_value(field: dataclasses.Field, owner: type, value: Any, name: str | None = None) -> Any:
    """``value`` coerced to the field's type and checked against its declaration, or a ConfigError."""
    name = name or field.name
    if value is None:
        if optional(field, owner):
            return None
        raise ConfigError(f"{name} needs a value (got an empty one); default: {field.default!r}.")
    kind = scalar_type(field, owner)
    accepted = choices_of(field)
    if isinstance(value, bool) and kind is str and accepted and {"on", "off"} & set(map(str, accepted)):
        value = "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
    coerced = coerce_scalar(value, kind, name) if kind is not object else value
    meta = field.metadata
    if accepted is not None and coerced not in accepted:
        registry = meta.get("choices")
        if isinstance(registry, Registry):
            raise ConfigError(registry.unknown(coerced))
        raise ConfigError(f"{name} must be one of {', '.join(map(str, accepted))}; got {value!r}.")
    if isinstance(coerced, (int, float)) and not isinstance(coerced, bool):
        low, high, above, below = (meta.get(k) for k in ("minimum", "maximum", "above", "below"))
        if (low is not None and coerced < low) or (high is not None and coerced > high) \
                or (above is not None and not coerced > above) or (below is not None and not coerced < below):
            raise ConfigError(f"{name} must be {describe_range(meta, kind)}, got {value!r}.")
    return coerced


def describe_range(meta: dict, kind: type = float) -> str:
    """``a positive integer``, ``an integer from 2 to 1048576``, ``a number in (0, 1e+38]`` ..."""
    low, high, above, below = (meta.get(k) for k in ("minimum", "maximum", "above", "below"))
    if kind is int:
        if low == 1 and high is None:
            return "a positive integer"
        if low is not None and high is not None:
            return f"an integer from {low:g} to {high:g}"
        if low is not None:
            return f"an integer >= {low:g}"
    left = f"[{low:g}" if low is not None else (f"({above:g}" if above is not None else "(-inf")
    right = f"{high:g}]" if high is not None else (f"{below:g})" if below is not None else "inf)")
    return f"a number in {left}, {right}"


def check_fields(obj: Any) -> None:
    """Check every declared field of the dataclass instance ``obj`` (types, choices, ranges)."""
    owner = type(obj)
    for field in dataclasses.fields(obj):
        if "help" not in field.metadata:
            continue
        value = getattr(obj, field.name)
        coerced = check_value(field, owner, value)
        if coerced != value or type(coerced) is not type(value):
            if not (isinstance(value, int) and not isinstance(value, bool) and isinstance(coerced, float)):
                raise ConfigError(f"{field.name} must be {type_word(scalar_type(field, owner))}, got {value!r}.")


def type_word(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "a text value"}.get(kind, "a value")


def declared(cls: type) -> list[dataclasses.Field]:
    """The fields of ``cls`` declared with :func:`setting` and meant for users (flags, config files)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata and f.metadata.get("user", True)]


