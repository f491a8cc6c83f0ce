"""Numeric precision of training and evaluation: fp32, or autocast to bf16 / fp16.

Only the arithmetic changes: weights, the sparse state's stored values and the optimizer state stay
fp32, so parameter isolation stays exact (a frozen weight's fp32 value never changes) and a resumed
run repeats bit for bit on the CPU.

* ``fp32`` (default): no autocast.
* ``bf16``: ``torch.autocast`` to bfloat16 on the CPU or CUDA. On a CPU without native bf16 (no
  AVX512-BF16 / AMX; PyTorch then emulates it, ~28x slower than fp32 on AVX2 machines) it is refused.
* ``fp16``: autocast to float16 plus gradient scaling; CUDA only.
* ``auto``: resolved when the config is resolved: bf16 on a CUDA GPU that supports it, else fp16 on
  CUDA; bf16 on a CPU with native bf16; fp32 otherwise. The resolved value is what a run records.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from ..errors import ConfigError

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or unusual build: read the CPU flags
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                flags = next((line for line in handle if line.startswith("flags")), "")
        except OSError:
            return False
        return " avx512_bf16" in flags or " amx_bf16" in flags


def device_kind(device: str | torch.device) -> str:
    """``cuda``, ``mps`` or ``cpu`` for a device or a device setting (``auto`` means CUDA when present)."""
    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name).type


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``auto`` made concrete for ``device``; anything else is checked and returned."""
    kind = device_kind(device)
    if precision == "auto":
        if kind == "cuda":
            return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if kind == "cpu" and cpu_has_native_bf16() else "fp32"
    check_precision(precision, kind)
    return precision


def check_precision(precision: str, kind: str) -> None:
    """A clear error for a precision this device cannot run (well)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
    if precision == "fp16" and kind != "cuda":
        raise ConfigError("precision fp16 (autocast with gradient scaling) runs on CUDA only; on the CPU use bf16 "
                          "(where the CPU supports it natively), fp32, or auto.")
    if precision == "bf16" and kind == "cpu" and not cpu_has_native_bf16():
        raise ConfigError("precision bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX); this CPU would emulate "
                          "it, many times slower than fp32. Use --precision fp32 (or auto, which picks fp32 here).")
    if precision == "bf16" and kind == "cuda" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError("precision bf16 is not supported by this GPU; use fp16 (or auto).")
    if precision in DTYPES and kind == "mps":
        raise ConfigError(f"precision {precision} is not supported on the Apple GPU (mps) here; use fp32.")


def autocast(precision: str, device: torch.device) -> ContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op for fp32)."""
    if precision not in DTYPES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (None otherwise: bf16 has fp32's range)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def memory_format(precision: str, device: torch.device, model: torch.nn.Module) -> torch.memory_format:
    """The layout of a batch: channels_last for bf16 convolutions on the CPU (oneDNN's preferred layout),
    the default otherwise. Only the inputs change; parameters keep the default layout, so masks, gradients
    and Adam's state share one layout: converting the model too cost 20 ms per ResNet-18 step in the
    masked optimizer step and gained it back in the convolutions (docs/performance.md)."""
    if precision == "bf16" and device.type == "cpu" and any(p.dim() == 4 for p in model.parameters()):
        return torch.channels_last
    return torch.contiguous_format
