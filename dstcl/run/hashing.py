"""The identity of a run: a short, stable hash of the settings that can change its results.

Two grid points that resolve to the same configuration are the same run, so the hash is taken over
the *resolved* config, not over how the grid spelled it (``density: 0.1`` and ``sparsity: 0.9``, a
preset or its fields written out, all give one hash). Settings declared ``result=False`` (where or
how a run executes: output folder, device, thread count, data path, progress bars, checkpoint budget)
are left out, so a sweep moved to another machine, data path or GPU still finds its finished runs.
Bit-identical results additionally need the same thread count, torch version and device
(docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

from ..config import NON_RESULT_FIELDS, RunConfig, result_keys

HASH_LENGTH = 12
__all__ = ["HASH_LENGTH", "NON_RESULT_FIELDS", "canonical_json", "canonical_value", "config_hash", "result_settings"]


def result_settings(config: RunConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The settings of ``config`` that can change results (a RunConfig or a config.json dict)."""
    values = config.flat() if isinstance(config, RunConfig) else dict(config)
    keys = result_keys(values)
    return {k: v for k, v in values.items() if k in keys}


def canonical_json(settings: Mapping[str, Any]) -> str:
    """Sorted keys, no whitespace, floats to 12 significant digits (0.1 + 0.8 == 0.9 here)."""
    return json.dumps(canonical_value(dict(settings)), sort_keys=True, separators=(",", ":"))


def config_hash(config: RunConfig | Mapping[str, Any]) -> str:
    """First 12 hex digits of the SHA-256 of the canonical JSON of the result-changing settings."""
    digest = hashlib.sha256(canonical_json(result_settings(config)).encode("utf-8")).hexdigest()
    return digest[:HASH_LENGTH]


def canonical_value(value: Any) -> Any:
    """A JSON value with floats at 12 significant digits, so equal settings compare and hash equal."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        rounded = float(f"{value:.12g}")
        return int(rounded) if rounded.is_integer() else rounded
    if isinstance(value, dict):
        return {str(k): canonical_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    return str(value)
