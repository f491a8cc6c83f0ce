"""Reading inputs for prediction: image files, folders of them, or a ``.npy`` batch."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..data.imagefolder import open_image
from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
# The largest .npy batch read at once: 2 GiB of uint8 pixels (about 700,000 images of 3 x 32 x 32). The model
# computes in float32, four times that, so a larger batch is predicted in parts (several dstcl predict calls).
MAX_NPY_BYTES = 2 * 1024**3


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
            with open_image(path.read_bytes(), str(path)) as img:
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
    """The batch in ``path``, its shape, type and size checked from its header before any data is read."""
    shape, dtype, offset = _npy_header(path)
    layout = shape if len(shape) != 3 or channels != 1 else (shape[0], 1, *shape[1:])
    if len(layout) == 4 and layout[-1] == channels and layout[1] != channels:
        layout = (layout[0], layout[3], layout[1], layout[2])  # N x H x W x C, transposed after reading
    if len(layout) != 4 or tuple(layout[1:]) != (channels, height, width) or dtype != np.uint8:
        raise DataError(f"{path} holds a {dtype} array of shape {tuple(shape)}; a .npy batch must be uint8 "
                        f"N x {channels} x {height} x {width} (or N x {height} x {width} x {channels}), the model's "
                        "image shape.")
    count, nbytes = int(shape[0]), int(np.prod(shape, dtype=np.int64))
    if count == 0:
        raise DataError(f"{path} holds no images (an array of shape {tuple(shape)}); give a .npy batch with at "
                        "least one image.")
    if nbytes > MAX_NPY_BYTES:
        raise DataError(f"{path} claims {count:,} images ({nbytes:,} bytes), more than the {MAX_NPY_BYTES:,} bytes "
                        "dstcl predict reads at once; split it into smaller .npy files and predict each.")
    if offset + nbytes > path.stat().st_size:
        raise DataError(f"{path} is truncated: its header claims {count:,} images ({nbytes:,} bytes) but the file "
                        f"holds {max(0, path.stat().st_size - offset):,} bytes of data; write it again (numpy.save).")
    try:
        batch = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({exc}).") from None
    if batch.ndim == 3:
        batch = batch[:, None]
    if batch.shape[1:] != (channels, height, width):
        batch = batch.transpose(0, 3, 1, 2)  # N x H x W x C -> N x C x H x W
    return np.ascontiguousarray(batch)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, type and data offset of a ``.npy`` file, read from its header alone."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as handle:
            version = npy.read_magic(handle)
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read(handle)
            return tuple(int(s) for s in shape), dtype, handle.tell()
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npy array ({exc}); give a batch written by numpy.save.") from None
