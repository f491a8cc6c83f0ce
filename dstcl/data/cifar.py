"""CIFAR-10 and CIFAR-100 in their standard "python version" pickle format.

Read from the extracted folder (``cifar-100-python/{train,test,meta}``,
``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``) or straight from the canonical
tarball without extracting it. When neither is found in the data roots (see
:mod:`dstcl.data.locate`) and downloading is allowed, the tarball is downloaded from the canonical
address (announced on stderr, with a progress bar and an MD5 check) into the first writable root.

The pickles are read with an unpickler that only accepts the few numpy objects these files contain,
so a foreign or tampered file is refused instead of executed. CIFAR-100's 20 superclasses (the pickles'
``coarse_labels``) are attached to the data set (:func:`dstcl.data.hierarchy.superclasses_of`).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import DataError
from .archives import iter_tar
from .base import ImageDataset, first_classes
from .download import download as fetch
from .hierarchy import Superclasses, attach
from .locate import describe_roots, first_writable, resolve_data_root
from .registry import register_dataset

BASE_URL = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class CifarSpec:
    """Everything that differs between CIFAR-10 and CIFAR-100."""

    name: str
    folder: str
    archive: str
    md5: str
    size_mb: int
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: bytes
    names_key: bytes
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, *self.test_files, self.meta_file)


SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10", folder="cifar-10-batches-py", archive="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a", size_mb=163,
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)), test_files=("test_batch",),
        meta_file="batches.meta", label_key=b"labels", names_key=b"label_names",
        mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
    ),
    "cifar100": CifarSpec(
        name="cifar100", folder="cifar-100-python", archive="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85", size_mb=161,
        train_files=("train",), test_files=("test",),
        meta_file="meta", label_key=b"fine_labels", names_key=b"fine_label_names",
        mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
    ),
}

IMAGE_BYTES = 3 * 32 * 32


def load_cifar(
    kind: str,
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    progress: bool = True,
    num_classes: int | None = None,
    base_url: str = BASE_URL,
    env: Mapping[str, str] = os.environ,
    **_unused: Any,
) -> ImageDataset:
    """Load ``kind`` ("cifar10" or "cifar100"), downloading it if allowed and nowhere to be found.

    ``base_url`` replaces the canonical server (tests point it at a local one). ``_unused`` takes the
    options other readers use (cache_dir, seed), which CIFAR does not need.
    """
    spec = SPECS[kind]
    roots = resolve_data_root(data_dir, env)
    source = find_cifar(spec, roots)
    if source is None:
        source = _download(spec, roots, base_url, download, progress)
    files = read_cifar_files(spec, source)
    return attach(first_classes(build_dataset(spec, files), num_classes), superclasses(spec, files))


def superclasses(spec: CifarSpec, files: dict[str, dict]) -> Superclasses | None:
    """CIFAR-100's superclass of each fine class (from ``coarse_labels``); None for CIFAR-10 or files without."""
    meta, where = files[spec.meta_file], f"{spec.folder}/{spec.meta_file}"
    names = meta.get(b"coarse_label_names")
    if not isinstance(names, list) or not names:
        return None
    fine_names = meta[spec.names_key]
    of_class = [-1] * len(fine_names)
    for name in (*spec.train_files, *spec.test_files):
        obj = files[name]
        if b"coarse_labels" not in obj:
            return None
        for fine, coarse in set(zip(obj[spec.label_key], obj[b"coarse_labels"])):
            fine, coarse = int(fine), int(coarse)
            if not 0 <= coarse < len(names) or of_class[fine] not in (-1, coarse):
                raise DataError(f"{spec.folder}/{name}: coarse_labels are inconsistent (fine class {fine} in superclass "
                                f"{coarse} and {of_class[fine]}, or beyond the {len(names)} names of {where}); the "
                                "file is damaged. Replace it with a complete copy.")
            of_class[fine] = coarse
    if -1 in of_class:
        return None
    return Superclasses(of_class, [n.decode() if isinstance(n, bytes) else str(n) for n in names])


def find_cifar(spec: CifarSpec, roots: list[Path]) -> Path | None:
    """The extracted folder or the tarball of ``spec`` in the first root that has either."""
    for root in roots:
        for candidate in (root / spec.folder, root / spec.archive, root):
            if candidate.is_dir() and (candidate / spec.meta_file).is_file():
                return candidate
            if candidate.is_file() and (candidate == root or candidate.name == spec.archive):
                return candidate
    return None


