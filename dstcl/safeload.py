"""Reading torch files without running code, and digests that tell a whole file from a damaged one.

A run directory or model file someone shares is input like any other: ``torch.load`` with
``weights_only=False`` would unpickle whatever the file holds, so a crafted ``state.pt`` could run a
command. Every torch file dstcl reads goes through :func:`load_torch`: PyTorch's restricted unpickler
(``weights_only=True``: tensors, numbers, strings, lists, dicts) plus an explicit allow-list of the
few data-only types dstcl itself writes (numpy arrays of packed mask bits). Anything else is refused
with :class:`UnsafeFileError`, naming the object, before any of it is built.

:func:`file_digest` (BLAKE2b of the bytes) is what a run records for each final file, so a missing,
truncated or altered file is found before it is used (:mod:`dstcl.run.integrity`).
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DstclError


class DamagedFileError(DstclError):
    """A file is missing, truncated, altered or not the kind of file it should be."""


class UnsafeFileError(DamagedFileError):
    """A file holds objects whose unpickling could run code; it was not loaded."""


def _allowed() -> list:
    """Data-only types dstcl's own files contain besides tensors: numpy arrays (packed mask bits)."""
    from numpy import dtypes

    # bytes: numpy pickles an empty array's data as bytes() (building bytes runs no code)
    allowed: list = [bytes, np.ndarray, np.dtype, *(getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType"))]
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            allowed.append(getattr(__import__(module, fromlist=["_reconstruct"]), "_reconstruct"))
        except (ImportError, AttributeError):
            pass
    return allowed


def load_torch(path: str | Path, what: str) -> Any:
    """The contents of the torch file ``path`` (a ``what``, for messages), loaded without running code."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_allowed()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DamagedFileError(f"{path} is missing: the {what} is not there.") from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if found or "Weights only load failed" in str(exc):
            name = found.group(1) if found else "an object of an unknown kind"
            raise UnsafeFileError(
                f"{path} holds {name}, which a dstcl {what} never contains; it was not loaded, because unpickling "
                "it could run code. Do not use this file: if it came from someone else, it may be crafted; if it "
                "is your own, something other than dstcl wrote it."
            ) from None
        raise DamagedFileError(f"cannot read the {what} {path}: {exc}. The file is damaged.") from None
    except Exception as exc:  # noqa: BLE001 - truncated, not a zip, a foreign format: all "damaged"
        raise DamagedFileError(f"cannot read the {what} {path} ({type(exc).__name__}: {str(exc)[:200]}). The file is "
                               "damaged or is not a dstcl file.") from None


def file_digest(path: str | Path) -> str:
    """BLAKE2b-128 of the file's bytes (streamed)."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
