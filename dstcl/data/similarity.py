"""Class-similarity files: what ``dstcl similarity`` writes and the clustered / interleaved orders read.

A file is JSON with at least ``class_names`` (C names) and ``matrix`` (C x C similarities, symmetric);
``dstcl similarity`` adds how it was measured, the settings, the task x task similarity of the splits and,
where the data set has one, the agreement with its class hierarchy (docs/similarity.md). A hand-made file
with only those two keys is accepted too (an external hierarchy turned into a matrix, for example).

Only the names and the matrix decide a class order, so a run's identity holds their :attr:`digest`
(``similarity_digest``), never the file's path: a copied or moved file is the same run, an edited matrix
another one.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError

FORMAT = "dstcl-similarity/1"
DECIMALS = 6  # similarities are stored rounded: the digest is of the stored numbers


@dataclass(frozen=True)
class ClassSimilarity:
    """A class x class similarity matrix with its class names (``dataset``: the data set it was measured on)."""

    class_names: list[str]
    matrix: np.ndarray = field(repr=False)  # float64, C x C
    dataset: str | None = None

    @property
    def digest(self) -> str:
        """16 hex digits of the SHA-256 of the names and the matrix (what a class order depends on)."""
        return similarity_digest(self.class_names, self.matrix)

    def for_classes(self, names: Sequence[str], where: str = "the similarity file") -> np.ndarray:
        """The sub-matrix of ``names`` in that order (a run may use the first N classes of the file's)."""
        index = {name: i for i, name in enumerate(self.class_names)}
        missing = [n for n in names if n not in index]
        if missing:
            shown = ", ".join(map(str, missing[:4])) + (" ..." if len(missing) > 4 else "")
            raise DataError(f"{where} has no similarity for {len(missing)} class(es) of this data set ({shown}): it "
                            f"was measured on {self.dataset or 'other classes'}. Measure it on this data set with "
                            "dstcl similarity DATASET -o FILE, or give the file made for it.")
        rows = [index[n] for n in names]
        return self.matrix[np.ix_(rows, rows)]


def rounded(matrix: np.ndarray | Sequence[Sequence[float]]) -> list[list[float]]:
    """The matrix as stored in a file (plain floats, :data:`DECIMALS` decimals)."""
    return [[round(float(v), DECIMALS) for v in row] for row in np.asarray(matrix, dtype=np.float64)]


def similarity_digest(class_names: Sequence[str], matrix: np.ndarray | Sequence[Sequence[float]]) -> str:
    canonical = json.dumps({"class_names": [str(n) for n in class_names], "matrix": rounded(matrix)},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def read_similarity(path: str | Path) -> ClassSimilarity:
    """Read and check a similarity file; a missing or malformed one is a DataError saying how to fix it."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"similarity file {path} does not exist; write it with dstcl similarity DATASET -o {path} "
                        "(docs/similarity.md), or give the path of an existing one.") from None
    except OSError as exc:
        raise DataError(f"cannot read similarity file {path}: {exc.strerror or exc}.") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"similarity file {path} is not valid JSON ({exc.msg}, line {exc.lineno}); write it again "
                        "with dstcl similarity.") from None
    return parse_similarity(obj, str(path))


def parse_similarity(obj: Any, where: str = "the similarity file") -> ClassSimilarity:
    """A :class:`ClassSimilarity` from a loaded file's content (checked: names, a square symmetric matrix)."""
    if not isinstance(obj, dict) or "matrix" not in obj or "class_names" not in obj:
        raise DataError(f"{where} must be a JSON object with class_names (C names) and matrix (C x C numbers), as "
                        "dstcl similarity writes it.")
    if obj.get("format", FORMAT) != FORMAT:
        raise DataError(f"{where} has format {obj.get('format')!r}; this dstcl reads {FORMAT!r}. Write it again "
                        "with this version's dstcl similarity.")
    names = obj["class_names"]
    if not isinstance(names, list) or not names or len(set(map(str, names))) != len(names):
        raise DataError(f"{where}: class_names must be a non-empty list of distinct names.")
    try:
        matrix = np.asarray(obj["matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{where}: matrix must be a list of {len(names)} rows of {len(names)} numbers.") from None
    if matrix.shape != (len(names), len(names)):
        raise DataError(f"{where}: matrix must be {len(names)} x {len(names)} (one row and column per class name), "
                        f"got shape {matrix.shape}.")
    if not np.isfinite(matrix).all():
        raise DataError(f"{where}: matrix holds a value that is not a finite number; write the file again.")
    if not np.allclose(matrix, matrix.T, atol=10.0 ** -DECIMALS):
        i, j = np.unravel_index(int(np.argmax(np.abs(matrix - matrix.T))), matrix.shape)
        raise DataError(f"{where}: matrix must be symmetric (similarity of a to b = of b to a); entries ({i}, {j}) "
                        f"and ({j}, {i}) differ: {matrix[i, j]} vs {matrix[j, i]}.")
    dataset = obj.get("dataset")
    return ClassSimilarity([str(n) for n in names], (matrix + matrix.T) / 2.0,
                           str(dataset) if dataset is not None else None)


def task_similarity(matrix: np.ndarray, task_classes: Sequence[Sequence[int]]) -> list[list[float]]:
    """T x T: the mean similarity over class pairs, one class of task a and one of task b (symmetric; the
    diagonal is the mean over a task's pairs of distinct classes, NaN for 1-class tasks)."""
    T = len(task_classes)
    out = [[math.nan] * T for _ in range(T)]
    for a in range(T):
        for b in range(a, T):
            block = matrix[np.ix_(list(task_classes[a]), list(task_classes[b]))]
            if a == b:
                n = len(task_classes[a])
                out[a][a] = float((block.sum() - np.trace(block)) / (n * (n - 1))) if n > 1 else math.nan
            else:
                out[a][b] = out[b][a] = float(block.mean())
    return out


def split_summary(matrix: np.ndarray, task_classes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """A split's task x task similarity, the mean within and between tasks (what an order changes) and each
    task's mean similarity to the classes of the tasks before it (``to_earlier``; None for the first)."""
    tasks = task_similarity(matrix, task_classes)
    T = len(tasks)
    within = [tasks[t][t] for t in range(T) if not math.isnan(tasks[t][t])]
    between = [tasks[a][b] for a in range(T) for b in range(T) if a != b]
    earlier = [None] + [float(matrix[np.ix_(list(task_classes[t]), [c for s in task_classes[:t] for c in s])].mean())
                        for t in range(1, T)]

    def show(v: float | None) -> float | None:
        return None if v is None or math.isnan(v) else round(float(v), DECIMALS)

    return {"task_classes": [list(map(int, c)) for c in task_classes], "matrix": [[show(v) for v in row] for row in tasks],
            "within": show(float(np.mean(within))) if within else None,
            "between": show(float(np.mean(between))) if between else None,
            "to_earlier": [show(v) for v in earlier]}


def similarity_json(doc: Any, level: int = 0) -> str:
    """JSON text of a similarity file: indented, but a list of plain values (a matrix row) on one line."""
    pad, inner = "  " * level, "  " * (level + 1)
    if isinstance(doc, dict) and doc:
        items = ",\n".join(f"{inner}{json.dumps(str(k))}: {similarity_json(v, level + 1)}" for k, v in doc.items())
        return "{\n" + items + "\n" + pad + "}"
    if isinstance(doc, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in doc):
        return "[\n" + ",\n".join(inner + similarity_json(v, level + 1) for v in doc) + "\n" + pad + "]"
    return json.dumps(doc, allow_nan=False)


def similarity_facts(similarity: ClassSimilarity | None, class_names: Sequence[str],
                     task_classes: Sequence[Sequence[int]]) -> dict[str, Any]:
    """What a run's config.json records under ``resolved`` about the similarity its order was built from
    (nothing for orders that use none): the digest and the split's task x task similarity."""
    if similarity is None:
        return {}
    matrix = similarity.for_classes(class_names)
    return {"similarity": {"digest": similarity.digest, **split_summary(matrix, task_classes)}}
