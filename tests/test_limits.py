"""Inputs too large to read are refused, naming the file, its size and the limit (issue 26, row 7),
and a thread count above the CPUs this process may use is capped, saying so (row 10)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib

import datagen
import numpy as np
import pytest

from dstcl.data import load_dataset
from dstcl.data.imagefolder import MAX_IMAGE_PIXELS, decode_image
from dstcl.deploy.images import MAX_NPY_BYTES, read_images
from dstcl.errors import DataError

SHAPE = (1, 8, 8)  # the model's image shape for read_images


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with (almost) no pixel data: what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def message(exc_info) -> str:
    return " ".join(str(exc_info.value).split())


@pytest.mark.parametrize("width,height", [(20000, 20000), (12500, 12500)], ids=["pillow-bomb", "above-dstcl-limit"])
def test_predict_refuses_an_oversized_image_before_decoding_it(tmp_path, width, height):
    big = tmp_path / "huge.png"
    big.write_bytes(png_claiming(width, height))
    with pytest.raises(DataError) as caught:
        read_images([big], SHAPE)
    text = message(caught)
    assert str(big) in text and f"{MAX_IMAGE_PIXELS:,}" in text
    assert f"{width * height:,} pixels" in text or f"{width:,} x {height:,}" in text


@pytest.mark.parametrize("width,height", [(20000, 20000), (12500, 12500)], ids=["pillow-bomb", "above-dstcl-limit"])
def test_the_image_readers_refuse_an_oversized_image(tmp_path, width, height):
    with pytest.raises(DataError, match="bomb.png.*pixels"):
        decode_image(png_claiming(width, height), 32, "folder/bomb.png")
    folder = datagen.write_miniimagenet(tmp_path, 2, 9, size=16)
    target = sorted((folder / datagen.wnids(2)[1]).iterdir())[4]
    target.write_bytes(png_claiming(width, height))  # a .jpg name does not stop Pillow reading a PNG
    for workers in (1, 2):
        with pytest.raises(DataError) as caught:
            load_dataset("miniimagenet", folder, cache_dir=tmp_path / "cache", progress=False, workers=workers,
                         train_per_class=6, test_per_class=3, env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
        assert target.name in message(caught) and f"{MAX_IMAGE_PIXELS:,}" in message(caught)


def test_an_image_within_the_limit_is_still_read(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 30), 200, dtype=np.uint8)).save(tmp_path / "ok.png")
    images, names = read_images([tmp_path / "ok.png"], SHAPE)
    assert images.shape == (1, *SHAPE) and names == [str(tmp_path / "ok.png")]


def test_an_empty_npy_is_refused(tmp_path):
    empty = tmp_path / "empty.npy"
    np.save(empty, np.zeros((0, *SHAPE), dtype=np.uint8))
    with pytest.raises(DataError, match="empty.npy holds no images"):
        read_images([empty], SHAPE)
    blank = tmp_path / "blank.npy"
    blank.write_bytes(b"")
    with pytest.raises(DataError, match="blank.npy is not a readable .npy"):
        read_images([blank], SHAPE)


def test_an_npy_claiming_a_billion_images_is_refused_from_its_header(tmp_path):
    from numpy.lib import format as npy_format

    claim = tmp_path / "claim.npy"
    with open(claim, "wb") as handle:
        npy_format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False,
                                                   "shape": (10**9, *SHAPE)})
        handle.write(b"\0" * 640)
    with pytest.raises(DataError) as caught:
        read_images([claim], SHAPE)
    text = message(caught)
    assert "claim.npy" in text and "1,000,000,000 images" in text and f"{MAX_NPY_BYTES:,}" in text
    small = tmp_path / "truncated.npy"
    with open(small, "wb") as handle:
        npy_format.write_array_header_1_0(handle, {"descr": "|u1", "fortran_order": False, "shape": (100, *SHAPE)})
        handle.write(b"\0" * 640)  # 10 images of the 100 claimed
    with pytest.raises(DataError, match="truncated.npy is truncated"):
        read_images([small], SHAPE)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, 2, 8, 8), dtype=np.float32))
    with pytest.raises(DataError, match="float32 array of shape"):
        read_images([wrong], SHAPE)
    good = tmp_path / "good.npy"
    np.save(good, np.arange(3 * 64, dtype=np.uint8).reshape(3, 8, 8, 1))  # N x H x W x C is accepted
    images, names = read_images([good], SHAPE)
    assert images.shape == (3, *SHAPE) and names[2] == f"{good}[2]"


def test_a_thread_count_above_the_cpus_is_capped_and_recorded(tmp_path):
    from dstcl.run.environment import available_cpus

    cpus = available_cpus()
    if cpus >= 1000:
        pytest.skip("this machine has 1000 CPUs or more")
    done = subprocess.run([sys.executable, "-m", "dstcl.cli.main", "run", "--threads", "1000", "--tasks", "2",
                           "--epochs", "1", "--no-progress", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)  # seconds; uncapped, many minutes
    assert done.returncode == 0, done.stderr
    plural = "s" if cpus > 1 else ""
    assert f"--threads 1000 is more than the {cpus} CPU{plural} this process may use; using {cpus}" in done.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == cpus
    assert json.loads((tmp_path / "run" / "environment.json").read_text())["cpu_threads"] == cpus


def test_capped_threads_keeps_a_count_within_the_cpus(monkeypatch):
    from dstcl.run import environment

    monkeypatch.setattr(environment, "available_cpus", lambda: 4)
    lines: list[str] = []
    assert environment.capped_threads(3, lines.append) == 3 and lines == []
    assert environment.capped_threads(8, lines.append) == 4 and lines == [
        "--threads 8 is more than the 4 CPUs this process may use; using 4"]
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    assert environment.capped_threads(None, lines.append) == 4 and "OMP_NUM_THREADS=16" in lines[-1]
