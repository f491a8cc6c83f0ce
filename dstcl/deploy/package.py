"""The ``.dstcl`` model file: everything needed to use a finished run, in one compact file.

Contents (a ``torch.save`` dict of tensors and plain values, read back with ``weights_only=True``):

* per layer: the values of the weights some task owns (4 bytes each, in flat order of the owned
  positions) and each task's mask as packed bits (1 bit per weight per task); which positions are owned
  follows from the masks and the task heads, so it is not stored. A dense run (``finetune``, ``joint``)
  stores its whole network instead;
* each task's classifier rows (heads), the class names and the task split;
* per-task BatchNorm statistics when the run used ``--bn task``;
* the backbone (name, options), the preprocessing (image shape, normalisation), the arithmetic
  (``precision``), the run's config and its hash.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..errors import DstclError
from ..files import FileWriteError, atomic_write_bytes
from ..run.hashing import config_hash
from ..run.integrity import verify_files
from ..run.rundir import BUFFERS, CONFIG, STATE, WEIGHTS, read_config, read_metrics
from ..safeload import DamagedFileError, UnsafeFileError, load_torch
from ..sparse.state import check_payload, unpack_mask
from ..train.methods import METHODS

FORMAT = "dstcl-model/1"


@dataclass(frozen=True)
class ExportSizes:
    file_bytes: int
    owned_weights: int
    weights: int
    tasks: int
    dense_state_dict_bytes: int

    def describe(self) -> str:
        values = 4 * self.owned_weights
        masks = math.ceil(self.weights / 8) * self.tasks
        meta = self.file_bytes - values - masks
        return (f"{self.file_bytes:,} bytes = {self.owned_weights:,} owned weights x 4 B ({values:,}) + {self.tasks} "
                f"task mask(s) x {self.weights:,} bits ({masks:,}) + metadata and statistics ({meta:,}); the dense "
                f"state_dict is {self.dense_state_dict_bytes:,} bytes ({self.file_bytes / self.dense_state_dict_bytes:.1%})")


def owned_positions(masks: list[torch.Tensor], rows: list[slice] | None) -> torch.Tensor:
    """Positions some task owns: the union over tasks of its mask (in a head layer, within its own rows)."""
    owned = torch.zeros_like(masks[0])
    for task, mask in enumerate(masks):
        if rows is None:
            owned |= mask
        else:
            owned[rows[task]] |= mask[rows[task]]
    return owned


def build_package(run_dir: str | Path) -> tuple[dict, ExportSizes]:
    """The export payload of the completed run in ``run_dir`` and its size figures."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    metrics = read_metrics(run_dir)
    if metrics.get("status") != "completed":
        raise DstclError(f"the run in {run_dir} is not completed (status {metrics.get('status')!r}); finish it "
                         f"(dstcl run --resume {run_dir}) before exporting it.")
    resolved = config.get("resolved") or {}
    sparse = _is_sparse(config, run_dir)
    used = [CONFIG, STATE] if sparse else [CONFIG, WEIGHTS]
    verify_files(run_dir, metrics, used + ([BUFFERS] if (run_dir / BUFFERS).is_file() else []))
    missing = [k for k in ("class_names", "image_shape", "mean", "std", "task_classes") if k not in resolved]
    if missing:
        raise DstclError(f"{run_dir} was written by an older dstcl whose config.json lacks {', '.join(missing)}; run "
                         "it again with this version to export it.")
    per_task = int(resolved["classes_per_task"])
    heads = [[t * per_task, (t + 1) * per_task] for t in range(len(resolved["task_classes"]))]
    layers, owned_total, weights_total, dense_bytes = [], 0, 0, 0
    state_file = run_dir / STATE
    if sparse:
        payload = _load(state_file, "sparse state")
        check_payload(payload)
        classifier = resolved.get("classifier", payload["layers"][-1]["name"])
        for entry in payload["layers"]:
            shape = tuple(entry["shape"])
            masks = [unpack_mask(bits, shape) for bits in entry["masks"]]
            rows = [slice(a, b) for a, b in heads] if entry["name"] == classifier else None
            owned = owned_positions(masks, rows)
            values = torch.from_numpy(np.asarray(entry["values"])).reshape(shape)
            layers.append({"name": entry["name"], "shape": list(shape), "owned_values": values[owned].clone(),
                           "masks": [torch.from_numpy(np.asarray(bits, dtype=np.uint8)) for bits in entry["masks"]],
                           "head": rows is not None})
            owned_total += int(owned.sum())
            weights_total += math.prod(shape)
            dense_bytes += 4 * math.prod(shape)
    else:  # a dense run: one network for every task
        weights = _load(run_dir / WEIGHTS, "weights file")
        if not isinstance(weights, dict) or not all(torch.is_tensor(v) for v in weights.values()):
            raise DamagedFileError(f"{run_dir / WEIGHTS} does not hold a network's weights (name -> tensor).")
        for name, value in weights.items():
            layers.append({"name": name, "shape": list(value.shape), "dense_values": value.float().clone(),
                           "masks": None, "head": False})
            owned_total += value.numel()
            weights_total += value.numel()
            dense_bytes += 4 * value.numel()
    buffers = _load(run_dir / BUFFERS, "statistics file") if (run_dir / BUFFERS).is_file() else {}
    package = {
        "format": FORMAT, "dstcl": __version__, "config_hash": config_hash(config), "config": config,
        "backbone": {"name": config["backbone"], "bn": config["bn"], "max_tasks": int(config["tasks"]),
                     "num_classes": int(resolved.get("num_classes", len(resolved["class_names"]))),
                     "options": _options(config)},
        "preprocess": {"image_shape": list(resolved["image_shape"]), "mean": list(resolved["mean"]),
                       "std": list(resolved["std"])},
        "class_names": list(resolved["class_names"]), "task_classes": resolved["task_classes"], "heads": heads,
        "precision": config.get("precision", "fp32"), "method": config.get("method", "dst"),
        "layers": layers, "buffers": buffers,
    }
    buffer = io.BytesIO()
    torch.save(package, buffer)
    tasks = len(heads) if sparse else 0
    dense_bytes += sum(4 * b.numel() for b in buffers.values())
    return package, ExportSizes(len(buffer.getvalue()), owned_total, weights_total, tasks, dense_bytes)


