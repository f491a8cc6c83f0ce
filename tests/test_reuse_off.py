"""``--reuse off``: tasks use free weights only (start and growth), the room is checked before training,
isolation stays exact and a killed run resumes bit for bit."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

import datagen
from conftest import TinyNet, dstcl, train_steps
from dstcl.cli.main import main
from dstcl.config import resolve
from dstcl.errors import ConfigError
from dstcl.models import build_model, output_weight
from dstcl.sparse import SparseConfig, SparseLearner, layer_counts, prunable_parameters
from dstcl.sparse.budget import check_room_without_reuse, fitting_sparsity, overfull, task_budget
from dstcl.sparse.state import unpack_mask

ARGS = ["--dataset", "cifar10", "--num-classes", "6", "--tasks", "3", "--backbone", "cnn", "--width", "8",
        "--epochs", "3", "--batch-size", "16", "--update-frequency", "4", "--growth", "gradient", "--reuse", "off",
        "--sparsity", "0.7", "--init", "uniform", "--no-download", "--no-progress", "--seed", "5"]


def reused_positions(run: Path) -> dict[str, int]:
    """Per layer: how many positions a task's mask shares with weights owned by an earlier task."""
    state = torch.load(run / "state.pt", weights_only=False)
    out = {}
    for layer in state["layers"]:
        shape = tuple(layer["shape"])
        owner = torch.as_tensor(np.asarray(layer["owner"])).reshape(shape)
        masks = [unpack_mask(bits, shape) for bits in layer["masks"]]
        out[layer["name"]] = sum(int((m & (owner >= 0) & (owner < t)).sum()) for t, m in enumerate(masks))
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    datagen.write_cifar(root, kind="cifar10", train_per_class=40, test_per_class=10, num_classes=6, separable=True)
    return root


@pytest.fixture(scope="module")
def reference(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("ref") / "run"
    done = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    return run


def test_no_task_touches_an_earlier_task_and_isolation_is_exact(reference):
    metrics = json.loads((reference / "metrics.json").read_text())
    assert metrics["bwt"] == 0.0 and all(metrics["accuracy_matrix"][2][j] == metrics["accuracy_matrix"][j][j]
                                         for j in range(3))
    assert metrics["acc"] > 60.0  # free weights start from a Kaiming draw: later tasks learn (not at chance)
    assert set(reused_positions(reference).values()) == {0}
    events = [json.loads(line) for line in (reference / "events.jsonl").read_text().splitlines()]
    updates = [e for e in events if e["event"] == "topology_update"]
    assert updates and all(e["grown_reused"] == 0 for e in updates) and sum(e["dropped"] for e in updates) > 0
    config = json.loads((reference / "config.json").read_text())
    assert config["reuse"] == "off" and config["free_init"] == "kaiming"
    capacity = json.loads((reference / "capacity.json").read_text())
    assert all(row["reused_fraction"] == 0 for task in capacity for row in task["layers"])


@pytest.mark.parametrize("kill_at", ["topology_update:5", "task_end:2"])
def test_kill_and_resume_is_bit_identical(kill_at, data_dir, reference, tmp_path):
    run = tmp_path / "run"
    killed = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    sa, sb = (torch.load(d / "state.pt", weights_only=False) for d in (run, reference))
    for la, lb in zip(sa["layers"], sb["layers"]):
        assert (la["values"].view("int32") == lb["values"].view("int32")).all(), la["name"]
        assert (la["owner"] == lb["owner"]).all() and all((a == b).all() for a, b in zip(la["masks"], lb["masks"]))


def test_growth_and_initial_masks_take_free_weights_only(tiny_net):
    learner = SparseLearner(tiny_net, SparseConfig(density=0.3, init="uniform", update_frequency=3, growth="gradient",
                                                   free_init="kaiming", reuse="off"), seed=1, num_tasks=3)
    for task in range(3):
        learner.start_task(task, 12)
        frozen = {layer.state.name: layer.frozen.clone() for layer in learner._layers}
        optimizer = learner.make_optimizer("adam", 1e-2)
        reports = train_steps(tiny_net, learner, optimizer, task, 12, seed=task)
        assert reports and all(sum(r.grown_reused.values()) == 0 for r in reports)
        for name, mask in learner.current_masks().items():
            assert not bool((mask & frozen[name]).any()), name
            assert int(mask.sum()) == learner.counts[name]
        learner.end_task()


def test_the_room_is_checked_before_training_with_the_sparsity_that_fits(tmp_path, capsys):
    net = TinyNet()
    with pytest.raises(ConfigError, match=r"--reuse off: layer .* [Ss]parsity 0\.\d{3} or more fits"):
        SparseLearner(net, SparseConfig(density=0.5, init="uniform", free_init="kaiming", reuse="off"), num_tasks=3)
    SparseLearner(net, SparseConfig(density=0.5, init="uniform", free_init="kaiming", reuse="off"), num_tasks=2)
    SparseLearner(net, SparseConfig(density=0.5, init="uniform"), num_tasks=3)  # with reuse: any budget
    code = main(["run", "--reuse", "off", "--check", "--out", str(tmp_path)])  # ERK on digits, 5 tasks
    err = capsys.readouterr().err.replace("\n", " ")
    assert code == 2 and "--reuse off: layer" in err and "with --init uniform" in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())  # refused before any run folder


