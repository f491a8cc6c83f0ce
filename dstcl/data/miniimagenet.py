"""miniImageNet: 100 classes x 600 JPEG images, one folder per class, split 500 train / 100 test.

Where: a folder named ``miniimagenet`` (or ``mini-imagenet``) in a data root, holding class folders
(``<wnid>/<file>.jpg``) or archive shards (``*.zip``, ``*.tar``, ``*.tar.gz``) with that layout; an
archive ``miniimagenet.zip`` / ``.tar`` / ``.tar.gz`` in a data root; or the data root itself when it
holds class folders or shards (``--data-dir ~/data/miniimagenet``). There is no canonical download.

Classes are in sorted folder-name (wnid) order. Split rules, per class, on the file names sorted:

* ``first500`` (default): the first ``train_per_class`` (500) names train, the last
  ``test_per_class`` (100) test; with exactly 600 images this is ``source_split_500train_100val.csv``;
* ``random``: ``test_per_class`` test images drawn at random (as the reference code did) with a
  generator seeded by ``(seed, crc32(wnid))``, so a class's draw does not depend on which other
  classes are loaded; then ``train_per_class`` train images drawn from the rest; both kept in name order.

Images of a class beyond train + test are left out (first500: the middle ones); a class with fewer is an
error. Images are resized to ``image_size`` (32, the reference, or 84) with Pillow's antialiased
bicubic filter, decoded once in worker processes and cached per class as uint8 arrays (all images of
the class in name order, so every split rule reuses them), keyed by the class's files (names, sizes,
modification times; for archives the archive's size and modification time) and the image size.
Training crops pad by ``image_size / 8`` pixels (4 at 32 px, 10 at 84 px).
"""

from __future__ import annotations

import os
import sys
import zlib
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..errors import DataError
from .base import ImageDataset, check_num_classes
from .cache import DiskCache
from .imagefolder import ARCHIVE_SUFFIXES, Container, ImageFile, decode_files, find_containers, list_images
from .locate import cache_root, describe_roots, resolve_data_root
from .registry import register_dataset
from ..registry import Option

MEAN = (0.485, 0.456, 0.406)  # ImageNet statistics
STD = (0.229, 0.224, 0.225)
SPLITS = ("first500", "random")
SOURCE_NAMES = ("miniimagenet", "mini-imagenet", "mini_imagenet", "miniImageNet")
DECODER = "pillow-bicubic-rgb-v1"  # bump when decoding changes, to invalidate caches


def load_miniimagenet(
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    image_size: int | None = None,
    num_classes: int | None = None,
    seed: int = 0,
    split: str = "first500",
    train_per_class: int = 500,
    test_per_class: int = 100,
    workers: int | None = None,
    progress: bool = True,
    env: Mapping[str, str] = os.environ,
    **_unused: Any,
) -> ImageDataset:
    """Load miniImageNet (or any one-folder-per-class image set laid out the same way).

    ``cache_dir`` defaults to ``<cache folder>/decoded/miniimagenet``; ``num_classes`` keeps the first
    N classes and decodes only those; ``workers`` caps the decoding processes (default: CPU count).
    ``_unused`` takes the common options this reader ignores (download).
    """
    size = 32 if image_size is None else int(image_size)
    if size < 1:
        raise DataError(f"image_size must be a positive number of pixels (32 or 84), got {image_size}.")
    if split not in SPLITS:
        raise DataError(f"unknown miniimagenet split rule {split!r}; valid: {', '.join(SPLITS)}.")
    if train_per_class < 1 or test_per_class < 1:
        raise DataError("train_per_class and test_per_class must be at least 1, got "
                        f"{train_per_class} and {test_per_class}.")
    roots = resolve_data_root(data_dir, env)
    found = find_source(roots)
    if found is None:
        raise DataError(
            "miniImageNet was not found: looked for a folder named miniimagenet (or mini-imagenet) holding "
            "one folder of JPEG images per class (<wnid>/<file>.jpg) or .zip/.tar/.tar.gz archives of that "
            f"layout, an archive miniimagenet.zip/.tar/.tar.gz, or such content directly, in "
            f"{describe_roots(roots)}. It has no canonical download address: get the 100-class, 600-images-"
            "per-class copy (for example the Kaggle 'mini-imagenet' download), then pass --data-dir to the "
            "folder or archive, or set $DSTCL_DATA.")
    source, containers = found
    cache = DiskCache(Path(cache_dir) if cache_dir is not None else cache_root(env) / "decoded" / "miniimagenet")
    listing = list_images(containers, cache)
    if not listing:
        raise DataError(f"{source} holds no class folders of images (<class>/<file>.jpg); point --data-dir "
                        "at the miniImageNet folder or archive.")
    classes = sorted(listing)
    check_num_classes("miniimagenet", num_classes, len(classes))
    classes = classes[:num_classes]
    need = train_per_class + test_per_class
    for cls in classes:
        if len(listing[cls]) < need:
            raise DataError(f"class {cls} in {source} has {len(listing[cls])} images, fewer than the "
                            f"{train_per_class} train + {test_per_class} test asked for; the copy is "
                            "incomplete (replace it) or lower train_per_class / test_per_class.")
    arrays = class_arrays({c: listing[c] for c in classes}, size, cache, workers, progress)
    splits = [split_indices([f.name for f in listing[c]], split, train_per_class, test_per_class, seed, c)
              for c in classes]
    tensors = {}
    for which, part in (("train", 0), ("test", 1)):
        x = torch.empty((sum(len(s[part]) for s in splits), 3, size, size), dtype=torch.uint8)
        y = torch.empty(len(x), dtype=torch.int64)
        start = 0
        for label, (cls, indices) in enumerate(zip(classes, splits)):
            index = indices[part]
            np.take(arrays[cls], index, axis=0, out=x[start:start + len(index)].numpy())
            y[start:start + len(index)] = label
            start += len(index)
        tensors[f"{which}_x"], tensors[f"{which}_y"] = x, y
    return ImageDataset(
        name="miniimagenet", class_names=classes, mean=MEAN, std=STD,
        crop_padding=max(1, round(size / 8)), hflip=True, **tensors,
    )


