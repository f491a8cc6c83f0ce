"""Reading inputs for prediction: image files, folders of them, or a ``.npy`` batch."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def image_paths(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their image files (sorted); ``.npy`` files kept as they are."""
    out: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"the folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise DataError(f"{path} does not exist; give image files, folders of images or a .npy batch.")
    return out


def read_images(inputs: Sequence[str | Path], shape: Sequence[int]) -> tuple[torch.Tensor, list[str]]:
    """uint8 ``N x C x H x W`` images resized to ``shape`` (bicubic, antialiased) and a name for each."""
    from PIL import Image, UnidentifiedImageError

    channels, height, width = (int(s) for s in shape)
    arrays, names = [], []
    for path in image_paths(inputs):
        if path.suffix.lower() == ".npy":
            batch = _npy(path, channels, height, width)
            arrays += list(batch)
            names += [f"{path}[{i}]" for i in range(len(batch))]
            continue
        try:
            with Image.open(io.BytesIO(path.read_bytes())) as img:
                img = img.convert("L" if channels == 1 else "RGB")
                if img.size != (width, height):
                    img = img.resize((width, height), Image.Resampling.BICUBIC)
                array = np.asarray(img, dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"{path} is not a readable image ({type(exc).__name__}: {exc}); give image files "
                            "(.jpg, .png, ...) or a .npy batch.") from None
        arrays.append(array[None] if channels == 1 else array.transpose(2, 0, 1))
        names.append(str(path))
    return torch.from_numpy(np.ascontiguousarray(np.stack(arrays))), names


def _npy(path: Path, channels: int, height: int, width: int) -> np.ndarray:
    try:
        batch = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({exc}).") from None
    if batch.ndim == 3 and channels == 1:
        batch = batch[:, None]
    if batch.ndim == 4 and batch.shape[-1] == channels and batch.shape[1] != channels:
        batch = batch.transpose(0, 3, 1, 2)  # N x H x W x C -> N x C x H x W
    if batch.ndim != 4 or batch.shape[1:] != (channels, height, width) or batch.dtype != np.uint8:
        raise DataError(f"{path} holds a {batch.dtype} array of shape {batch.shape}; a .npy batch must be uint8 "
                        f"N x {channels} x {height} x {width} (or N x {height} x {width} x {channels}), the model's "
                        "image shape.")
    return np.ascontiguousarray(batch)