def test_ninety_percent_fits_ten_tasks_despite_rounding():
    """Uniform 90 %: a layer of 9,408 weights rounds to 941 per task, 10 x 941 > 9,408; without reuse the
    count is rounded into the room (940), the weight given to another layer, and the run fits."""
    model = build_model("resnet18", num_classes=100, in_channels=3, image_size=32)
    shapes = {n: tuple(p.shape) for n, p in prunable_parameters(model)}
    heads = [output_weight(model, 100)]
    on = SparseConfig(density=0.1, init="uniform")
    off = SparseConfig(density=0.1, init="uniform", free_init="kaiming", reuse="off")
    assert task_budget(shapes, on, heads, 10).counts == layer_counts(shapes, 0.1, "uniform")  # reuse on: unchanged
    assert overfull(shapes, task_budget(shapes, on, heads, 10), 10)  # the rounding problem, as such
    budget = task_budget(shapes, off, heads, 10)
    assert not overfull(shapes, budget, 10) and budget.counts["conv1.weight"] == 940
    total = sum(math.prod(s) for s in shapes.values())
    assert round(0.1 * total) - len(shapes) <= sum(budget.counts.values()) <= round(0.1 * total)
    check_room_without_reuse(shapes, off, heads, 10)
    assert fitting_sparsity(shapes, SparseConfig(init="erk", free_init="kaiming", reuse="off"), heads, 10) > 0.99


def test_channels_without_reuse(tiny_net):
    cfg = SparseConfig(density=0.3, init="uniform", structure="channel", free_init="kaiming", reuse="off",
                       update_frequency=3)
    learner = SparseLearner(tiny_net, cfg, seed=0, num_tasks=3, heads={"classifier.weight": [slice(0, 2), slice(2, 4),
                                                                                            slice(4, 6)]})
    for task in range(3):
        learner.start_task(task, 9)
        frozen = {layer.state.name: layer.frozen.clone() for layer in learner._layers}
        train_steps(tiny_net, learner, learner.make_optimizer("adam", 1e-2), task, 9, seed=task)
        for name, mask in learner.current_masks().items():
            assert not bool((mask & frozen[name]).any()), name
        learner.end_task()


def test_mistakes_are_refused_with_a_reason():
    with pytest.raises(ConfigError, match="free_init 'kaiming'"):
        SparseConfig(reuse="off", free_init="zero").validate()
    with pytest.raises(ConfigError, match="counts 'exact'"):
        SparseConfig(reuse="off", free_init="kaiming", counts="bernoulli").validate()
    with pytest.raises(ConfigError, match="dense network"):
        resolve({"reuse": "off", "method": "finetune"})
    assert resolve({"reuse": "off"}).free_init == "kaiming"  # the default without reuse
    assert resolve({}).reuse == "on"
