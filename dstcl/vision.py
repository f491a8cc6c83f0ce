"""Importing torchvision beside a CPU build of torch (the Avalanche extra, torchvision models in tests).

PyPI's torchvision wheel for this torch is built against its CUDA build; :func:`prepare_torchvision` lets
it import anyway (without its compiled detection ops), and :func:`import_torchvision` returns it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from pathlib import Path
from types import ModuleType

import torch


class TorchvisionOpsWarning(UserWarning):
    """torchvision's compiled ops do not load beside this torch; it is imported without them."""


_TORCHVISION_STUB: list = []  # keeps the stub op schemas registered (a torch Library is freed with its object)


def prepare_torchvision() -> None:
    """Let torchvision import when its compiled ops cannot load beside this torch.

    PyPI's torchvision wheels for x86_64 Linux are built for PyPI's CUDA torch: beside a CPU build of the
    same torch (``torch==2.13.0+cpu``) their ``_C`` library misses ``libtorch_cuda.so`` and does not load.
    torchvision handles that (its ops then raise "Couldn't load custom C++ ops"), except that
    ``_meta_registrations.py`` registers fake kernels for ``nms`` and ``qnms`` unconditionally, so
    ``import torchvision`` (and so ``import avalanche``) fails with "operator torchvision::nms does not
    exist" (pytorch/vision#9085). Declaring those two schemas, only when the library does not load, lets
    the import finish; Avalanche's classification training uses no torchvision op.
    """
    if "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    libraries = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C.*"))
    libraries = [p for p in libraries if p.suffix in (".so", ".pyd")]
    if not libraries:
        return
    try:
        torch.ops.load_library(str(libraries[0]))  # loads: torchvision works as intended
        return
    except (OSError, RuntimeError) as error:
        reason = str(error.__cause__ or error)
    library = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _TORCHVISION_STUB.append(library)
    warnings.warn(
        f"torchvision's compiled ops do not load beside torch {torch.__version__} ({reason.splitlines()[0][:160]}); "
        "dstcl imports torchvision without them (its detection ops such as nms are unavailable; "
        "Avalanche's classification training does not use them). The torchvision wheel built for this torch "
        "(for a CPU torch: torchvision==0.28.0 from PyTorch's CPU wheel index) removes this warning.",
        TorchvisionOpsWarning,
        stacklevel=3,
    )


def import_torchvision() -> ModuleType:
    """``torchvision`` (ModuleNotFoundError when it is not installed), imported as :func:`prepare_torchvision` allows."""
    prepare_torchvision()
    return importlib.import_module("torchvision")
