"""After training: a compact model file, loading it without the run, and prediction with or without the task.

* :mod:`.package` — ``dstcl export``: the ``.dstcl`` file (owned weights, packed masks, heads, statistics);
* :mod:`.model` — ``dstcl.load``: :class:`DstclModel` (per-task logits, ``predict``);
* :mod:`.images` — image files, folders and ``.npy`` batches for ``dstcl predict``.
"""

from .model import DstclModel, Prediction, load
from .package import ExportSizes, build_package, export_run, read_package

__all__ = ["DstclModel", "ExportSizes", "Prediction", "build_package", "export_run", "load", "read_package"]
