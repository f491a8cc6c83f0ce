"""Class splits into tasks, the registry, the digits default, data roots and data set validation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from dstcl.data import DATASETS, ImageDataset, load_dataset, make_tasks, split_classes
from dstcl.data.base import first_classes
from dstcl.data.locate import cache_root, first_writable, resolve_data_root
from dstcl.errors import DataError


def test_sequential_split():
    assert split_classes(6, 3) == [[0, 1], [2, 3], [4, 5]]
    assert split_classes(100, 1) == [list(range(100))]


def test_random_split_is_a_seeded_permutation():
    a = split_classes(100, 10, "random", seed=1)
    assert a == split_classes(100, 10, "random", seed=1)
    assert a != split_classes(100, 10, "random", seed=2)
    assert sorted(c for task in a for c in task) == list(range(100))
    assert all(len(task) == 10 for task in a)
    assert a != split_classes(100, 10)


def test_tasks_must_divide_classes():
    with pytest.raises(DataError, match="valid task counts: 1, 2, 5, 10"):
        split_classes(10, 3)
    with pytest.raises(DataError, match="valid task counts"):
        split_classes(10, 0)
    with pytest.raises(DataError, match="sequential, random"):
        split_classes(10, 2, "alphabetical")


def _toy(classes: int = 6, per_class: int = 3) -> ImageDataset:
    y = torch.arange(classes).repeat_interleave(per_class)
    x = (y * 10).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, 4, 4).contiguous()
    return ImageDataset("toy", x, y, x[::per_class].clone(), y[::per_class].clone(), [f"c{i}" for i in range(classes)],
                        (0.5,) * 3, (0.25,) * 3, 1, True)


@pytest.mark.parametrize("order", ["sequential", "random"])
def test_make_tasks_uses_local_labels(order):
    ds = _toy()
    tasks = make_tasks(ds, 3, order, seed=4)
    assert [t.index for t in tasks] == [0, 1, 2]
    assert [t.classes for t in tasks] == split_classes(6, 3, order, seed=4)
    for task in tasks:
        assert task.num_classes == 2 and set(task.train_y.tolist()) == {0, 1} and set(task.test_y.tolist()) == {0, 1}
        global_y = task.global_classes[task.train_y]
        assert torch.equal(task.train_x[:, 0, 0, 0], (global_y * 10).to(torch.uint8))  # the images of those classes
        assert len(task.train_x) == 6 and len(task.test_x) == 2
    assert sum(len(t.train_x) for t in tasks) == len(ds.train_x)


def test_first_classes_and_validation():
    ds = first_classes(_toy(), 4)
    assert ds.num_classes == 4 and int(ds.train_y.max()) == 3 and len(ds.train_x) == 12
    with pytest.raises(DataError, match="between 1 and 6"):
        first_classes(_toy(), 7)
    toy = _toy()
    with pytest.raises(DataError, match="no test images"):
        ImageDataset("bad", toy.train_x, toy.train_y, toy.test_x[:2], toy.test_y[:2], toy.class_names,
                     toy.mean, toy.std, 1, True)
    with pytest.raises(DataError, match="uint8"):
        ImageDataset("bad", toy.train_x.float(), toy.train_y, toy.test_x, toy.test_y, toy.class_names,
                     toy.mean, toy.std, 1, True)
    with pytest.raises(DataError, match="0..5"):
        ImageDataset("bad", toy.train_x, toy.train_y + 1, toy.test_x, toy.test_y, toy.class_names,
                     toy.mean, toy.std, 1, True)


def test_digits_is_the_offline_default():
    ds = load_dataset("digits")
    assert ds.image_shape == (1, 8, 8) and ds.num_classes == 10
    assert len(ds.train_x) + len(ds.test_x) == 1797 and (len(ds.train_x), len(ds.test_x)) == (1433, 364)
    assert int(ds.train_x.max()) == 255 and (ds.crop_padding, ds.hflip) == (1, False)
    assert torch.equal(load_dataset("digits").test_x, ds.test_x)  # deterministic
    tasks = make_tasks(ds, 5)
    assert [t.classes for t in tasks] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert load_dataset("digits", num_classes=4).num_classes == 4
    with pytest.raises(DataError, match="no option\\(s\\) image_size"):
        load_dataset("digits", image_size=32)


def test_registry_errors_list_what_is_valid():
    assert {"digits", "cifar10", "cifar100", "miniimagenet"} <= set(DATASETS)
    with pytest.raises(DataError, match="valid: cifar10, cifar100, digits, miniimagenet"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="split"):
        load_dataset("miniimagenet", splt="random")


def test_data_root_search_order(tmp_path):
    env = {"DSTCL_DATA": os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]),
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert resolve_data_root(tmp_path / "explicit", env) == [
        tmp_path / "explicit", tmp_path / "a", tmp_path / "b", tmp_path / "xdg" / "dstcl"]
    assert resolve_data_root(None, {"HOME": str(tmp_path)}) == [tmp_path / ".cache" / "dstcl"]
    assert resolve_data_root(tmp_path / "xdg" / "dstcl", env)[-1] == tmp_path / "b"  # no duplicates
    assert cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/dstcl")


def test_first_writable_root(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    blocked = tmp_path / "a-file" / "sub"
    assert first_writable([blocked, tmp_path / "new" / "deeper"]) == tmp_path / "new" / "deeper"
    assert first_writable([blocked]) is None
