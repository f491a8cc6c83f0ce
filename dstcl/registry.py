"""Registries: one per kind of plugin (growth and drop criteria, density rules, backbones, data sets).

A registry is the single source of the names of its kind: config validation, grid checks, ``--help``
text and error messages all ask it, so a plugin's name shows up everywhere once registered. An
entry can declare **options** (:class:`Option`: a name, a type, a default, a help text, and the
accepted choices or range); they pass through the config generically (``--width 20`` goes to the
backbone that declares ``width``) and are checked by :meth:`Option.check`, their one owner.
"""

from __future__ import annotations

import difflib
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Mapping, Sequence, TypeVar

from .errors import ConfigError

T = TypeVar("T")
SCALARS = (bool, int, float, str)


@dataclass(frozen=True)
class Option:
    """A setting that a registered entry (a backbone, a data set) takes, with its one validation rule."""

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    result: bool = True  # False: cannot change results (left out of a run's identity)

    def check(self, value: Any, owner: str = "") -> Any:
        """``value`` coerced to the option's type, or a ConfigError saying what is accepted."""
        where = f"{owner} option {self.name}" if owner else self.name
        if value is None:
            if self.default is None:
                return None
            raise ConfigError(f"{where} needs a value; default: {self.default!r}.")
        coerced = coerce_scalar(value, self.type, where)
        if self.choices is not None and coerced not in self.choices:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, self.choices))}; got {value!r}.")
        if self.minimum is not None and coerced < self.minimum:
            raise ConfigError(f"{where} must be at least {self.minimum:g}, got {value!r}.")
        if self.maximum is not None and coerced > self.maximum:
            raise ConfigError(f"{where} must be at most {self.maximum:g}, got {value!r}.")
        return coerced

    def describe(self) -> str:
        shown = self.choices and not all(str(c) in self.help for c in self.choices)
        accepted = f" ({'|'.join(map(str, self.choices))})" if shown else ""
        default = "" if self.default is None else f" [default {self.default}]"
        return f"{self.help}{accepted}{default}"


def coerce_scalar(value: Any, kind: type, where: str) -> Any:
    """``value`` as ``kind`` (int, float, bool or str); strings from the command line are parsed."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.strip().lower() in ("true", "yes", "1")
        raise ConfigError(f"{where} must be true or false, got {value!r}.")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{where} must be an integer, got {value!r}.")
    if kind is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where} must be a number, got {value!r}.")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            shown = str(value)
            raise ConfigError(f"{where} must be a number in the range of a float, got "
                              f"{shown[:24] + '...' if len(shown) > 24 else shown}.") from None
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must be a number, got {value!r}.") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}.")
        return number
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where} must be a text value, got {value!r}.")
    return str(value)


def options_from_signature(fn: Callable[..., Any], skip: Sequence[str] = ()) -> tuple[Option, ...]:
    """Options of a plugin that declares none: its keyword parameters with a scalar default."""
    found = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in skip or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        if p.default is inspect.Parameter.empty or p.name.startswith("_"):
            continue
        if isinstance(p.default, SCALARS):
            found.append(Option(p.name, type(p.default), p.default))
    return tuple(found)


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered plugin: its name, the object, a one-line help, its options and free metadata."""

    name: str
    obj: T
    help: str = ""
    options: tuple[Option, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)


class Registry(Generic[T]):
    """Name -> :class:`Entry`. ``kind`` names the plugin kind in messages ("growth criterion")."""

    def __init__(self, kind: str, how_to_add: str = ""):
        self.kind = kind
        self.how_to_add = how_to_add
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T | None = None, *, help: str | None = None,
                 options: Sequence[Option] | None = None, override: bool = False, **meta: Any) -> Any:
        """Add ``obj`` under ``name``; without ``obj``, a decorator. A second object under a taken name is
        an error unless ``override=True``, so two plugins cannot silently replace each other."""
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}.")

        def add(thing: T) -> T:
            old = self._entries.get(name)
            if old is not None and old.obj is not thing and not override:
                raise ConfigError(f"a {self.kind} named {name!r} is already registered; choose another name "
                                  "or pass override=True to replace it.")
            text = help if help is not None else first_line(getattr(thing, "__doc__", None))
            self._entries[name] = Entry(name, thing, text, tuple(options or ()), dict(meta))
            return thing

        return add if obj is None else add(obj)

    def get(self, name: Any) -> T:
        return self.entry(name).obj

    def entry(self, name: Any) -> Entry[T]:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(self.unknown(name)) from None

    def unknown(self, name: Any) -> str:
        """The message for a name that is not registered: a suggestion and every valid name."""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        tail = f" {self.how_to_add}" if self.how_to_add else ""
        return f"unknown {self.kind} {name!r}{hint}; valid: {', '.join(self.names())}.{tail}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def help_text(self) -> str:
        """``name (help), name (help)``, for ``--help``."""
        return ", ".join(f"{e.name} ({e.help.rstrip('.')})" if e.help else e.name for e in self.entries())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and interactive sessions)."""
        self._entries.pop(name, None)

    def snapshot(self) -> dict[str, Entry[T]]:
        """The current entries, for :meth:`restore` (tests that register temporary plugins)."""
        return dict(self._entries)

    def restore(self, snapshot: Mapping[str, Entry[T]]) -> None:
        self._entries = dict(snapshot)


def first_line(doc: str | None) -> str:
    return (doc or "").strip().split("\n")[0].strip()
