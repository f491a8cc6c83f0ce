"""A folder of cached, derived data (decoded image arrays, archive listings), keyed by content.

Keys are hashes of whatever determines the content (a fingerprint of the source files, the image
size, the decoder version), so a changed source is simply a cache miss; stale entries are never
read. Writes are atomic (temporary file + rename), so a killed process cannot leave a half-written
entry, and an unreadable entry counts as a miss. A cache that cannot be written only costs speed:
it warns and carries on.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write_bytes


class DataCacheWarning(UserWarning):
    """The data cache could not be written; data are decoded again next time."""


class DiskCache:
    """Content-keyed cache entries under ``folder`` (``None`` disables caching)."""

    def __init__(self, folder: Path | None):
        self.folder = None if folder is None else Path(folder)
        self._warned = False

    @staticmethod
    def key(*parts: Any) -> str:
        """A stable hash of JSON-serialisable ``parts``."""
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

    def _path(self, key: str, suffix: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}{suffix}"

    def load_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        path = self._path(key, ".npz")
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return None

    def save_arrays(self, key: str, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self._write(self._path(key, ".npz"), buffer.getvalue())

    def load_json(self, key: str) -> Any:
        path = self._path(key, ".json")
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def save_json(self, key: str, obj: Any) -> None:
        self._write(self._path(key, ".json"), json.dumps(obj).encode("utf-8"))

    def _write(self, path: Path | None, data: bytes) -> None:
        if path is None:
            return
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:
            if not self._warned:
                warnings.warn(f"cannot write the data cache in {self.folder} ({exc.strerror or exc}); "
                              "decoded data will not be reused. Pass a writable cache folder.",
                              DataCacheWarning, stacklevel=3)
                self._warned = True
