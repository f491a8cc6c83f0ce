"""Writing files: a full disk, a folder that is not writable or does not exist are said as such (issue 26,
row 12 a-c), and every file dstcl writes respects the process umask."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from dstcl import files
from dstcl.cli.main import main
from dstcl.errors import DstclError
from dstcl.files import DiskFullError, atomic_file, atomic_torch_save, atomic_write_text

TORCH_FULL = "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing file data/0: file write failed"
StatVfs = namedtuple("StatVfs", "f_bavail f_frsize")


def run_cli(*args: str, umask: int | None = None, **kwargs) -> subprocess.CompletedProcess:
    preexec = None if umask is None else (lambda: os.umask(umask))
    return subprocess.run([sys.executable, "-m", "dstcl.cli.main", *args], capture_output=True, text=True,
                          timeout=300, preexec_fn=preexec, **kwargs)


def one_paragraph(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def full_disk(monkeypatch):
    """``os.statvfs`` reporting 3 MB free, as on a disk that just filled up."""
    monkeypatch.setattr(files.os, "statvfs", lambda path: StatVfs(3 * 256, 4096))


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(TORCH_FULL)],
                         ids=["ENOSPC", "torch-enforce-fail"])
def test_a_full_disk_is_said_with_the_path_and_the_free_space(tmp_path, monkeypatch, full_disk, error):
    def failing_save(obj, handle):
        handle.write(b"x" * 1000)
        raise error
    monkeypatch.setattr(files.torch, "save", failing_save)
    target = tmp_path / "state.pt"
    with pytest.raises(DiskFullError) as caught:
        atomic_torch_save(target, {"x": 1})
    assert str(caught.value).startswith(f"No space left on device while writing {target} (3 MB free); free space")
    assert isinstance(caught.value, DstclError) and isinstance(caught.value, OSError)  # callers catching OSError
    assert not target.exists() and not list(tmp_path.iterdir())  # the half file is gone


def test_a_torch_failure_with_space_left_is_not_called_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "statvfs", lambda path: StatVfs(10**7, 4096))

    def failing_save(obj, handle):
        raise RuntimeError(TORCH_FULL)
    monkeypatch.setattr(files.torch, "save", failing_save)
    with pytest.raises(RuntimeError, match="enforce fail"):
        atomic_torch_save(tmp_path / "state.pt", {"x": 1})


def test_a_full_disk_while_checkpointing_names_the_resume_command(tmp_path, monkeypatch, full_disk):
    from dstcl.run import checkpoint

    def failing_save(obj, handle):
        handle.write(b"x" * 1000)
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:  # torch reports the writer's failure as its own RuntimeError
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    run_dir = tmp_path / "run"
    saver = checkpoint.Checkpointer(run_dir / "checkpoints", background=False)
    with pytest.raises(DstclError) as caught:
        saver.save({"phase": "x"})
    text = str(caught.value)
    assert "No space left on device while writing" in text and "(3 MB free)" in text
    assert f"dstcl run --resume {run_dir}" in text
    assert not list((run_dir / "checkpoints").iterdir())


def test_atomic_file_can_refuse_to_create_folders(tmp_path):
    target = tmp_path / "missing" / "dir" / "out.csv"
    with pytest.raises(DstclError, match=f"folder {tmp_path / 'missing' / 'dir'} does not exist; create it first"):
        with atomic_file(target, make_parents=False) as handle:
            handle.write(b"x")
    assert not (tmp_path / "missing").exists()
    atomic_write_text(target, "made")  # the default still creates them (run folders, caches)
    assert target.read_text() == "made"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> tuple[Path, Path]:
    """A model exported from a 2-task digits run, and a .npy batch of 8 digits."""
    root = tmp_path_factory.mktemp("model")
    done = run_cli("run", "--tasks", "2", "--epochs", "1", "--threads", "1", "--no-progress",
                   "--run-dir", str(root / "run"))
    assert done.returncode == 0, done.stderr
    assert run_cli("export", str(root / "run"), "-o", str(root / "m.dstcl")).returncode == 0
    from dstcl.data.digits import digits_arrays

    images, _ = digits_arrays()
    np.save(root / "batch.npy", np.rint(images[:8] * 255 / 16).clip(0, 255).astype(np.uint8)[:, None])
    return root / "m.dstcl", root / "batch.npy"


def test_predict_and_export_do_not_create_the_folder_of_their_output(tmp_path, model_file, capsys):
    model, batch = model_file
    missing = tmp_path / "nonexist" / "dir"
    assert main(["predict", str(model), str(batch), "-o", str(missing / "out.csv")]) == 2
    said = one_paragraph(capsys.readouterr().err)
    assert f"folder {missing} does not exist; create it first or choose another -o" in said
    assert main(["export", str(model.parent / "run"), "-o", str(missing / "m.dstcl")]) == 2
    said = one_paragraph(capsys.readouterr().err)
    assert f"folder {missing} does not exist; create it first or choose another -o" in said
    from dstcl.deploy import export_run

    with pytest.raises(DstclError, match="does not exist; create it first or choose another -o"):
        export_run(model.parent / "run", missing / "m.dstcl")  # the library call, not only the command
    assert not (tmp_path / "nonexist").exists()


def test_predict_into_a_folder_that_is_not_writable_says_so(tmp_path, model_file, monkeypatch, capsys):
    model, batch = model_file
    folder = tmp_path / "readonly"
    folder.mkdir()

    def refused(*args, **kwargs):  # what mkstemp raises in a read-only folder (root is never refused)
        raise PermissionError(errno.EACCES, "Permission denied", str(folder / ".out.csv.x.tmp"))
    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    assert main(["predict", str(model), str(batch), "-o", str(folder / "out.csv")]) == 2
    said = one_paragraph(capsys.readouterr().err)
    assert f"the folder {folder} is not writable" in said and "choose another -o" in said
    assert "--resume" not in said


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_every_file_of_a_run_respects_the_umask(tmp_path, umask, mode):
    run = tmp_path / "run"
    done = run_cli("run", "--tasks", "2", "--epochs", "1", "--threads", "1", "--no-progress", "--run-dir", str(run),
                   umask=umask)
    assert done.returncode == 0, done.stderr
    written = [p for p in run.rglob("*") if p.is_file()]
    assert {"config.json", "metrics.json", "summary.md", "state.pt", "events.jsonl", "task_00.npz"} <= {
        p.name for p in written}
    assert any(p.parent.name == "checkpoints" for p in written)
    wrong = {str(p.relative_to(run)): oct(stat.S_IMODE(p.stat().st_mode)) for p in written
             if stat.S_IMODE(p.stat().st_mode) != mode}
    assert not wrong, f"expected {oct(mode)}"


def test_reading_the_umask_leaves_it_unchanged():
    old = os.umask(0o027)
    try:
        assert files.current_umask() == 0o027 and files.current_umask() == 0o027
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)
