"""``--method separate``: a fresh dense network per task, from the same initial weights, kept per task."""

from __future__ import annotations

import json
import signal

import pytest
import torch

import datagen
from conftest import TinyNet, dstcl
from dstcl.config import resolve
from dstcl.errors import DstclError
from dstcl.train.methods import METHODS
from dstcl.train.separate import SeparateLearner

ARGS = ["--dataset", "cifar10", "--num-classes", "6", "--tasks", "3", "--backbone", "cnn", "--width", "8",
        "--epochs", "2", "--batch-size", "16", "--method", "separate", "--no-download", "--no-progress", "--seed", "2"]


def test_every_task_starts_from_the_initial_weights_and_keeps_its_own():
    torch.manual_seed(0)
    net = TinyNet()
    initial = {n: p.detach().clone() for n, p in net.named_parameters()}
    learner = SeparateLearner(net, num_tasks=2)
    trained = []
    for task in range(2):
        learner.start_task(task, 3)
        assert all(torch.equal(p, initial[n]) for n, p in net.named_parameters())
        optimizer = learner.make_optimizer("adam", 1e-2)
        for _ in range(3):
            x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 2, (8,))
            loss = torch.nn.functional.cross_entropy(net(x)[:, 2 * task:2 * task + 2], y)
            optimizer.zero_grad()
            loss.backward()
            learner.step(optimizer)
        learner.end_task()
        trained.append({n: p.detach().clone() for n, p in net.named_parameters()})
    learner.apply_task(0)
    assert all(torch.equal(p, trained[0][n]) for n, p in net.named_parameters())
    assert not torch.equal(trained[0]["classifier.weight"], trained[1]["classifier.weight"])
    copy = SeparateLearner(TinyNet(), num_tasks=2)
    copy.load_state_dict(learner.state_dict())
    copy.apply_task(1)
    assert all(torch.equal(p, trained[1][n]) for n, p in copy.model.named_parameters())
    assert set(learner.weights()) == {f"task_{t:02d}/{n}" for t in range(2) for n in initial}
    with pytest.raises(DstclError, match="not been learned"):
        learner.apply_task(2)


def test_the_method_is_registered_as_a_dense_sequential_baseline():
    method = METHODS.get("separate")
    assert not method.sparse and method.sequential and not method.dynamic and method.learner is not None
    assert resolve({"method": "separate"}).method == "separate"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    datagen.write_cifar(root, kind="cifar10", train_per_class=40, test_per_class=10, num_classes=6, separable=True)
    return root


def test_a_run_measures_every_task_alone_and_resumes_bit_for_bit(data_dir, tmp_path):
    reference = tmp_path / "ref"
    done = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(reference))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((reference / "metrics.json").read_text())
    R = metrics["accuracy_matrix"]
    assert metrics["bwt"] == 0.0 and all(R[2][j] == R[j][j] for j in range(3))
    assert metrics["evaluation"]["proven"] == 0  # nothing is proven by digest: every entry measured again
    assert metrics["acc"] > 60.0
    run = tmp_path / "run"
    killed = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run),
                   env_extra={"DSTCL_KILL_AT": "task_end:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["accuracy_matrix"] == R
    got, want = (torch.load(d / "weights.pt", weights_only=True) for d in (run, reference))
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    refused = dstcl("export", str(reference), "-o", str(tmp_path / "m.dstcl"))  # one network per task: no model file
    assert refused.returncode == 2 and "cannot hold" in " ".join(refused.stderr.split()), refused.stderr
    assert not (tmp_path / "m.dstcl").exists()