def _download(spec: CifarSpec, roots: list[Path], base_url: str, allowed: bool, progress: bool) -> Path:
    url = base_url.rstrip("/") + "/" + spec.archive
    looked = (f"{spec.name} was not found: looked for {spec.folder}/ or {spec.archive} in "
              f"{describe_roots(roots)}.")
    how = (f"Download {url} (MD5 {spec.md5}) and put it (or its extracted {spec.folder}/ folder) in one "
           f"of these folders, or pass --data-dir FOLDER / set $DSTCL_DATA to where it is")
    if not allowed:
        raise DataError(f"{looked} Downloading is switched off. {how}, or allow the download.")
    root = first_writable(roots)
    if root is None:
        raise DataError(f"{looked} None of these folders is writable, so it cannot be downloaded. {how}.")
    dest = root / spec.archive
    print(f"dstcl: {spec.name} not found locally; downloading {url} (about {spec.size_mb} MB) to {dest}",
          file=sys.stderr)
    return fetch(url, dest, spec.md5, progress=progress)


def read_cifar_files(spec: CifarSpec, source: Path) -> dict[str, dict]:
    """Unpickle every file of ``spec`` from a folder or a tarball; keys are the bare file names."""
    if source.is_dir():
        missing = [f for f in spec.files if not (source / f).is_file()]
        if missing:
            raise DataError(f"{source} lacks the {spec.name} file(s) {', '.join(missing)}; the folder is "
                            f"incomplete. Replace it with a complete copy of {spec.folder}/ or its tarball.")
        out = {}
        for name in spec.files:
            try:
                data = (source / name).read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {source / name}: {exc.strerror or exc}.") from None
            out[name] = unpickle(data, str(source / name))
        return out
    raw = {name.rsplit("/", 1)[-1]: data for name, data in iter_tar(source, {f"{spec.folder}/{f}" for f in spec.files})}
    missing = [f for f in spec.files if f not in raw]
    if missing:
        raise DataError(f"the archive {source} lacks the {spec.name} file(s) {', '.join(missing)}: it is not "
                        f"the {spec.archive} tarball or it is incomplete. Delete it and download it again.")
    return {name: unpickle(raw[name], f"{source}:{spec.folder}/{name}") for name in spec.files}


class _CifarUnpickler(pickle.Unpickler):
    """Accepts only the globals a CIFAR pickle needs (numpy arrays); anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def unpickle(data: bytes, where: str) -> dict:
    """A CIFAR pickle (bytes keys, as written by Python 2) as a dict; DataError names ``where``."""
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a broken pickle can raise almost anything
        raise DataError(f"{where} is not a readable CIFAR pickle ({type(exc).__name__}: {exc}); the file is "
                        "corrupt or truncated. Delete it and download it again, or replace it.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where} holds a {type(obj).__name__}, not the dict of a CIFAR pickle; replace the file.")
    return obj


def _batch(obj: dict, spec: CifarSpec, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N x 3 x 32 x 32 uint8) and labels (int64) of one pickled batch, validated."""
    missing = [k.decode() for k in (b"data", spec.label_key) if k not in obj]
    if missing:
        raise DataError(f"{where} lacks the key(s) {', '.join(missing)}; it is not a {spec.name} data file.")
    data = obj[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        shape = getattr(data, "shape", None)
        raise DataError(f"{where}: b'data' must be a uint8 array of N x {IMAGE_BYTES} (32x32 RGB, channel-major), "
                        f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}; the file is damaged.")
    labels = np.asarray(obj[spec.label_key], dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {len(data)} images but {labels.size} labels; the file is damaged.")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{where}: labels must lie in 0..{num_classes - 1} (one per class in "
                        f"{spec.meta_file}), found {labels.min()}..{labels.max()}; the file is damaged.")
    return data.reshape(-1, 3, 32, 32), labels


def build_dataset(spec: CifarSpec, files: dict[str, dict]) -> ImageDataset:
    """Assemble the unpickled files of ``spec`` into an :class:`ImageDataset`."""
    meta = files[spec.meta_file]
    names = meta.get(spec.names_key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{spec.meta_file} of {spec.name} lacks the class names ({spec.names_key.decode()}); "
                        "the file is damaged.")
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def split(file_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_batch(files[f], spec, f"{spec.folder}/{f}", len(class_names)) for f in file_names]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)

    train_x, train_y = split(spec.train_files)
    test_x, test_y = split(spec.test_files)
    return ImageDataset(
        name=spec.name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        class_names=class_names, mean=spec.mean, std=spec.std, crop_padding=4, hflip=True,
    )


for _kind, _classes in (("cifar10", 10), ("cifar100", 100)):
    register_dataset(_kind, partial(load_cifar, _kind), classes=_classes, options=(),
                     defaults={"backbone": "resnet18", "epochs": 100, "batch_size": 64, "update_frequency": 100},
                     help="folder, tarball or download")
