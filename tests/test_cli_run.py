"""End to end: `dstcl run` on generated data in the real CIFAR-10 on-disk format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import datagen
from dstcl.cli.main import main
from dstcl.models import build_model
from dstcl.run.rundir import load_mask
from dstcl.sparse import layer_counts, prunable_parameters

REAL_MINI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "miniimagenet"


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    datagen.write_cifar(root, kind="cifar10", train_per_class=60, test_per_class=20, num_classes=6, separable=True)
    return root


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir())


def test_three_task_run_writes_everything(cifar_dir, tmp_path, capsys):
    out = tmp_path / "runs"
    code = main([
        "run", "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--num-classes", "6", "--tasks", "3",
        "--backbone", "cnn", "--epochs", "4", "--batch-size", "16", "--update-frequency", "5",
        "--sparsity", "0.7", "--init", "uniform", "--growth", "gradient", "--no-download", "--no-progress",
        "--out", str(out), "--seed", "3",
    ])
    printed = capsys.readouterr().out
    assert code == 0
    (run,) = run_dirs(out)
    assert f"run directory: {run}" in printed and "ACC" in printed and "BWT" in printed
    for name in ["config.json", "environment.json", "metrics.json", "capacity.json", "events.jsonl",
                 "state.pt", "weights.pt", "summary.md"]:
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["dataset"] == "cifar10" and config["tasks"] == 3 and config["growth"] == "gradient"
    metrics = json.loads((run / "metrics.json").read_text())
    R = metrics["accuracy_matrix"]
    assert metrics["status"] == "completed" and len(R) == 3 and all(len(r) == 3 for r in R)
    # parameter isolation: no forgetting at all, bit for bit
    assert metrics["bwt"] == 0.0
    for j in range(3):
        assert R[2][j] == R[j][j]
    # separable data: far above chance (50 % for 2 classes per task)
    assert metrics["acc"] > 80.0
    assert set(metrics) >= {"acc", "bwt", "fwt", "fwt_reference", "incremental_accuracy", "accuracy_matrix"}
    # exact sparsity: every task's mask has exactly the per-layer counts
    model = build_model("cnn", num_classes=6, in_channels=3, image_size=32)
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model)}
    counts = layer_counts(shapes, 0.3, "uniform")
    total = sum(math.prod(s) for s in shapes.values())
    for t in range(3):
        masks = load_mask(run / "masks" / f"task_{t:02d}.npz")
        assert {n: int(m.sum()) for n, m in masks.items()} == counts
        assert sum(int(m.sum()) for m in masks.values()) == round(0.3 * total)
    capacity = json.loads((run / "capacity.json").read_text())
    assert [c["task"] for c in capacity] == [0, 1, 2]
    # each task owns classifier weights only in the rows of its own two classes
    state = torch.load(run / "state.pt", weights_only=False)
    classifier = next(layer for layer in state["layers"] if layer["name"] == "classifier.weight")
    owner = torch.from_numpy(classifier["owner"])
    for t in range(3):
        rows = owner[2 * t:2 * t + 2]
        assert set(rows.unique().tolist()) <= {-1, t} and (rows == t).any()
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    kinds = {e["event"] for e in events}
    assert {"epoch", "topology_update", "task_end", "run_end"} <= kinds


def test_same_seed_same_result(cifar_dir, tmp_path):
    args = ["run", "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--num-classes", "4", "--tasks", "2",
            "--backbone", "mlp", "--epochs", "2", "--batch-size", "16", "--update-frequency", "3",
            "--no-progress", "--no-download", "--seed", "1"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert main(args + ["--out", str(tmp_path / "b")]) == 0
    (a,), (b,) = run_dirs(tmp_path / "a"), run_dirs(tmp_path / "b")
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["accuracy_matrix"] == mb["accuracy_matrix"]
    sa, sb = (torch.load(d / "state.pt", weights_only=False) for d in (a, b))
    for la, lb in zip(sa["layers"], sb["layers"]):
        assert (la["values"] == lb["values"]).all()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
        (["--tasks", "4", "--num-classes", "6"], "4"),
        (["--sparsity", "1.5"], "sparsity must be in [0, 1)"),
        (["--growth", "random@0-7,gradient"], "names task 7"),
        (["--preset", "cifar1000"], "unknown preset"),
        (["--backbone", "vgg"], "unknown backbone 'vgg'"),
    ],
)
def test_bad_input_is_one_paragraph_no_traceback(cifar_dir, tmp_path, capsys, args, message):
    base = ["run", "--dataset", "cifar10", "--data-dir", str(cifar_dir), "--no-download", "--no-progress",
            "--out", str(tmp_path / "runs"), "--epochs", "1"]
    code = main(base + args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("dstcl: error:") and message in err.replace("\n", " ")
    assert "Traceback" not in err


def test_missing_data_says_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DSTCL_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(["run", "--dataset", "cifar100", "--data-dir", str(tmp_path / "nothing"), "--no-download",
                 "--no-progress", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.replace("\n", " ")
    assert code == 2 and "nothing" in err and "Traceback" not in err


@pytest.mark.skipif(not REAL_MINI.is_dir(), reason="the real miniImageNet copy is not on this machine")
def test_real_miniimagenet_two_tasks(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # keep the decoded cache out of $HOME
    code = main(["run", "--dataset", "miniimagenet", "--data-dir", str(REAL_MINI), "--num-classes", "4",
                 "--tasks", "2", "--epochs", "1", "--backbone", "resnet18", "--width", "8",
                 "--batch-size", "64", "--update-frequency", "5", "--no-progress", "--out", str(tmp_path / "runs")])
    assert code == 0
    (run,) = run_dirs(tmp_path / "runs")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["bwt"] == 0.0
    assert all(v is not None for v in metrics["accuracy_matrix"][1])


def test_unusable_paths_are_explained(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("[1, 2]")
    assert main(["run", "--resume", str(run)]) == 2
    assert "does not hold a run configuration" in capsys.readouterr().err.replace("\n", " ")
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert main(["run", "--tensorboard", str(a_file), "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--tensorboard" in err and "Traceback" not in err and not (tmp_path / "runs").exists()


def test_plugins_register_criteria_for_the_command_line(tmp_path, monkeypatch, capsys):
    plugin = tmp_path / "my_dstcl_plugin.py"
    plugin.write_text(
        "from dstcl.sparse import register_grow\n"
        "@register_grow('test_plugin_growth')\n"
        "def score(view):\n"
        "    return view.uniform()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["run", "--check", "--growth", "random@0,test_plugin_growth", "--tasks", "2", "--no-progress"]
    assert main(args) == 2  # not registered yet
    assert "test_plugin_growth" in capsys.readouterr().err
    monkeypatch.setenv("DSTCL_PLUGINS", "my_dstcl_plugin")
    try:
        assert main(args) == 0
    finally:  # leave the registry as the other tests expect it
        import sys

        from dstcl.sparse import GROW

        GROW.unregister("test_plugin_growth")
        sys.modules.pop("my_dstcl_plugin", None)
    monkeypatch.setenv("DSTCL_PLUGINS", "no_such_plugin_module")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "no_such_plugin_module" in err and "DSTCL_PLUGINS" in err and "Traceback" not in err
