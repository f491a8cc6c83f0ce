"""Images stored one folder per class, as loose files, in a zip or tar(.gz), or in archive shards.

A *container* is one place images live: a folder of class folders (``<root>/<class>/<file>.jpg``), a
zip, or a tar / tar.gz with that layout inside (a wrapping top folder is allowed). A data set may be
spread over several containers (the shipped miniImageNet is ten tar.gz shards of ten classes each).
The class of an image is the name of the folder that holds it.

Listing a gzip'd tar means decompressing it, so tar listings are cached (keyed by the archive's
path, size and modification time); reading a tar is always one sequential pass.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tarfile
import warnings
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import DataError
from .archives import ARCHIVE_ERRORS, damaged_archive, iter_tar, member_name
from .cache import DiskCache

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
# The largest image dstcl decodes: 150 megapixels (e.g. 12,000 x 12,500). That is above the full size of
# common cameras (108 MP phones, 100-150 MP medium format) and below Pillow's own decompression-bomb refusal
# (2 x PIL.Image.MAX_IMAGE_PIXELS, 179 MP by default), so one check with one message covers both. Decoding
# needs 3 bytes per pixel (450 MB here) before the image is shrunk to the model's size (8 to 1024 px); a
# larger "image" is most likely a decompression bomb (a small file claiming an enormous size) or a mistake.
MAX_IMAGE_PIXELS = 150_000_000


@dataclass(frozen=True)
class Container:
    """One folder of class folders, one zip or one tar(.gz)."""

    path: Path
    kind: str  # "folder" | "zip" | "tar"

    def stamp(self) -> str:
        """What identifies this archive's content cheaply (size and mtime); folders stamp per file."""
        if self.kind == "folder":
            return ""
        st = self.path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"


@dataclass(frozen=True)
class ImageFile:
    """One image: where it is, its file name (the sort key) and a stamp that changes with its content."""

    container: Container
    member: str  # path inside the container
    name: str
    stamp: str

    @property
    def where(self) -> str:
        return location(self.container, self.member)


def location(container: Container, member: str) -> str:
    """Human-readable place of a member, for error messages (``archive:member`` inside archives)."""
    sep = "/" if container.kind == "folder" else ":"
    return f"{container.path}{sep}{member}"


def is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")


def archive_kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz")):
        return "tar"
    return None


def find_containers(path: Path, strict: bool = False) -> list[Container]:
    """The containers at ``path``: an archive file, or a folder of class folders and/or archive shards.

    ``strict`` (for folders that may hold unrelated archives, such as a general data folder) keeps
    only archives whose first files are images inside a class folder.
    """
    if path.is_file():
        kind = archive_kind(path)
        return [Container(path, kind)] if kind else []
    if not path.is_dir():
        return []
    found: list[Container] = []
    entries = sorted(os.scandir(path), key=lambda e: e.name)
    if any(e.is_dir() and _has_image(Path(e.path)) for e in entries):
        found.append(Container(path, "folder"))
    for entry in entries:
        kind = archive_kind(Path(entry.path)) if entry.is_file() else None
        if kind and (not strict or _looks_like_image_archive(Container(Path(entry.path), kind))):
            found.append(Container(Path(entry.path), kind))
    return found


def _has_image(folder: Path) -> bool:
    try:
        return any(e.is_file() and is_image_name(e.name) for e in os.scandir(folder))
    except OSError:
        return False


def _looks_like_image_archive(container: Container, peek: int = 8) -> bool:
    """Whether the first few files of an archive are images inside a folder (cheap: no full read)."""
    try:
        if container.kind == "zip":
            with zipfile.ZipFile(container.path) as zf:
                names = [n for n in zf.namelist() if not n.endswith("/")][:peek]
        else:
            names = []
            with tarfile.open(container.path, "r:*") as tar:
                for member in tar:
                    if member.isfile():
                        names.append(member_name(member.name))
                        if len(names) >= peek:
                            break
    except ARCHIVE_ERRORS:
        return False
    return bool(names) and all(is_image_name(n) and "/" in n for n in names)


def list_images(containers: list[Container], cache: DiskCache) -> dict[str, list[ImageFile]]:
    """All images of ``containers`` by class, each class sorted by file name."""
    by_class: dict[str, list[ImageFile]] = defaultdict(list)
    for container in containers:
        for cls, item in _list_container(container, cache):
            by_class[cls].append(item)
    out = {}
    for cls in sorted(by_class):
        files = sorted(by_class[cls], key=lambda f: f.name)
        for a, b in zip(files, files[1:]):
            if a.name == b.name:
                raise DataError(f"class {cls} has two images named {a.name} ({a.where} and {b.where}); "
                                "remove one of the copies so the data set is unambiguous.")
        out[cls] = files
    return out


