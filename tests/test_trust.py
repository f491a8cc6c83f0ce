"""Files from elsewhere run no code; a finished run is whole; damaged files are caught, never used.

Each test reproduces one failure an adversarial pass found on 2026-12-06 (issue 26's table)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import dstcl
from conftest import dstcl as dstcl_cli
from dstcl.errors import DstclError
from dstcl.safeload import file_digest
from test_deploy import _digits_npy

SMALL = ["--epochs", "3", "--update-frequency", "6", "--threads", "1", "--no-progress"]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return dstcl_cli(*args, env_extra=env)


def said(done: subprocess.CompletedProcess) -> str:
    return " ".join((done.stdout + done.stderr).split())


class Planted:
    """A pickle that would create ``marker`` when unpickled (stands for any shell command)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def plant(file: Path, marker: Path, run: Path | None = None) -> None:
    """Replace ``file`` with a code-running pickle; re-record its digest (an attacker controls metrics.json too)."""
    torch.save({"format": "dstcl-sparse-state/1", "layers": [Planted(marker)]}, file)
    if run is not None:
        metrics = json.loads((run / "metrics.json").read_text())
        name = str(file.relative_to(run))
        if name in metrics.get("files", {}):
            metrics["files"][name] = file_digest(file)
            (run / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    done = cli("run", *SMALL, "--bn", "task", "--run-dir", str(root / "run"))
    assert done.returncode == 0, done.stderr
    return root / "run"


def copy_run(run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run, dest)
    return dest


def test_planted_pickles_run_nothing_under_export_predict_load_and_resume(finished, tmp_path):
    marker = tmp_path / "PWNED"
    batch = tmp_path / "batch.npy"
    np.save(batch, np.load(_digits_npy(tmp_path))[:16])
    dense = tmp_path / "dense"
    assert cli("run", *SMALL, "--method", "finetune", "--run-dir", str(dense)).returncode == 0
    for source in (finished, dense):
        victim = copy_run(source, tmp_path / f"victim-{source.name}")
        for file in victim.rglob("*.pt"):  # every torch file of the run: results and checkpoints
            plant(file, marker, victim)
        for args in (("export", str(victim), "-o", str(tmp_path / "m.dstcl")), ("predict", str(victim), str(batch))):
            done = cli(*args)
            assert done.returncode == 2 and "could run code" in said(done), (source, args, done.stdout, done.stderr)
            assert "Traceback" not in done.stderr and not marker.exists()
        with pytest.raises(DstclError, match="could run code"):
            dstcl.load(victim)
        assert not marker.exists()
    # an unfinished run whose checkpoints were replaced: --resume refuses, nothing runs
    killed = tmp_path / "killed"
    done = cli("run", *SMALL, "--run-dir", str(killed), env={"DSTCL_KILL_AT": "task_end:2"})
    assert done.returncode == -signal.SIGKILL
    for checkpoint in (killed / "checkpoints").glob("ckpt-*.pt"):
        plant(checkpoint, marker)
    done = cli("run", "--resume", str(killed))
    assert done.returncode == 2 and "could run code" in said(done), done.stderr
    assert "Traceback" not in done.stderr and not marker.exists()


@pytest.mark.parametrize("kill_at", ["final_write:1", "final_write:2", "final_write:3", "final_write:4"])
def test_a_kill_at_any_final_write_leaves_a_resumable_run_never_a_hollow_completed_one(finished, kill_at, tmp_path):
    run = tmp_path / "run"
    done = cli("run", *SMALL, "--bn", "task", "--run-dir", str(run), env={"DSTCL_KILL_AT": kill_at})
    assert done.returncode == -signal.SIGKILL
    assert json.loads((run / "metrics.json").read_text())["status"] != "completed"
    resumed = cli("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    want = json.loads((finished / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["accuracy_matrix"] == want["accuracy_matrix"]
    assert {"config.json", "state.pt", "weights.pt", "buffers.pt", "masks/task_00.npz"} <= set(metrics["files"])
    for name, digest in metrics["files"].items():
        assert file_digest(run / name) == digest, name


def test_a_full_disk_at_the_final_write_says_resume_and_resume_works(tmp_path):
    run = tmp_path / "run"
    done = cli("run", *SMALL, "--run-dir", str(run), env={"DSTCL_FAIL_AT": "final_write:2"})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["resume"] == f"dstcl run --resume {run}"
    resumed = cli("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert (run / "weights.pt").is_file() and (run / "state.pt").is_file()


def test_a_missing_or_altered_state_is_refused_by_export_and_predict(finished, tmp_path):
    batch = tmp_path / "batch.npy"
    np.save(batch, np.load(_digits_npy(tmp_path))[:16])
    deleted = copy_run(finished, tmp_path / "deleted")
    (deleted / "state.pt").unlink()
    altered = copy_run(finished, tmp_path / "altered")
    data = bytearray((altered / "state.pt").read_bytes())
    data[len(data) // 2: len(data) // 2 + 200] = bytes(200)  # 200 bytes inside the weight data
    (altered / "state.pt").write_bytes(bytes(data))
    for run, words in ((deleted, "is missing"), (altered, "is not the file the run wrote")):
        for args in (("export", str(run), "-o", str(tmp_path / "m.dstcl")), ("predict", str(run), str(batch))):
            done = cli(*args)
            assert done.returncode == 2 and words in said(done) and "state.pt" in said(done), done.stderr
            assert "Traceback" not in done.stderr


def test_a_folder_that_is_not_a_run_is_never_wiped(finished, tmp_path):
    folder = copy_run(finished, tmp_path / "lost")
    (folder / "config.json").unlink()
    (folder / "checkpoints" / "my_model.pt").write_bytes(b"mine")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    done = cli("run", *SMALL, "--run-dir", str(folder))
    assert done.returncode == 2 and "not a dstcl run folder" in said(done) and "config.json was lost" in said(done)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    fresh = copy_run(finished, tmp_path / "fresh")
    (fresh / "checkpoints" / "my_model.pt").write_bytes(b"mine")
    done = cli("run", *SMALL, "--epochs", "2", "--run-dir", str(fresh), "--fresh")
    assert done.returncode == 0, done.stderr
    assert (fresh / "checkpoints" / "my_model.pt").read_bytes() == b"mine"  # --fresh removes dstcl's files only


@pytest.mark.parametrize("method", ["finetune", "joint"])
def test_check_of_a_dense_method(method):
    done = cli("run", "--check", "--method", method)
    assert done.returncode == 0 and "configuration OK" in done.stdout and "dense" in done.stdout, done.stderr


def _state_variants(payload: dict) -> dict:
    first = payload["layers"][0]
    nan = {**first, "values": np.full_like(first["values"], np.nan)}
    return {
        "empty dict": {}, "a list": [1, 2], "no layers": {"format": payload["format"]},
        "layer without name": {**payload, "layers": [{"shape": [2]}]},
        "short masks": {**payload, "layers": [{**first, "masks": [m[:1] for m in first["masks"]]},
                                              *payload["layers"][1:]]},
        "NaN weights": {**payload, "layers": [nan, *payload["layers"][1:]]},
    }


def test_a_state_of_the_wrong_shape_is_refused_in_words(finished, tmp_path):
    payload = torch.load(finished / "state.pt", weights_only=False)
    for label, variant in _state_variants(payload).items():
        run = copy_run(finished, tmp_path / label.replace(" ", "-"))
        torch.save(variant, run / "state.pt")
        plant_digest = json.loads((run / "metrics.json").read_text())
        plant_digest["files"]["state.pt"] = file_digest(run / "state.pt")
        (run / "metrics.json").write_text(json.dumps(plant_digest))
        done = cli("export", str(run), "-o", str(tmp_path / "m.dstcl"))
        assert done.returncode == 2 and "not a valid dstcl sparse state" in said(done), (label, done.stderr)
        assert "Traceback" not in done.stderr


def test_inconsistent_model_files_are_refused_in_words(finished, tmp_path):
    model = tmp_path / "m.dstcl"
    assert cli("export", str(finished), "-o", str(model)).returncode == 0
    package = torch.load(model, weights_only=True)
    layer = package["layers"][0]
    variants = {
        "no layers": {**package, "layers": None},
        "layer of another shape": {**package, "layers": [{**layer, "shape": [1, 2]}, *package["layers"][1:]]},
        "masks cut short": {**package, "layers": [{**layer, "masks": [m[:1] for m in layer["masks"]]},
                                                  *package["layers"][1:]]},
        "a task's mask missing": {**package, "layers": [{**layer, "masks": layer["masks"][:1]}, *package["layers"][1:]]},
        "owned values short": {**package, "layers": [{**layer, "owned_values": layer["owned_values"][:3]},
                                                     *package["layers"][1:]]},
        "NaN weights": {**package, "layers": [{**layer, "owned_values": layer["owned_values"] * float("nan")},
                                              *package["layers"][1:]]},
        "no heads": {**package, "heads": []},
        "heads not pairs": {**package, "heads": [1, 2, 3]},
        "no backbone": {**package, "backbone": {}},
        "class names short": {**package, "class_names": []},
        "preprocess missing": {**package, "preprocess": None},
        "buffers wrong": {**package, "buffers": {"nonexistent.buffer": torch.zeros(2)}},
    }
    batch = tmp_path / "batch.npy"
    np.save(batch, np.load(_digits_npy(tmp_path))[:16])
    for label, variant in variants.items():
        path = tmp_path / f"{label.replace(' ', '-')}.dstcl"
        torch.save(variant, path)
        done = cli("predict", str(path), str(batch))
        assert done.returncode == 2 and "Traceback" not in done.stderr, (label, done.stdout, done.stderr)


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_resume_repairs_a_damaged_mask_file_from_the_checkpoint(finished, damage, tmp_path):
    run = tmp_path / "run"
    done = cli("run", *SMALL, "--bn", "task", "--run-dir", str(run), env={"DSTCL_KILL_AT": "task_end:3"})
    assert done.returncode == -signal.SIGKILL
    mask = run / "masks" / "task_00.npz"
    if damage == "deleted":
        mask.unlink()
    else:
        mask.write_bytes(mask.read_bytes()[:40])
    resumed = cli("run", "--resume", str(run))
    assert resumed.returncode == 0 and "task_00.npz was damaged" in said(resumed), resumed.stderr
    from dstcl.run.rundir import load_mask

    repaired, want = load_mask(mask), load_mask(finished / "masks" / "task_00.npz")
    assert repaired.keys() == want.keys() and all(torch.equal(repaired[k], want[k]) for k in want)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["files"]["masks/task_00.npz"] == file_digest(mask)


def test_a_rerun_with_another_thread_count_says_so(finished):
    """The same settings but another --threads: nothing is redone, and the message names the thread counts."""
    done = cli("run", *[a if a != "1" else "2" for a in SMALL], "--bn", "task", "--run-dir", str(finished))
    assert done.returncode == 0 and "nothing to do" in said(done), done.stderr
    assert "ran with 1 CPU thread(s), this command asks for 2" in said(done)
