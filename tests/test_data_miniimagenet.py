"""miniImageNet reader: layouts, split rules, decoding, the decoded-array cache, damage, real data."""

from __future__ import annotations

import csv
import io
import os
import tarfile
from pathlib import Path

import datagen
import numpy as np
import pytest
import torch
from PIL import Image

from dstcl.data import load_dataset, miniimagenet
from dstcl.data.cache import DiskCache
from dstcl.data.imagefolder import decode_image, list_images
from dstcl.errors import DataError, DstclError

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "miniimagenet"
SMALL = {"train_per_class": 6, "test_per_class": 3}


def load(source, tmp_path, **options):
    """The reader with the cache and the environment inside the test's folder, serial decoding."""
    options = {"cache_dir": tmp_path / "cache", "progress": False, "workers": 1, **SMALL, **options}
    return load_dataset("miniimagenet", source, env={"XDG_CACHE_HOME": str(tmp_path / "xdg")}, **options)


@pytest.mark.parametrize("layout", [(None, 1), ("zip", 1), ("tar", 1), ("tar", 2), ("zip", 3)])
def test_every_layout_gives_the_same_data(tmp_path, layout):
    archive, shards = layout
    reference_root = datagen.write_miniimagenet(tmp_path / "ref", 3, 10, size=40)
    source = datagen.write_miniimagenet(tmp_path / "src", 3, 10, size=40, as_archive=archive, shards=shards)
    expected = load(reference_root, tmp_path / "a")
    got = load(tmp_path / "src", tmp_path / "b")  # found as <root>/miniimagenet[.zip|.tar.gz]
    direct = load(source, tmp_path / "c")  # or given directly
    for ds in (got, direct):
        assert ds.class_names == datagen.wnids(3)
        for field in ("train_x", "train_y", "test_x", "test_y"):
            assert torch.equal(getattr(ds, field), getattr(expected, field))
    assert expected.train_x.shape == (18, 3, 32, 32) and expected.test_x.shape == (9, 3, 32, 32)
    assert expected.mean == miniimagenet.MEAN and expected.hflip and expected.crop_padding == 4


def test_images_are_resized_with_pillow_bicubic(tmp_path):
    folder = datagen.write_miniimagenet(tmp_path, 1, 9, size=84)
    for size in (32, 84):
        ds = load(folder, tmp_path / str(size), image_size=size)
        assert ds.image_shape == (3, size, size)
        first = sorted((folder / datagen.wnids(1)[0]).iterdir())[0]
        with Image.open(first) as img:
            expected = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
        assert np.array_equal(ds.train_x[0].numpy().transpose(1, 2, 0), expected)
    assert load(folder, tmp_path / "84b", image_size=84).crop_padding == 10


def test_first500_rule_takes_the_first_and_last_sorted_names(tmp_path):
    folder = datagen.write_miniimagenet(tmp_path, 2, 12, size=16)
    ds = load(folder, tmp_path, image_size=16, train_per_class=6, test_per_class=3)
    listing = list_images(miniimagenet.find_source([folder])[1], DiskCache(None))
    for label, wnid in enumerate(datagen.wnids(2)):
        names = [f.name for f in listing[wnid]]
        assert names == sorted(datagen.image_names(wnid, 12))
        arrays = np.stack([decode_image((folder / wnid / n).read_bytes(), 16, n) for n in names])
        train = ds.train_x[ds.train_y == label].numpy()
        test = ds.test_x[ds.test_y == label].numpy()
        assert np.array_equal(train, arrays[:6]) and np.array_equal(test, arrays[-3:])  # 6..8 unused


def test_random_rule_is_seeded_per_class_and_disjoint():
    names = [f"img{i:03d}.jpg" for i in range(600)]
    train, test = miniimagenet.split_indices(names, "random", 500, 100, seed=3, class_key="n01")
    assert len(train) == 500 and len(test) == 100 and not set(train) & set(test)
    assert list(train) == sorted(train) and list(test) == sorted(test)
    again = miniimagenet.split_indices(names, "random", 500, 100, seed=3, class_key="n01")
    assert np.array_equal(again[1], test)
    assert not np.array_equal(miniimagenet.split_indices(names, "random", 500, 100, 4, "n01")[1], test)
    assert not np.array_equal(miniimagenet.split_indices(names, "random", 500, 100, 3, "n02")[1], test)
    first_train, first_test = miniimagenet.split_indices(names, "first500", 500, 100, 0, "n01")
    assert list(first_train) == list(range(500)) and list(first_test) == list(range(500, 600))