def _list_container(container: Container, cache: DiskCache) -> Iterator[tuple[str, ImageFile]]:
    if container.kind == "folder":
        for class_dir in sorted(os.scandir(container.path), key=lambda e: e.name):
            if not class_dir.is_dir() or class_dir.name.startswith("."):
                continue
            entries = list(os.scandir(class_dir.path))
            if not entries:
                raise DataError(f"class folder {class_dir.path} is empty: a class without images cannot be learned "
                                "or tested. Put its images back (copy the data set again) or remove the folder.")
            for entry in entries:
                if entry.is_file() and is_image_name(entry.name):
                    st = entry.stat()
                    member = f"{class_dir.name}/{entry.name}"
                    yield class_dir.name, ImageFile(container, member, entry.name, f"{st.st_size}:{st.st_mtime_ns}")
        return
    for member, size in _archive_members(container, cache):
        parts = member.split("/")
        if len(parts) < 2 or not is_image_name(member) or any(p.startswith(("__MACOSX", ".")) for p in parts):
            continue
        yield parts[-2], ImageFile(container, member, parts[-1], str(size))


def _archive_members(container: Container, cache: DiskCache) -> list[tuple[str, int]]:
    """(member, size) of every file in an archive; tar listings come from the cache when unchanged."""
    key = cache.key("archive-listing", str(container.path.resolve()), container.stamp())
    if container.kind == "tar":
        cached = cache.load_json(key)
        if cached is not None:
            return [(m, int(s)) for m, s in cached]
    try:
        if container.kind == "zip":
            with zipfile.ZipFile(container.path) as zf:
                return [(i.filename, i.file_size) for i in zf.infolist() if not i.is_dir()]
        with tarfile.open(container.path, "r:*") as tar:
            members = [(member_name(m.name), m.size) for m in tar if m.isfile()]
    except ARCHIVE_ERRORS as exc:
        raise damaged_archive(container.path, exc) from None
    cache.save_json(key, members)
    return members


def read_bytes(container: Container, members: list[str]) -> Iterator[tuple[str, bytes]]:
    """(member, bytes) of ``members``: in the given order for folders and zips, archive order for tars."""
    if container.kind == "tar":
        seen = 0
        for item in iter_tar(container.path, set(members)):
            seen += 1
            yield item
        if seen < len(set(members)):
            raise DataError(f"the archive {container.path} changed while it was read (images disappeared); "
                            "run again.")
        return
    try:
        if container.kind == "folder":
            for member in members:
                yield member, (container.path / member).read_bytes()
        else:
            with zipfile.ZipFile(container.path) as zf:
                for member in members:
                    yield member, zf.read(member)
    except OSError as exc:
        if container.kind == "folder":
            raise DataError(f"cannot read an image in {container.path}: {exc}.") from None
        raise damaged_archive(container.path, exc) from None
    except (*ARCHIVE_ERRORS, KeyError) as exc:
        raise damaged_archive(container.path, exc) from None


@contextlib.contextmanager
def open_image(data: bytes, where: str) -> Iterator[Any]:
    """Pillow's image of ``data``, opened without decoding; refused with a DataError naming ``where`` when it
    claims more than MAX_IMAGE_PIXELS, so that no reader allocates memory for a decompression bomb."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # dstcl's own limit applies below
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:  # above Pillow's limit: it gives the pixel count only
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise too_large(where, f"{int(found.group(1)):,} pixels" if found else "more pixels") from None
    with img:
        width, height = img.size
        if width * height > MAX_IMAGE_PIXELS:
            raise too_large(where, f"{width:,} x {height:,} = {width * height:,} pixels")
        yield img


def too_large(where: str, size: str) -> DataError:
    return DataError(f"the image {where} has {size}, more than the {MAX_IMAGE_PIXELS:,} pixels dstcl decodes (a "
                     "larger file is most likely a decompression bomb or a mistake); shrink it (it is resized to the "
                     "model's image size anyway) or remove it.")


def decode_image(data: bytes, size: int, where: str) -> np.ndarray:
    """One image as uint8 3 x size x size RGB; resized (bicubic, antialiased) when it is not that size.

    Non-square images are resized to a square without cropping (miniImageNet images are square).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with open_image(data, where) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BICUBIC)
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"the image {where} is corrupt or truncated ({exc}); replace or delete it.") from None
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def decode_files(container: Container, members: list[str], size: int) -> dict[str, np.ndarray]:
    """Decode ``members`` of one container (a unit of work for a worker process); keyed by member."""
    return {member: decode_image(data, size, location(container, member))
            for member, data in read_bytes(container, members)}
