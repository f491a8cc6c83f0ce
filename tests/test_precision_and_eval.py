"""Mixed precision keeps isolation exact and resumes bit-identically; evaluation measures what is needed."""

from __future__ import annotations

import json

import pytest
import torch

from dstcl.config import resolve
from dstcl.errors import ConfigError
from dstcl.run.experiment import Experiment, resume_experiment, run_experiment
from dstcl.run.matrix import IsolationError
from dstcl.run.rundir import RunDir
from dstcl.train import precision as P

needs_bf16 = pytest.mark.skipif(not P.cpu_has_native_bf16(), reason="this CPU has no native bf16")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
SMALL = {"epochs": 2, "num_classes": 6, "tasks": 3, "threads": 1, "progress": False, "device": "cpu"}
# Both take the gathered bf16 path in their last convolutions (8 px digits: the small CNN's third layer has
# 128 channels at 2x2, ResNet-18's last stage at width 8 has 64 channels at 1x1): dstcl.models.conv
BACKBONES = {"small cnn": {}, "resnet18": {"backbone": "resnet18", "width": 8}}


def test_precision_choices_are_checked_for_the_device(monkeypatch):
    with pytest.raises(ConfigError, match="fp16 .* runs on CUDA only"):
        resolve({"precision": "fp16", "device": "cpu"})
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="bf16 needs a CPU with native bf16"):
        resolve({"precision": "bf16", "device": "cpu"})
    assert resolve({"precision": "auto", "device": "cpu"}).precision == "fp32"
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: True)
    assert resolve({"precision": "auto", "device": "cpu"}).precision == "bf16"
    assert resolve({}).precision == "fp32"  # the default stays fp32


def _run(tmp_path, name: str, **settings):
    cfg = resolve({**SMALL, **settings})
    return run_experiment(cfg, run_dir=tmp_path / name, echo=lambda line: None)


@needs_bf16
@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_keeps_isolation_exact(tmp_path, gathered_calls, backbone):
    result = _run(tmp_path, "bf16", precision="bf16", eval="full", **BACKBONES[backbone])
    assert gathered_calls["n"] > 0
    R = result.metrics["accuracy_matrix"]
    assert result.metrics["bwt"] == 0.0
    for j in range(3):  # every later evaluation of task j equals the first: its weights never moved
        assert all(R[i][j] == R[j][j] for i in range(j, 3))
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["precision"] == "bf16"
    weights = torch.load(tmp_path / "bf16" / "weights.pt")
    assert all(w.dtype == torch.float32 for w in weights.values())  # stored values stay fp32