def test_random_rule_through_the_reader(tmp_path):
    folder = datagen.write_miniimagenet(tmp_path, 2, 9, size=16)
    fixed = load(folder, tmp_path, image_size=16)
    a = load(folder, tmp_path, image_size=16, split="random", seed=1)
    b = load(folder, tmp_path, image_size=16, split="random", seed=1)
    c = load(folder, tmp_path, image_size=16, split="random", seed=2)
    assert torch.equal(a.test_x, b.test_x) and not torch.equal(a.test_x, c.test_x)
    everything = torch.cat([fixed.train_x, fixed.test_x])
    assert sorted(map(bytes, torch.cat([a.train_x, a.test_x]).numpy())) == sorted(map(bytes, everything.numpy()))
    with pytest.raises(DstclError, match="first500, random"):
        load(folder, tmp_path, split="shuffled")


def test_num_classes_decodes_only_those(tmp_path, monkeypatch):
    folder = datagen.write_miniimagenet(tmp_path, 4, 9, size=16)
    decoded = []
    original = miniimagenet.decode_files
    monkeypatch.setattr(miniimagenet, "decode_files", lambda c, m, s: decoded.extend(m) or original(c, m, s))
    ds = load(folder, tmp_path, image_size=16, num_classes=2)
    assert ds.class_names == datagen.wnids(2) and ds.num_classes == 2
    assert {m.split("/")[0] for m in decoded} == set(datagen.wnids(2))
    with pytest.raises(DataError, match="between 1 and 4"):
        load(folder, tmp_path, num_classes=5)


def test_cache_hit_decodes_nothing_and_a_changed_source_is_decoded_again(tmp_path, monkeypatch):
    folder = datagen.write_miniimagenet(tmp_path, 2, 9, size=16)
    first = load(folder, tmp_path, image_size=16)
    decoded = []
    original = miniimagenet.decode_files
    monkeypatch.setattr(miniimagenet, "decode_files", lambda c, m, s: decoded.extend(m) or original(c, m, s))
    hit = load(folder, tmp_path, image_size=16)
    assert decoded == [] and torch.equal(hit.train_x, first.train_x) and torch.equal(hit.test_x, first.test_x)

    wnid = datagen.wnids(2)[1]
    target = sorted((folder / wnid).iterdir())[0]
    Image.new("RGB", (16, 16), (255, 0, 0)).save(target, format="JPEG")
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = load(folder, tmp_path, image_size=16)
    assert {m.split("/")[0] for m in decoded} == {wnid}  # only the changed class
    assert int(changed.train_x[changed.train_y == 1][0, 0].float().mean()) > 200  # the new red image
    assert torch.equal(changed.train_x[changed.train_y == 0], first.train_x[first.train_y == 0])

    decoded.clear()
    load(folder, tmp_path, image_size=32)  # another size is another cache entry
    assert len(decoded) == 18


def test_a_rewritten_archive_invalidates_its_classes(tmp_path, monkeypatch):
    archive = datagen.write_miniimagenet(tmp_path, 2, 9, size=16, as_archive="tar")
    load(archive, tmp_path, image_size=16)
    decoded = []
    original = miniimagenet.decode_files
    monkeypatch.setattr(miniimagenet, "decode_files", lambda c, m, s: decoded.extend(m) or original(c, m, s))
    load(archive, tmp_path, image_size=16)
    assert decoded == []
    datagen.write_miniimagenet(tmp_path, 2, 9, size=16, as_archive="tar", seed=5)
    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load(archive, tmp_path, image_size=16)
    assert len(decoded) == 18


