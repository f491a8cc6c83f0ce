"""``dstcl run --method packnet | wsn | supsup``: exact isolation, kill-and-resume, every backbone and data set."""

from __future__ import annotations

import json
import signal

import pytest
import torch

import datagen
from conftest import dstcl
from dstcl.config import resolve
from dstcl.errors import ConfigError
from dstcl.models import MODELS
from dstcl.run.experiment import run_experiment
from test_resume import assert_same_result

METHODS = ("packnet", "wsn", "supsup")
QUIET = {"threads": 1, "progress": False, "device": "cpu"}
SIZE = {"cnn": {"width": 4}, "mlp": {"width": 16}, "resnet18": {"width": 4}, "mobilenetv2": {"width_mult": 0.25}}


def run(tmp_path, name: str, **settings):
    cfg = resolve({**QUIET, **settings})
    return run_experiment(cfg, run_dir=tmp_path / name, echo=lambda s: None).metrics


@pytest.mark.parametrize("method", METHODS)
def test_every_entry_below_the_diagonal_is_measured_equal(method, tmp_path):
    """--eval full measures every entry again (no digest proof): BWT is exactly 0 because nothing changed."""
    metrics = run(tmp_path, method, method=method, epochs=2, eval="full", agnostic=True, retrain_epochs=1)
    R = metrics["accuracy_matrix"]
    assert metrics["status"] == "completed" and metrics["bwt"] == 0.0 and metrics["evaluation"]["proven"] == 0
    assert all(R[i][j] == R[j][j] for i in range(len(R)) for j in range(i))
    assert metrics["acc"] > 50  # it learned (5 tasks of 2 digits)
    assert 0 <= metrics["task_inference_accuracy"] <= 100
    capacity = json.loads((tmp_path / method / "capacity.json").read_text())
    assert len(capacity) == 5 and (tmp_path / method / "state.pt").is_file()


def test_packnet_and_wsn_stay_within_the_network_and_supsup_owns_nothing(tmp_path):
    for method in METHODS:
        run(tmp_path, method, method=method, epochs=1, retrain_epochs=1, sparsity=0.5)
    last = {m: json.loads((tmp_path / m / "capacity.json").read_text())[-1]["layers"] for m in METHODS}
    assert all(row["owned_fraction"] <= 1.0 for rows in last.values() for row in rows)
    hidden = [row for row in last["packnet"] if row["name"] != "classifier.weight"]
    assert all(row["new_fraction"] <= 1 / 5 + 1e-9 for row in hidden)  # min(d, 1/T) per task
    assert all(row["owned_fraction"] == 0 and row["new_fraction"] == 0 for row in last["supsup"])


def test_supsup_masks_drive_one_shot_task_inference_in_the_model_file(tmp_path):
    run(tmp_path, "supsup", method="supsup", epochs=2, tasks=2, num_classes=4)
    import dstcl
    from dstcl.data import load_dataset, make_tasks

    model = dstcl.load(tmp_path / "supsup")
    tasks = make_tasks(load_dataset("digits", None, num_classes=4, seed=0), 2, "sequential", 0)
    scores = model.supsup(tasks[1].test_x[:32])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    prediction = model.predict(tasks[1].test_x[:32], criterion="supsup")
    assert set(prediction.tasks) <= {0, 1} and len(prediction.classes) == 32


def test_settings_a_method_cannot_honour_are_refused_before_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="--structure"):
        run(tmp_path, "wsn", method="wsn", structure="channel")
    with pytest.raises(ConfigError, match="kept-epoch"):
        run(tmp_path, "packnet", method="packnet", kept_epoch="best-train")
    assert not (tmp_path / "wsn").exists() and not (tmp_path / "packnet").exists()
    metrics = run(tmp_path, "best", method="wsn", epochs=2, tasks=2, num_classes=4, kept_epoch="best-train")
    assert metrics["bwt"] == 0.0


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    datagen.write_cifar(root, kind="cifar10", train_per_class=12, test_per_class=4, num_classes=4, separable=True)
    return root


@pytest.mark.parametrize("backbone", MODELS.names())
@pytest.mark.parametrize("method", METHODS)
def test_every_backbone(method, backbone, cifar, tmp_path):
    metrics = run(tmp_path, "run", method=method, backbone=backbone, dataset="cifar10", data_dir=str(cifar),
                  download=False, num_classes=4, tasks=2, epochs=1, retrain_epochs=1, batch_size=8,
                  **SIZE.get(backbone, {}))
    assert metrics["status"] == "completed" and metrics["bwt"] == 0.0


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """Two classes of 600 tiny JPEGs: the first-500 split of miniImageNet needs 600 per class."""
    return datagen.write_miniimagenet(tmp_path_factory.mktemp("mini"), 2, 600, size=8)


@pytest.mark.parametrize("method", METHODS)
def test_every_data_set(method, mini, tmp_path, monkeypatch):
    """digits (its default backbone), CIFAR-100 and miniImageNet (small copies in their real formats)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # keep the decoded cache out of $HOME
    assert run(tmp_path, "digits", method=method, epochs=1, tasks=2, num_classes=4)["bwt"] == 0.0
    datagen.write_cifar(tmp_path / "c100", kind="cifar100", train_per_class=6, test_per_class=2, num_classes=4)
    for dataset, where, extra in (("cifar100", tmp_path / "c100", {"num_classes": 4}),
                                  ("miniimagenet", mini, {"num_classes": 2, "image_size": 8, "batch_size": 128})):
        metrics = run(tmp_path, dataset, method=method, dataset=dataset, data_dir=str(where), download=False, tasks=2,
                      epochs=1, retrain_epochs=1, backbone="cnn", width=4, **{"batch_size": 8, **extra})
        assert metrics["status"] == "completed" and metrics["bwt"] == 0.0, dataset


ARGS = ["--epochs", "2", "--tasks", "3", "--num-classes", "6", "--retrain-epochs", "1", "--threads", "1",
        "--no-progress", "--checkpoint-budget", "1", "--seed", "3"]
# digits, 6 classes in 3 tasks: 9 steps per epoch. PackNet's tasks are 3 epochs (2, then 1 retraining): step 12 is in
# task 0's main phase, step 48 in task 1's retraining (it resumes from the checkpoint after task 1's pruning)
KILLS = {"packnet": ("training_step:12", "training_step:48"), "wsn": ("training_step:30",),
         "supsup": ("evaluation:2",)}


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run of each method (in this process: the same settings, threads and seed)."""
    from dstcl.cli.main import main

    runs = {}
    for method in KILLS:
        runs[method] = tmp_path_factory.mktemp(method) / "run"
        assert main(["run", "--method", method, *ARGS, "--run-dir", str(runs[method])]) == 0
    return runs


@pytest.mark.parametrize("method,kill_at", [(m, k) for m, kills in KILLS.items() for k in kills])
def test_kill_and_resume_is_bit_identical(method, kill_at, straight, tmp_path):
    from dstcl.run.experiment import resume_experiment

    killed = dstcl("run", "--method", method, *ARGS, "--run-dir", str(tmp_path / "run"),
                   env_extra={"DSTCL_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    notes: list[str] = []
    resume_experiment(tmp_path / "run", echo=notes.append)
    assert any("resuming" in note for note in notes), notes
    assert_same_result(tmp_path / "run", straight[method])