@needs_bf16
@pytest.mark.parametrize("backbone", BACKBONES)
def test_bf16_resume_is_bit_identical(tmp_path, monkeypatch, backbone):
    straight = _run(tmp_path, "straight", precision="bf16", **BACKBONES[backbone])
    cfg = resolve({**SMALL, "precision": "bf16", **BACKBONES[backbone]})
    experiment = Experiment(cfg, echo=lambda line: None)
    stop = {"count": 0}
    original = experiment._learn_task

    def learn_and_stop(i, run, bar):
        original(i, run, bar)
        if i == 1:
            raise KeyboardInterrupt  # after two tasks, as Ctrl-C would
    monkeypatch.setattr(experiment, "_learn_task", learn_and_stop)
    with pytest.raises(KeyboardInterrupt):
        experiment.execute(RunDir.fresh(tmp_path / "resumed"))
    assert stop["count"] == 0
    resumed = resume_experiment(tmp_path / "resumed", echo=lambda line: None)
    assert resumed.metrics["accuracy_matrix"] == straight.metrics["accuracy_matrix"]
    a = torch.load(tmp_path / "straight" / "weights.pt")
    b = torch.load(tmp_path / "resumed" / "weights.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_needed_evaluation_equals_full_evaluation_where_both_have_numbers(tmp_path):
    needed = _run(tmp_path, "needed", tasks=3).metrics
    full = _run(tmp_path, "full", tasks=3, eval="full").metrics
    R, F = needed["accuracy_matrix"], full["accuracy_matrix"]
    for i in range(3):
        for j in range(3):
            if R[i][j] is not None:
                assert R[i][j] == F[i][j], (i, j)
    assert R[0][2] is None and F[0][2] is not None  # beyond the superdiagonal: only --eval full
    assert (needed["acc"], needed["bwt"], needed["fwt"]) == (full["acc"], full["bwt"], full["fwt"])
    assert needed["fwt_reference"] is None and full["fwt_reference"] is not None
    assert needed["evaluation"]["proven"] == 1 and needed["evaluation"]["measured"] < full["evaluation"]["measured"]


def test_a_changed_subnetwork_is_an_error_not_a_silent_recompute(tmp_path, monkeypatch):
    cfg = resolve(SMALL)
    experiment = Experiment(cfg, echo=lambda line: None)
    original = experiment._learn_task

    def tamper_after_task_1(i, run, bar):
        if i == 2:  # someone changes a weight task 0 owns, behind the learner's back
            layer = experiment.learner.state.layers[1]
            position = (layer.owner == 0) & layer.masks[0]
            layer.values[position.nonzero()[0].tolist()[0]] += 1.0
        original(i, run, bar)
    monkeypatch.setattr(experiment, "_learn_task", tamper_after_task_1)
    with pytest.raises(IsolationError, match="subnetwork of task 0 is not bit-identical"):
        experiment.execute(RunDir.fresh(tmp_path / "run"))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["status"] == "failed"


@needs_cuda
def test_cuda_run_with_autocast_and_checkpoints(tmp_path):
    precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    result = _run(tmp_path, "cuda", device="cuda", precision=precision, checkpoint_budget=1.0)
    assert result.metrics["status"] == "completed" and result.metrics["bwt"] == pytest.approx(0.0, abs=1e-9)


# --- methods: the baselines in the same harness ----------------------------------------------------------

def test_finetuning_has_no_isolation_and_measures_every_earlier_task(tmp_path):
    result = _run(tmp_path, "finetune", method="finetune", epochs=3).metrics
    R = result["accuracy_matrix"]
    assert result["evaluation"]["proven"] == 0  # nothing to prove without isolation
    assert all(R[i][j] is not None for i in range(3) for j in range(i + 1))
    assert not (tmp_path / "finetune" / "masks" / "task_00.npz").exists()
    assert "classifier.weight" in torch.load(tmp_path / "finetune" / "weights.pt")


def test_static_sparse_keeps_each_tasks_first_topology(tmp_path):
    result = _run(tmp_path, "static", method="static").metrics
    assert result["topology_updates_per_task"] == [0, 0, 0] and result["bwt"] == 0.0
    events = (tmp_path / "static" / "events.jsonl").read_text()
    assert '"event": "topology_update"' not in events


def test_joint_training_is_one_phase_over_all_tasks_with_task_heads(tmp_path):
    result = _run(tmp_path, "joint", method="joint").metrics
    R = result["accuracy_matrix"]
    assert all(v is None for row in R[:-1] for v in row) and all(v is not None for v in R[-1])
    assert result["acc"] == pytest.approx(sum(R[-1]) / 3) and result["bwt"] is None
    ends = [json.loads(line) for line in (tmp_path / "joint" / "events.jsonl").read_text().splitlines()
            if '"task_end"' in line]
    sequential = _run(tmp_path, "dst").metrics  # the same number of optimizer steps in total
    seq_ends = [json.loads(line) for line in (tmp_path / "dst" / "events.jsonl").read_text().splitlines()
                if '"task_end"' in line]
    assert len(ends) == 1 and abs(ends[0]["steps"] - sum(e["steps"] for e in seq_ends)) <= 3 * 2
    assert sequential["status"] == "completed"


def test_acc_evaluation_measures_only_the_diagonal_and_the_final_row(tmp_path):
    needed = _run(tmp_path, "needed", tasks=3).metrics
    acc = _run(tmp_path, "acc", tasks=3, eval="acc").metrics
    R, A = needed["accuracy_matrix"], acc["accuracy_matrix"]
    for i in range(3):
        for j in range(i + 1):
            assert A[i][j] == R[i][j], (i, j)  # the same numbers where both have them (one training)
        assert all(A[i][j] is None for j in range(i + 1, 3))  # no superdiagonal
    assert (acc["acc"], acc["bwt"]) == (needed["acc"], needed["bwt"])
    assert acc["baseline_accuracy"] is None and acc["fwt"] is None and acc["fwt_reference"] is None
    assert acc["evaluation"]["measured"] == 2 * 3 - 1 and acc["evaluation"]["proven"] == 1
    summary = (tmp_path / "acc" / "summary.md").read_text()
    assert "not measured (--eval needed measures it; docs/metrics.md)" in summary