def test_a_damaged_cache_entry_counts_as_a_miss(tmp_path):
    folder = datagen.write_miniimagenet(tmp_path, 1, 9, size=16)
    first = load(folder, tmp_path, image_size=16)
    for entry in (tmp_path / "cache").glob("*.npz"):
        entry.write_bytes(b"garbage")
    assert torch.equal(load(folder, tmp_path, image_size=16).train_x, first.train_x)


def test_class_with_too_few_images_is_named(tmp_path):
    folder = datagen.write_miniimagenet(tmp_path, 2, 9, size=16)
    wnid = datagen.wnids(2)[1]
    sorted((folder / wnid).iterdir())[0].unlink()
    with pytest.raises(DataError, match=f"class {wnid} .* has 8 images"):
        load(folder, tmp_path)


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_or_truncated_image_is_named(tmp_path, workers):
    folder = datagen.write_miniimagenet(tmp_path, 2, 9, size=16)
    target = sorted((folder / datagen.wnids(2)[1]).iterdir())[4]
    target.write_bytes(target.read_bytes()[:60])
    with pytest.raises(DataError, match=target.name):
        load(folder, tmp_path, workers=workers)
    target.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=target.name):
        load(folder, tmp_path, workers=workers)


def test_truncated_archive_is_named(tmp_path):
    archive = datagen.write_miniimagenet(tmp_path, 2, 9, size=16, as_archive="tar")
    archive.write_bytes(archive.read_bytes()[:3000])
    with pytest.raises(DataError, match="miniimagenet.tar.gz"):
        load(archive, tmp_path)
    zipped = datagen.write_miniimagenet(tmp_path, 2, 9, size=16, as_archive="zip")
    zipped.write_bytes(zipped.read_bytes()[:-200])
    with pytest.raises(DataError, match="miniimagenet.zip"):
        load(zipped, tmp_path)


def test_missing_data_set_says_where_it_looked(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load(tmp_path / "empty", tmp_path)
    assert str(tmp_path / "empty") in str(info.value) and "--data-dir" in str(info.value)


def test_unrelated_archives_in_a_data_root_are_not_taken_for_images(tmp_path):
    datagen.write_cifar(tmp_path, "cifar10", 1, 1, as_tar=True)
    with pytest.raises(DataError, match="not found"):
        load(tmp_path, tmp_path)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real miniImageNet not found at {REAL}")
def test_real_miniimagenet_first_two_classes(tmp_path):
    ds = load_dataset("miniimagenet", REAL.parent, cache_dir=tmp_path / "cache", num_classes=2, progress=False,
                      env={"XDG_CACHE_HOME": str(tmp_path / "xdg")})
    with open(REAL / "classes.csv", newline="") as handle:
        wnids = [row["wnid"] for row in csv.DictReader(handle)]
    assert ds.class_names == wnids[:2] == sorted(wnids)[:2]
    assert ds.train_x.shape == (1000, 3, 32, 32) and ds.test_x.shape == (200, 3, 32, 32)
    assert torch.bincount(ds.train_y).tolist() == [500, 500]

    # the first500 rule is the published 500/100 split file
    containers = miniimagenet.find_source([REAL])[1]
    listing = list_images(containers, DiskCache(tmp_path / "cache"))
    with open(REAL / "source_split_500train_100val.csv", newline="") as handle:
        published = [row for row in csv.DictReader(handle) if row["wnid"] in wnids[:2]]
    for wnid in wnids[:2]:
        names = [f.name for f in listing[wnid]]
        train, test = miniimagenet.split_indices(names, "first500", 500, 100, 0, wnid)
        rows = [r for r in published if r["wnid"] == wnid]
        assert [names[i] for i in train] == [r["filename"] for r in rows if r["split"] == "train"]
        assert [names[i] for i in test] == [r["filename"] for r in rows if r["split"] == "val"]

    # the first test image of class 1 is its file, decoded and resized
    name = listing[wnids[1]][500].name
    with tarfile.open(REAL / "images-00.tar.gz") as tar:
        data = tar.extractfile(f"{wnids[1]}/{name}").read()
    with Image.open(io.BytesIO(data)) as img:
        expected = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BICUBIC))
    assert np.array_equal(ds.test_x[ds.test_y == 1][0].numpy().transpose(1, 2, 0), expected)