def export_run(run_dir: str | Path, out: str | Path) -> ExportSizes:
    """Write the ``.dstcl`` file of the run in ``run_dir`` to ``out`` (atomically); returns its sizes."""
    package, sizes = build_package(run_dir)
    buffer = io.BytesIO()
    torch.save(package, buffer)
    try:  # the model file's folder is not created: a mistyped -o must not leave folders behind
        atomic_write_bytes(out, buffer.getvalue(), make_parents=False)
    except FileWriteError as exc:
        raise exc.for_option("-o") from None
    except OSError as exc:
        raise DstclError(f"cannot write {out}: {exc.strerror or exc}; give -o a file in a folder you can write to.") from None
    return sizes


def read_package(path: str | Path) -> dict:
    """The payload of a ``.dstcl`` file, or a DstclError saying why it is not one."""
    path = Path(path)
    if path.is_dir():
        return build_package(path)[0]  # a run directory: export it in memory
    if not path.exists():
        raise DstclError(f"{path} does not exist; give a .dstcl file (dstcl export RUN_DIR -o FILE) or a run directory.")
    try:
        payload = load_torch(path, "model file")
    except UnsafeFileError:
        raise
    except DstclError as exc:  # anything unreadable is "not a dstcl model"
        raise DamagedFileError(f"{path} is not a dstcl model file ({str(exc).split(': ', 1)[0]}); make one with dstcl "
                               "export RUN_DIR -o FILE.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DstclError(f"{path} is not a dstcl model file (format {payload.get('format') if isinstance(payload, dict) else None!r}, "
                         f"expected {FORMAT}); make one with dstcl export RUN_DIR -o FILE.")
    return payload


def _is_sparse(config: dict, run_dir: Path) -> bool:
    """Whether the run's method keeps per-task masks (its results are in state.pt, not weights.pt alone)."""
    method = config.get("method", "dst")
    if method not in METHODS:
        raise DamagedFileError(f"{run_dir / CONFIG} names the method {method!r}, which this dstcl does not know; "
                               f"valid: {', '.join(METHODS.names())}.")
    entry = METHODS.get(method)
    if not entry.exportable:
        raise DstclError(f"{run_dir} is a --method {method} run: each task has its own network, which a model file "
                         "(one network for every task) cannot hold. Export a run of another method.")
    return entry.sparse


def _options(config: dict) -> dict:
    from ..models import MODELS

    entry = MODELS.entry(config["backbone"])
    return {o.name: config[o.name] for o in entry.options if o.name in config}


def _load(path: Path, what: str) -> Any:
    """A file of the run, read without running code (:func:`dstcl.safeload.load_torch`)."""
    return load_torch(path, what)
