"""YAML loading that remembers line numbers, so a mistake in a grid or config file is reported where it is.

PyYAML's safe loader drops the position of every value. Here mappings and lists are built as
:class:`LineDict` / :class:`LineList`, plain ``dict`` / ``list`` subclasses that also record the
(1-based) line of each key and item. Duplicate keys are an error (plain YAML silently keeps the
last one, which hides typos such as two ``sparsity:`` lines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, DstclError


class GridError(DstclError):
    """A grid file is missing, unreadable or has a mistake; the message names the line."""


class _DuplicateKey(Exception):
    """Raised inside the loader; turned into the caller's error class with the file named."""


class LineDict(dict):
    """A dict that knows the line of each key (``lines[key]``) and its own line (``line``)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines: dict[Any, int] = {}

    def line_of(self, key: Any) -> int:
        return self.lines.get(key, self.line)


class LineList(list):
    """A list that knows the line of each item (``lines[i]``) and its own line (``line``)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lines: list[int] = []

    def line_of(self, index: int) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)  # anchors and << merge keys
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _DuplicateKey(f"line {line}: a key must be a plain name, not {type(key).__name__}.") from None
        if key in out:
            raise _DuplicateKey(f"line {line}: {key!r} is given twice in the same block (first at line "
                                f"{out.lines[key]}); keep one.")
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = line
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.lines = [child.start_mark.line + 1 for child in node.value]
    out.line = node.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_with_lines(text: str, source: str = "<grid>", *, what: str = "grid file",
                         error: type[DstclError] = GridError) -> Any:
    """Parse ``text``; mappings become LineDict, lists LineList. Syntax errors and duplicate keys name the line."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise error(f"{what} {source}, {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
            problem += f" ({context} at line {context_mark.line + 1})"
        raise error(f"{what} {source}{where} is not valid YAML: {problem}.") from None


def read_yaml_file(path: str | Path, *, what: str = "grid file", error: type[DstclError] = GridError) -> Any:
    """Read and parse a YAML file with line numbers; a missing or unreadable file is a clear ``error``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist.") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder; give the path of a .yaml file.") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what} {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 "
                    "(YAML or JSON).") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}.") from None
    return load_yaml_with_lines(text, str(path), what=what, error=error)


def read_config_file(path: str | Path) -> Any:
    """A run's YAML/JSON config file, with the same checks as a grid file (errors are ConfigErrors)."""
    return read_yaml_file(path, what="config file", error=ConfigError)
