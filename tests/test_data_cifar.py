"""CIFAR-10/100 readers on files in the real format: folder, tarball, download, damage."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import tarfile

import datagen
import numpy as np
import pytest
import torch

from dstcl.data import cifar, load_dataset
from dstcl.data.augment import batches
from dstcl.errors import DataError


def isolated(tmp_path) -> dict:
    """An environment whose cache folder is inside the test's folder (never the user's)."""
    return {"XDG_CACHE_HOME": str(tmp_path / "xdg")}


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
@pytest.mark.parametrize("as_tar", [False, True])
def test_reader_matches_the_written_files(tmp_path, kind, as_tar):
    written = datagen.write_cifar(tmp_path, kind, train_per_class=4, test_per_class=2, num_classes=10, as_tar=as_tar)
    assert written.exists()
    ds = load_dataset(kind, tmp_path, download=False, env=isolated(tmp_path))
    assert ds.name == kind and ds.num_classes == 10 and ds.image_shape == (3, 32, 32)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert torch.bincount(ds.train_y).tolist() == [4] * 10
    assert torch.bincount(ds.test_y).tolist() == [2] * 10
    assert (ds.crop_padding, ds.hflip) == (4, True)
    assert ds.mean == cifar.SPECS[kind].mean and ds.std == cifar.SPECS[kind].std
    # channel-major rows: the first 1024 bytes of a row are the red plane
    files = cifar.read_cifar_files(cifar.SPECS[kind], written)
    first = files[cifar.SPECS[kind].test_files[0]][b"data"][0]
    assert torch.equal(ds.test_x[0, 0].flatten(), torch.from_numpy(first[:1024]))
    assert torch.equal(ds.test_x[0, 2].flatten(), torch.from_numpy(first[2048:]))


def test_reads_the_tarball_or_folder_given_directly_and_limits_classes(tmp_path):
    tarball = datagen.write_cifar(tmp_path / "a", "cifar100", 3, 2, num_classes=8, as_tar=True)
    folder = datagen.write_cifar(tmp_path / "b", "cifar100", 3, 2, num_classes=8)
    for source in (tarball, folder):
        ds = load_dataset("cifar100", source, download=False, num_classes=4, env=isolated(tmp_path))
        assert ds.num_classes == 4 and ds.class_names == ["class_00", "class_01", "class_02", "class_03"]
        assert len(ds.train_x) == 12 and int(ds.train_y.max()) == 3


def test_found_through_the_environment_variable(tmp_path):
    datagen.write_cifar(tmp_path / "shared", "cifar10", 2, 1)
    env = {**isolated(tmp_path), "DSTCL_DATA": str(tmp_path / "shared")}
    assert load_dataset("cifar10", None, download=False, env=env).num_classes == 10


def test_missing_without_download_says_where_it_looked(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("cifar100", tmp_path / "nowhere", download=False, env=isolated(tmp_path))
    message = str(info.value)
    for part in ("nowhere", "xdg", "cifar-100-python.tar.gz", cifar.SPECS["cifar100"].md5, "--data-dir"):
        assert part in message


@pytest.fixture
def server(tmp_path):
    """A local server with a small cifar-10 tarball; yields (base URL, its MD5)."""
    tarball = datagen.write_cifar(tmp_path / "served", "cifar10", 3, 2, as_tar=True)
    with datagen.serve_folder(tmp_path / "served") as url:
        yield url, hashlib.md5(tarball.read_bytes()).hexdigest()


def test_downloads_into_the_first_writable_root(tmp_path, server, monkeypatch, capsys):
    url, md5 = server
    monkeypatch.setitem(cifar.SPECS, "cifar10", dataclasses.replace(cifar.SPECS["cifar10"], md5=md5))
    ds = load_dataset("cifar10", tmp_path / "data", base_url=url, progress=False, env=isolated(tmp_path))
    assert len(ds.train_x) == 30
    assert (tmp_path / "data" / "cifar-10-python.tar.gz").is_file()
    assert "downloading" in capsys.readouterr().err  # never silently
    again = load_dataset("cifar10", tmp_path / "data", download=False, env=isolated(tmp_path))
    assert torch.equal(again.train_x, ds.train_x)


def test_download_with_the_wrong_checksum_fails_and_leaves_nothing(tmp_path, server):
    url, _ = server  # the canonical MD5 cannot match the test's tarball
    with pytest.raises(DataError, match="MD5"):
        load_dataset("cifar10", tmp_path / "data", base_url=url, progress=False, env=isolated(tmp_path))
    assert not any((tmp_path / "data").iterdir())


def test_download_404(tmp_path, server):
    url, _ = server
    with pytest.raises(DataError, match="404"):
        load_dataset("cifar100", tmp_path / "data", base_url=url, progress=False, env=isolated(tmp_path))


def test_truncated_pickle_names_the_file(tmp_path):
    folder = datagen.write_cifar(tmp_path, "cifar100", 2, 1)
    data = (folder / "train").read_bytes()
    (folder / "train").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cifar-100-python/train"):
        load_dataset("cifar100", tmp_path, download=False, env=isolated(tmp_path))


def test_garbage_and_malicious_pickles_are_refused(tmp_path):
    folder = datagen.write_cifar(tmp_path, "cifar10", 2, 1)
    (folder / "test_batch").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", tmp_path, download=False, env=isolated(tmp_path))

    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit()}, protocol=2))
    with pytest.raises(DataError, match="unexpected object .*print"):
        load_dataset("cifar10", tmp_path, download=False, env=isolated(tmp_path))


def test_wrong_shapes_and_keys_are_data_errors(tmp_path):
    folder = datagen.write_cifar(tmp_path, "cifar10", 2, 1)
    batch = pickle.loads((folder / "test_batch").read_bytes(), encoding="bytes")
    bad_shape = {**batch, b"data": batch[b"data"][:, :100]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad_shape, protocol=2))
    with pytest.raises(DataError, match="3072"):
        load_dataset("cifar10", tmp_path, download=False, env=isolated(tmp_path))
    no_labels = {k: v for k, v in batch.items() if k != b"labels"}
    (folder / "test_batch").write_bytes(pickle.dumps(no_labels, protocol=2))
    with pytest.raises(DataError, match="labels"):
        load_dataset("cifar10", tmp_path, download=False, env=isolated(tmp_path))
    out_of_range = {**batch, b"labels": [99] * len(batch[b"labels"])}
    (folder / "test_batch").write_bytes(pickle.dumps(out_of_range, protocol=2))
    with pytest.raises(DataError, match="0..9"):
        load_dataset("cifar10", tmp_path, download=False, env=isolated(tmp_path))
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_dataset("cifar10", tmp_path, download=False, env=isolated(tmp_path))


def test_truncated_or_foreign_tarball_is_a_data_error(tmp_path):
    tarball = datagen.write_cifar(tmp_path, "cifar100", 2, 1, as_tar=True)
    data = tarball.read_bytes()
    tarball.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", tmp_path, download=False, env=isolated(tmp_path))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    tarball.write_bytes(buffer.getvalue())
    with pytest.raises(DataError, match="lacks"):
        load_dataset("cifar100", tmp_path, download=False, env=isolated(tmp_path))


def test_image_size_other_than_32_is_refused(tmp_path):
    datagen.write_cifar(tmp_path, "cifar10", 2, 1)
    with pytest.raises(DataError, match="no option\\(s\\) image_size"):
        load_dataset("cifar10", tmp_path, download=False, image_size=84, env=isolated(tmp_path))


class _SmallNet(torch.nn.Module):
    def __init__(self, classes: int):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, classes),
        )

    def forward(self, x):
        return self.body(x)


@pytest.fixture
def one_thread():
    """Tiny networks train faster on one thread (and much faster on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_separable_data_are_learnable_in_two_epochs(tmp_path, one_thread):
    """What the end-to-end tests rely on: a tiny CNN is far above chance on a datagen task."""
    from dstcl.data import BatchAugment, make_tasks

    datagen.write_cifar(tmp_path, "cifar100", train_per_class=40, test_per_class=20, num_classes=6)
    ds = load_dataset("cifar100", tmp_path, download=False, env=isolated(tmp_path))
    augment = BatchAugment(ds.crop_padding, ds.hflip, ds.mean, ds.std)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    for task in make_tasks(ds, 3):
        net = _SmallNet(2)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(2):
            for xb, yb in batches(task.train_x, task.train_y, 16, generator=gen):
                loss = torch.nn.functional.cross_entropy(net(augment(xb, gen)), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            accuracy = (net(augment(task.test_x, train=False)).argmax(1) == task.test_y).float().mean()
        assert accuracy >= 0.85, (task.index, accuracy)


def test_noise_data_are_not_separable(tmp_path):
    datagen.write_cifar(tmp_path, "cifar10", 5, 2, separable=False)
    ds = load_dataset("cifar10", tmp_path, download=False, env=isolated(tmp_path))
    per_class = [ds.train_x[ds.train_y == c].float().mean().item() for c in range(10)]
    assert np.ptp(per_class) < 10
