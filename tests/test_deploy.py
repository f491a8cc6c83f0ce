"""Export -> load -> predict: the model file reproduces the run's evaluation bit for bit; tasks are inferred."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import torch

import dstcl
import dstcl.deploy
from conftest import dstcl as run_cli
from dstcl.config import resolve
from dstcl.errors import DstclError
from dstcl.run.experiment import Experiment
from dstcl.run.rundir import RunDir
from dstcl.train.agnostic import choose
from dstcl.train.evaluate import EvalSet, eval_batches, logits_fingerprint

SMALL = {"epochs": 4, "update_frequency": 6, "threads": 1, "progress": False, "device": "cpu"}


def trained(tmp_path, name: str, **settings) -> Experiment:
    experiment = Experiment(resolve({**SMALL, **settings}), echo=lambda line: None)
    experiment.execute(RunDir.fresh(tmp_path / name))
    return experiment


def run_logits(experiment: Experiment, task: int) -> torch.Tensor:
    """Task ``task``'s head logits as the run's own evaluation computes them (canonical batches of 128)."""
    data = experiment.matrix.tests[task]
    experiment.matrix._load(task)
    from dstcl.models import set_task

    set_task(experiment.model, task)
    network = experiment.matrix._network(task)
    network.eval()
    with torch.inference_mode():
        return torch.cat([network(experiment.matrix.prepare(data.x[a:b]))[:, experiment.heads[task]]
                          for a, b in eval_batches(len(data), 128)])


@pytest.mark.parametrize("settings", [{}, {"bn": "task"}, {"method": "finetune"}, {"structure": "channel"}],
                         ids=["sparse", "bn-task", "dense", "channels"])
def test_exported_model_gives_bit_identical_logits_for_every_task(tmp_path, settings):
    experiment = trained(tmp_path, "run", **settings)
    sizes = dstcl.deploy.export_run(tmp_path / "run", tmp_path / "model.dstcl")
    model = dstcl.load(tmp_path / "model.dstcl")  # no run directory needed from here on
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["final_logits_blake2b"]
    for task in range(experiment.cfg.data.tasks):
        ours = model.logits(experiment.matrix.tests[task].x, task)
        assert torch.equal(ours, run_logits(experiment, task)), f"task {task}"
        assert logits_fingerprint(ours) == recorded[task]  # what scripts/check_export.py checks on real data
    weights = sum(math.prod(p.shape) for p in model.params.values())
    if model.sparse:
        assert sizes.file_bytes <= 4 * sizes.owned_weights + math.ceil(weights / 8) * sizes.tasks + 64_000
        assert sizes.owned_weights < weights
    assert "bytes" in sizes.describe() and "dense state_dict" in sizes.describe()


def test_choose_finds_the_right_task_on_a_hand_made_case():
    # 6 inputs: the first three are confidently task 0's (class 1), the last three task 1's (class 0)
    sure, unsure = torch.tensor([-4.0, 4.0]), torch.tensor([0.1, -0.1])
    task0 = torch.stack([sure] * 3 + [unsure] * 3)
    task1 = torch.stack([unsure] * 3 + [sure.flip(0)] * 3)
    for criterion in ("confidence", "entropy"):
        chosen = choose([task0, task1], criterion)
        assert chosen.task.tolist() == [0, 0, 0, 1, 1, 1]
        assert chosen.local_class.tolist() == [1, 1, 1, 0, 0, 0]
        assert all(c > 0.99 for c in chosen.confidence.tolist())


def test_task_agnostic_metrics_of_a_run(tmp_path):
    experiment = trained(tmp_path, "run", agnostic=True, epochs=6)
    metrics = experiment._metrics("completed", None)
    a = metrics["agnostic"]
    assert a["images"] == sum(len(t) for t in experiment.matrix.tests)
    assert 20.0 < metrics["task_inference_accuracy"] <= 100.0  # 5 tasks: chance is 20 %
    assert metrics["class_incremental_accuracy"] <= metrics["task_inference_accuracy"]
    assert set(a["task_inference"]) == {"confidence", "entropy"}


def test_supsup_one_shot_picks_the_task_of_a_batch_on_a_hand_made_case():
    from dstcl.train.agnostic import supsup_scores

    model = torch.nn.Linear(2, 4, bias=False)  # two tasks of two classes, one head of two rows each
    values = {"weight": torch.tensor([[5.0, 0.0], [-5.0, 0.0], [0.0, 5.0], [0.0, -5.0]])}
    masks = [{"weight": torch.tensor([[True, True], [True, True], [False, False], [False, False]])},
             {"weight": torch.tensor([[False, False], [False, False], [True, True], [True, True]])}]
    task0 = torch.tensor([[3.0, 0.01], [-3.0, 0.02], [2.0, -0.01], [-2.5, 0.0]])  # task 0's feature varies
    assert int(supsup_scores(model, values, masks, task0).argmax()) == 0
    assert int(supsup_scores(model, values, masks, task0.flip(1)).argmax()) == 1


def test_supsup_scores_every_task_of_a_trained_model(tmp_path):
    experiment = trained(tmp_path, "run")
    model = dstcl.load(tmp_path / "run")  # straight from the run directory
    scores = model.supsup(experiment.tasks[0].test_x)
    assert scores.shape == (5,) and bool(torch.isfinite(scores).all())
    prediction = model.predict(experiment.tasks[0].test_x, criterion="supsup")
    assert len(set(prediction.tasks)) == 1  # one task for the whole batch


def test_predict_command_writes_a_csv_and_refuses_bad_inputs(tmp_path):
    trained(tmp_path, "run")
    assert dstcl_cli("export", str(tmp_path / "run"), "-o", str(tmp_path / "m.dstcl")).returncode == 0
    digits = np.load(_digits_npy(tmp_path))
    batch = tmp_path / "batch.npy"
    np.save(batch, digits[:32])
    done = dstcl_cli("predict", str(tmp_path / "m.dstcl"), str(batch))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "input,class,class_name,task,confidence" and len(lines) == 33
    given = dstcl_cli("predict", str(tmp_path / "m.dstcl"), str(batch), "--task", "2")
    assert all(line.split(",")[3] == "2" for line in given.stdout.strip().splitlines()[1:])
    (tmp_path / "bad.png").write_bytes(b"not an image")
    bad = dstcl_cli("predict", str(tmp_path / "m.dstcl"), str(tmp_path / "bad.png"))
    assert bad.returncode == 2 and "is not a readable image" in " ".join(bad.stderr.split())
    assert "Traceback" not in bad.stderr
    foreign = tmp_path / "foreign.dstcl"
    torch.save({"hello": 1}, foreign)
    refused = dstcl_cli("predict", str(foreign), str(batch))
    assert refused.returncode == 2 and "is not a dstcl model file" in " ".join(refused.stderr.split())
    with pytest.raises(DstclError, match="task 9 does not exist"):
        dstcl.load(tmp_path / "m.dstcl").logits(torch.from_numpy(digits[:4]), 9)


def dstcl_cli(*args: str) -> subprocess.CompletedProcess:
    return run_cli(*args)


def _digits_npy(tmp_path) -> str:
    from dstcl.data.digits import digits_arrays

    images, _ = digits_arrays()
    path = tmp_path / "digits.npy"
    np.save(path, np.rint(images * 255 / 16).clip(0, 255).astype(np.uint8)[:, None])
    return str(path)