def find_source(roots: list[Path]) -> tuple[Path, list[Container]] | None:
    """The first miniImageNet source in ``roots`` and its containers (see the module doc)."""
    for root in roots:
        for name in SOURCE_NAMES:
            for suffix in ("", *ARCHIVE_SUFFIXES):
                candidate = root / f"{name}{suffix}"
                containers = find_containers(candidate)
                if containers:
                    return candidate, containers
        containers = find_containers(root, strict=True)
        if containers:
            return root, containers
    return None


def split_indices(names: list[str], rule: str, train_n: int, test_n: int, seed: int,
                  class_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Train and test positions in the sorted ``names`` of one class, by ``rule`` (see the module doc)."""
    n = len(names)
    if rule == "first500":
        return np.arange(train_n), np.arange(n - test_n, n)
    rng = np.random.default_rng([seed, zlib.crc32(class_key.encode("utf-8"))])
    order = rng.permutation(n)
    return np.sort(order[test_n:test_n + train_n]), np.sort(order[:test_n])


def class_arrays(listing: dict[str, list[ImageFile]], size: int, cache: DiskCache, workers: int | None,
                 progress: bool) -> dict[str, np.ndarray]:
    """uint8 N x 3 x size x size arrays of every class in ``listing`` (name order), from cache or decoded."""
    ids: dict[Container, str] = {}  # resolved path + stamp, computed once per container
    out: dict[str, np.ndarray] = {}
    todo: dict[str, str] = {}
    for cls, files in listing.items():
        for f in files:
            if f.container not in ids:
                ids[f.container] = f"{f.container.path.resolve()}|{f.container.stamp()}"
        key = cache.key("class-images", DECODER, size, cls, [(ids[f.container], f.member, f.stamp) for f in files])
        hit = cache.load_arrays(key)
        if (hit is not None and hit.get("images") is not None and hit["images"].shape == (len(files), 3, size, size)
                and hit.get("names") is not None and hit["names"].tolist() == [f.name for f in files]):
            out[cls] = hit["images"]
        else:
            todo[cls] = key
    if todo:
        decoded = _decode({c: listing[c] for c in todo}, size, workers, progress, cache.folder)
        for cls, key in todo.items():
            files = listing[cls]
            images = np.stack([decoded[(f.container, f.member)] for f in files])
            cache.save_arrays(key, images=images, names=np.array([f.name for f in files]))
            out[cls] = images
    return out


def _decode(listing: dict[str, list[ImageFile]], size: int, workers: int | None, progress: bool,
            cache_folder: Path | None) -> dict[tuple[Container, str], np.ndarray]:
    """Decode every file of ``listing``, one job per tar (read in one pass) or per class otherwise."""
    by_container: dict[Container, list[ImageFile]] = defaultdict(list)
    for files in listing.values():
        for f in files:
            by_container[f.container].append(f)
    jobs: list[tuple[Container, list[str]]] = []
    for container, files in by_container.items():
        if container.kind == "tar":
            jobs.append((container, [f.member for f in files]))
        else:
            per_class: dict[str, list[str]] = defaultdict(list)
            for f in files:
                per_class[f.member.rsplit("/", 2)[-2]].append(f.member)
            jobs += [(container, members) for members in per_class.values()]
    total = sum(len(m) for _, m in jobs)
    if progress:
        print(f"dstcl: decoding {total} images of {len(listing)} classes at {size}x{size} px (once; cached in "
              f"{cache_folder})", file=sys.stderr)
    from tqdm.auto import tqdm

    out: dict[tuple[Container, str], np.ndarray] = {}
    count = min(workers or _cpu_count(), len(jobs))
    with tqdm(total=total, unit="img", disable=not progress, file=sys.stderr, leave=False) as bar:
        if count <= 1:
            for container, members in jobs:
                out.update({(container, m): a for m, a in decode_files(container, members, size).items()})
                bar.update(len(members))
            return out
        pool = ProcessPoolExecutor(max_workers=count)
        try:
            futures = {pool.submit(decode_files, c, m, size): c for c, m in jobs}
            for future in as_completed(futures):
                container = futures[future]
                result = future.result()
                out.update({(container, m): a for m, a in result.items()})
                bar.update(len(result))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return out


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


register_dataset("miniimagenet", load_miniimagenet, classes=100, options=(
    Option("image_size", int, 32, "resolution in pixels: 32 (the reference) or 84 (any size from 8 works)",
           minimum=8, maximum=1024),
    Option("split", str, "first500", "train/test per class: first500 (the first 500 sorted files train, the "
           "last 100 test) or random (a seeded 100 test)", choices=SPLITS),
), defaults={"backbone": "resnet18", "epochs": 100, "batch_size": 128, "update_frequency": 400},
    help="100 classes x 600 images, one folder per class")
