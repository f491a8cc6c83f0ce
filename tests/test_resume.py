"""Kill a run at many points (SIGKILL), resume it, and get the uninterrupted run's result bit for bit."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import datagen
from dstcl.run.rundir import RunDir, load_mask

ARGS = ["--dataset", "cifar10", "--num-classes", "6", "--tasks", "3", "--backbone", "cnn", "--width", "8",
        "--epochs", "3", "--batch-size", "16", "--update-frequency", "4", "--growth", "momentum",
        "--free-init", "kaiming", "--no-download", "--no-progress", "--seed", "7"]

from conftest import dstcl  # noqa: E402 - the one way tests run the command line


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


def assert_same_result(run: Path, reference: Path) -> None:
    got, want = (json.loads((d / "metrics.json").read_text()) for d in (run, reference))
    assert got["status"] == "completed"
    assert got["accuracy_matrix"] == want["accuracy_matrix"]
    assert got["baseline_accuracy"] == want["baseline_accuracy"]
    for t in range(3):
        a, b = (load_mask(d / "masks" / f"task_{t:02d}.npz") for d in (run, reference))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = (torch.load(d / "state.pt", weights_only=False) for d in (run, reference))
    for la, lb in zip(sa["layers"], sb["layers"]):
        assert (la["values"].view("int32") == lb["values"].view("int32")).all(), la["name"]
        assert (la["owner"] == lb["owner"]).all()


@pytest.mark.parametrize(
    "kill_at",
    ["training_step:5", "training_step:40", "topology_update:3", "evaluation:2", "checkpoint_write:3",
     "task_end:2"],
)
def test_kill_and_resume_is_bit_identical(kill_at, data_dir, reference, tmp_path):
    run = tmp_path / "run"
    killed = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": kill_at})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] != "completed" if (run / "metrics.json").exists() else True
    had_checkpoint = any((run / "checkpoints").glob("ckpt-*.pt"))
    assert had_checkpoint or kill_at == "training_step:5"  # only a kill in the first epoch precedes every checkpoint
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    if had_checkpoint:  # it really continued from the checkpoint, not from the start
        assert "resuming" in resumed.stdout
        assert any(json.loads(line)["event"] == "resumed" for line in (run / "events.jsonl").read_text().splitlines())
    else:
        assert "starting it from the beginning" in resumed.stdout
    assert_same_result(run, reference)
    events = [json.loads(line)["event"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert events.count("task_end") == 3  # a task reported done is never redone


def run_seconds(run: Path) -> float:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    return events[-1]["time"] - events[0]["time"]


def test_kill_at_random_moments(data_dir, reference, tmp_path):
    """SIGKILL at a random time within the run (after it wrote its config), then resume."""
    rng = random.Random(0)
    duration = run_seconds(reference)
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        proc = subprocess.Popen([sys.executable, "-m", "dstcl.cli.main", "run", *ARGS, "--data-dir", str(data_dir),
                                 "--run-dir", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not (run / "config.json").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, duration))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        metrics = run / "metrics.json"
        if metrics.exists() and json.loads(metrics.read_text()).get("status") == "completed":
            continue  # finished before the kill landed: nothing to resume
        resumed = dstcl("run", "--resume", str(run))
        assert resumed.returncode == 0, resumed.stderr
        assert_same_result(run, reference)


def test_corrupt_newest_checkpoint_falls_back(data_dir, reference, tmp_path):
    run = tmp_path / "run"
    killed = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": "task_end:2"})
    assert killed.returncode == -signal.SIGKILL
    checkpoints = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert len(checkpoints) == 2
    newest = checkpoints[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert f"checkpoint {newest.name} is unreadable" in resumed.stdout
    assert_same_result(run, reference)


def test_second_resume_of_a_running_run_is_refused(data_dir, tmp_path):
    run = tmp_path / "run"
    killed = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": "task_end:1"})
    assert killed.returncode == -signal.SIGKILL
    holder = RunDir.reopen(run)
    holder.lock()  # as if another process were running it
    try:
        refused = dstcl("run", "--resume", str(run))
    finally:
        holder.close()
    assert refused.returncode == 2
    err = refused.stderr.replace("\n", " ")
    assert "still running" in err and "Traceback" not in err


def test_resume_of_a_completed_run_does_nothing_and_config_flags_are_refused(reference):
    """--resume on a finished run behaves as the same command with --run-dir: nothing to do, exit 0."""
    before = (reference / "metrics.json").read_bytes()
    done = dstcl("run", "--resume", str(reference))
    assert done.returncode == 0 and "already holds this run, completed; nothing to resume" in done.stdout, done.stderr
    assert (reference / "metrics.json").read_bytes() == before
    flags = dstcl("run", "--resume", str(reference), "--epochs", "5")
    assert flags.returncode == 2 and "drop --epochs" in flags.stderr.replace("\n", " ")


def test_nan_loss_stops_with_task_epoch_step(data_dir, tmp_path):
    run = tmp_path / "run"
    done = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), "--optimizer", "sgd",
                 "--lr", "1e38")
    assert done.returncode == 1
    err = done.stderr.replace("\n", " ")
    assert "task 0, epoch 0, step" in err and "Traceback" not in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "NaN" in metrics["error"]


def test_nan_in_a_later_task_keeps_the_completed_ones(data_dir, reference, tmp_path):
    run = tmp_path / "run"
    # 5 steps per epoch, 3 epochs per task: the 21st loss is task 1, epoch 1, step 0
    done = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), env_extra={"DSTCL_NAN_AT": "loss:21"})
    assert done.returncode == 1
    err = done.stderr.replace("\n", " ")
    assert "task 1, epoch 1, step 0" in err and "Traceback" not in err
    metrics = json.loads((run / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["tasks_completed"] == 1
    assert metrics["accuracy_matrix"][0] == want["accuracy_matrix"][0]  # task 0's results, as uninterrupted
    assert metrics["accuracy_matrix"][1] == [None] * 3
    assert (run / "masks" / "task_00.npz").is_file() and not (run / "masks" / "task_01.npz").exists()


def test_reused_run_dir_never_resumes_another_configuration(data_dir, reference, tmp_path):
    """A folder reused with other settings is refused (nothing lost); --fresh discards it explicitly."""
    run = tmp_path / "run"
    first = dstcl("run", *ARGS, "--sparsity", "0.5", "--data-dir", str(data_dir), "--run-dir", str(run),
                  env_extra={"DSTCL_KILL_AT": "task_end:2"})
    assert first.returncode == -signal.SIGKILL and list((run / "checkpoints").glob("ckpt-*.pt"))
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    refused = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    message = " ".join(refused.stderr.split())
    assert "holds an unfinished run with other settings (sparsity 0.5 there, 0.8 here)" in message
    assert f"dstcl run --resume {run}" in message and "--fresh" in message
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # nothing was touched
    assert (run / "masks" / "task_00.npz").exists()
    second = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), "--fresh",
                   env_extra={"DSTCL_KILL_AT": "training_step:2"})  # before its own first checkpoint
    assert second.returncode == -signal.SIGKILL
    assert not list((run / "checkpoints").glob("ckpt-*.pt")) and not (run / "masks" / "task_00.npz").exists()
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert "starting it from the beginning" in resumed.stdout
    assert_same_result(run, reference)


def test_the_same_command_again_resumes_and_never_discards_finished_tasks(data_dir, reference, tmp_path):
    run = tmp_path / "run"
    command = ("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run))
    killed = dstcl(*command, env_extra={"DSTCL_KILL_AT": "task_end:3"})  # after 2 of 3 tasks
    assert killed.returncode == -signal.SIGKILL and (run / "masks" / "task_01.npz").exists()
    mask_before = (run / "masks" / "task_00.npz").read_bytes()
    again = dstcl(*command)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].startswith(f"resuming the unfinished run in {run} (same settings")
    assert (run / "masks" / "task_00.npz").read_bytes() == mask_before
    assert_same_result(run, reference)
    done = dstcl(*command)  # once more: completed, nothing to do
    assert done.returncode == 0 and "already holds this run, completed" in done.stdout


def test_checkpoint_of_other_settings_is_refused(data_dir, tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    for path, sparsity in ((run, "0.8"), (other, "0.5")):
        killed = dstcl("run", *ARGS, "--sparsity", sparsity, "--data-dir", str(data_dir), "--run-dir", str(path),
                       env_extra={"DSTCL_KILL_AT": "task_end:2"})
        assert killed.returncode == -signal.SIGKILL
    for ckpt in (run / "checkpoints").glob("ckpt-*.pt"):
        ckpt.unlink()
    for ckpt in (other / "checkpoints").glob("ckpt-*.pt"):  # copied by hand into the wrong run
        (run / "checkpoints" / ckpt.name).write_bytes(ckpt.read_bytes())
    refused = dstcl("run", "--resume", str(run))
    err = refused.stderr.replace("\n", " ")
    assert refused.returncode == 2 and "other settings" in err and "Traceback" not in err


def test_half_written_event_line_is_cut_on_resume(data_dir, reference, tmp_path):
    run = tmp_path / "run"
    killed = dstcl("run", *ARGS, "--data-dir", str(data_dir), "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": "task_end:2"})
    assert killed.returncode == -signal.SIGKILL
    with open(run / "events.jsonl", "a") as handle:
        handle.write('{"event": "epo')  # the kill landed mid-write
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]  # every line parses
    assert events[-1]["event"] == "run_end"
    assert_same_result(run, reference)


def test_two_processes_same_out_dir_get_separate_run_dirs(tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "dstcl.cli.main", "run", "--tasks", "2", "--epochs", "1", "--no-progress",
           "--out", str(out)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    runs = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(runs) == 2
    for run in runs:
        assert json.loads((run / "metrics.json").read_text())["status"] == "completed"


def test_auto_growth_resumes_bit_identically_mid_task(data_dir, tmp_path):
    """--growth auto: the bandit's state is in every checkpoint, so a killed run chooses as an uninterrupted one."""
    args = [a if a != "momentum" else "auto" for a in ARGS] + ["--data-dir", str(data_dir), "--checkpoint-budget", "1"]
    straight = dstcl("run", *args, "--run-dir", str(tmp_path / "straight"))
    assert straight.returncode == 0, straight.stderr
    run = tmp_path / "run"
    killed = dstcl("run", *args, "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": "topology_update:7"})
    assert killed.returncode == -signal.SIGKILL
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_result(run, tmp_path / "straight")

    def choices(folder: Path) -> list:
        lines = (folder / "events.jsonl").read_text().splitlines()
        return [(e["task"], e["step"], e["growth"]) for e in map(json.loads, lines) if e["event"] == "topology_update"]
    assert {c[2] for c in choices(tmp_path / "straight")} >= {"gradient", "momentum", "random", "unfired"}
    assert sorted(set(choices(run))) == sorted(set(choices(tmp_path / "straight")))
