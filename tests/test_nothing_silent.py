"""Nothing silent: DST that would do nothing, thread counts, interrupted and failed runs, small mistakes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

import datagen
from dstcl.cli.main import main
from dstcl.config import resolve
from dstcl.errors import ConfigError, DataError
from dstcl.run.rundir import read_events

QUICK = ["--epochs", "2", "--no-progress", "--threads", "1", "--num-classes", "4", "--tasks", "2"]


from conftest import dstcl  # noqa: E402


def one_paragraph(text: str) -> str:
    return " ".join(text.split())


# --- DST that does nothing --------------------------------------------------------------------------

def test_no_topology_update_in_a_task_is_an_error_naming_the_fix(tmp_path):
    done = dstcl("run", "--epochs", "1", "--update-frequency", "400", "--out", str(tmp_path), "--no-progress")
    message = one_paragraph(done.stderr)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "update_frequency 400 gives task" in message and "no topology update at all" in message
    assert "--method static (or --update-frequency 0) for static sparse training" in message and "at most" in message
    assert not any(tmp_path.iterdir())  # refused before any run folder was made
    checked = dstcl("run", "--epochs", "1", "--update-frequency", "400", "--check")
    assert checked.returncode == 2 and "no topology update" in checked.stderr


def test_few_updates_warn_and_static_training_is_explicit(tmp_path):
    few = dstcl("run", *QUICK, "--update-frequency", "9", "--out", str(tmp_path / "few"))
    assert few.returncode == 0, few.stderr
    assert "warning: only 2 topology update(s) in task" in few.stdout
    static = dstcl("run", *QUICK, "--update-frequency", "0", "--run-dir", str(tmp_path / "static"))
    assert static.returncode == 0, static.stderr
    metrics = json.loads((tmp_path / "static" / "metrics.json").read_text())
    assert metrics["topology_updates_per_task"] == [0] * 2
    assert "Topology updates per task: 0, 0 (static sparse training)." in \
        (tmp_path / "static" / "summary.md").read_text()
    events = [json.loads(line) for line in (tmp_path / "static" / "events.jsonl").read_text().splitlines()]
    assert not any(e["event"] == "topology_update" for e in events)
    report = dstcl("report", str(tmp_path))
    assert report.returncode == 0 and "updates/task" in report.stdout
    assert "| 0 |" in report.stdout.replace(" 0 |", " 0 |")


# --- threads -----------------------------------------------------------------------------------------

def test_the_same_run_at_the_same_thread_count_is_identical_alone_and_in_a_sweep(tmp_path):
    import torch

    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {epochs: 2, tasks: 2, num_classes: 4, threads: 1}\nvary:\n  sparsity: [0.8, 0.9]\n")
    swept = dstcl("sweep", str(grid), "--out", str(tmp_path / "sweep"), "--jobs", "2")
    assert swept.returncode == 0, swept.stdout + swept.stderr
    alone = dstcl("run", *QUICK, "--sparsity", "0.9", "--run-dir", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    config = json.loads((tmp_path / "alone" / "config.json").read_text())
    assert config["threads"] == 1
    assert json.loads((tmp_path / "alone" / "environment.json").read_text())["cpu_threads"] == 1
    from dstcl.run.hashing import config_hash

    twin = tmp_path / "sweep" / config_hash(config)
    ours = json.loads((tmp_path / "alone" / "metrics.json").read_text())
    theirs = json.loads((twin / "metrics.json").read_text())
    assert ours["accuracy_matrix"] == theirs["accuracy_matrix"]
    a, b = torch.load(tmp_path / "alone" / "weights.pt"), torch.load(twin / "weights.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((twin / "environment.json").read_text())["cpu_threads"] == 1


def test_resume_uses_the_recorded_thread_count(tmp_path):
    run = tmp_path / "run"
    killed = dstcl("run", *QUICK, "--run-dir", str(run), env_extra={"DSTCL_KILL_AT": "task_end:2"})
    assert killed.returncode == -signal.SIGKILL
    resumed = dstcl("run", "--resume", str(run), env_extra={"OMP_NUM_THREADS": "2"})
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "environment.json").read_text())["cpu_threads"] == 1
    refused = dstcl("run", "--resume", str(run), "--threads", "2", "--run-dir", str(run))
    assert refused.returncode == 2 and "drop --threads, --run-dir" in one_paragraph(refused.stderr)


def test_idle_openmp_threads_sleep_under_the_command_line(tmp_path):
    done = dstcl("run", *QUICK, "--run-dir", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    env = json.loads((tmp_path / "r" / "environment.json").read_text())
    assert env["omp_wait_policy"] == "PASSIVE" and env["cpus_available"] >= 1


# --- interrupted and failed runs ---------------------------------------------------------------------

def test_sigterm_leaves_an_interrupted_run_with_a_resume_hint(tmp_path):
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "dstcl.cli.main", "run", "--epochs", "40", "--no-progress",
                                "--threads", "1", "--num-classes", "4", "--tasks", "2", "--run-dir", str(run)],
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

    def task_done() -> bool:  # task_end is logged after the checkpoint; the mask file comes before evaluation
        return any(event.get("event") == "task_end" for event in read_events(run))

    deadline = time.time() + 120
    while time.time() < deadline and not task_done():
        time.sleep(0.2)
    assert task_done(), "task 0 did not finish within 120 s"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in err
    assert f"resume with: dstcl run --resume {run}" in one_paragraph(err)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "interrupted" and metrics["error"] == "terminated by SIGTERM"
    assert metrics["resume"] == f"dstcl run --resume {run}" and metrics["tasks_completed"] >= 1


def test_a_full_disk_fails_the_run_cleanly_and_resume_finishes_it(tmp_path):
    run = tmp_path / "run"
    failed = dstcl("run", *QUICK, "--run-dir", str(run), "--checkpoint-budget", "1",
                   env_extra={"DSTCL_FAIL_AT": "checkpoint_write:3"})
    assert failed.returncode in (1, 2) and "Traceback" not in failed.stderr
    assert "No space left on device" in one_paragraph(failed.stderr)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "No space left" in metrics["error"]
    assert metrics["resume"] == f"dstcl run --resume {run}"
    assert not list(run.rglob("*.tmp"))  # the half-written checkpoint was removed
    (run / ".metrics.json.stale.tmp").write_text("left by a kill")
    resumed = dstcl("run", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert not list(run.rglob("*.tmp"))


# --- small mistakes ------------------------------------------------------------------------------------

def test_config_files_that_are_not_utf8_or_repeat_a_key_are_clear_errors(tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("growth: random # caf\xe9\n".encode("latin-1"))
    done = dstcl("run", "--config", str(latin))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "not UTF-8" in done.stderr
    twice = tmp_path / "twice.yaml"
    twice.write_text("epochs: 3\nsparsity: 0.9\nepochs: 4\n")
    with pytest.raises(ConfigError, match="line 3: 'epochs' is given twice in the same block \\(first at line 1\\)"):
        resolve({}, config_file=twice)
    both = tmp_path / "both.yaml"
    both.write_text("sparsity: 0.9\ndensity: 0.2\n")
    with pytest.raises(ConfigError, match="gives both sparsity and density"):
        resolve({}, config_file=both)


def test_absurd_values_and_empty_class_folders_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="epochs must be an integer from 1 to 100000"):
        resolve({"epochs": 10**9})
    folder = datagen.write_miniimagenet(tmp_path / "data", 3, 4, size=16)
    empty = sorted(p for p in folder.iterdir() if p.is_dir())[1]
    for image in empty.iterdir():
        image.unlink()
    from dstcl.data import load_dataset

    with pytest.raises(DataError, match=f"class folder {empty} is empty"):
        load_dataset("miniimagenet", folder, cache_dir=tmp_path / "cache", train_per_class=2, test_per_class=1,
                     image_size=16)


def test_flags_get_suggestions_and_there_is_a_version(capsys):
    assert main(["run", "--sparsty", "0.9"]) == 2
    assert "did you mean --sparsity?" in capsys.readouterr().err
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("dstcl ")


def test_resume_errors_name_the_real_flags(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path), "--run-dir", str(tmp_path), "--epochs", "3"]) == 2
    err = one_paragraph(capsys.readouterr().err)
    assert "drop --epochs, --run-dir" in err and "--run_dir" not in err


def test_progress_is_one_line_per_task_when_stderr_is_not_a_terminal(tmp_path):
    done = dstcl("run", *[a for a in QUICK if a != "--no-progress"], "--out", str(tmp_path))  # progress left on
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.splitlines()) <= 2, done.stderr[:500]
    assert sum(line.startswith("task ") for line in done.stdout.splitlines()) >= 2


def test_a_default_run_informs_once_and_names_both_forward_transfers(tmp_path):
    done = dstcl("run", "--no-progress", "--out", str(tmp_path))  # the README's first command
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stdout + done.stderr
    assert done.stdout.count("note: ") == 1 and "capacity.json" in done.stdout
    last = done.stdout.strip().splitlines()[-2]
    assert "FWT(GEM)" in last and "points" in last and "future-task acc" in last


def test_report_plots_without_matplotlib_fail_before_printing(tmp_path, capsys, monkeypatch):
    run = tmp_path / "runs" / "r"
    assert main(["run", *QUICK, "--run-dir", str(run)]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    assert main(["report", str(tmp_path / "runs"), "--plots", str(tmp_path / "figs")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "needs matplotlib" in captured.err


def test_report_names_an_unreadable_run(tmp_path, capsys):
    good, bad = tmp_path / "runs" / "good", tmp_path / "runs" / "bad"
    for run in (good, bad):
        assert main(["run", *QUICK, "--run-dir", str(run)]) == 0
    (bad / "metrics.json").write_text("{ not json")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "runs")]) == 0
    assert f"{bad} is left out: its metrics.json is not a readable JSON object" in one_paragraph(capsys.readouterr().err)
    (good / "metrics.json").write_text("[]")
    assert main(["report", str(tmp_path / "runs")]) == 2
    err = one_paragraph(capsys.readouterr().err)
    assert str(bad) in err and str(good) in err


def test_a_sweep_never_discards_another_configurations_work(tmp_path):
    from dstcl.sweep import load_plan, run_sweep

    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {epochs: 2, tasks: 2, num_classes: 4, threads: 1}\n")
    _, (spec,) = load_plan(grid)
    folder = tmp_path / "out" / spec.id
    other = dstcl("run", *QUICK, "--sparsity", "0.5", "--run-dir", str(folder),
                  env_extra={"DSTCL_KILL_AT": "task_end:2"})
    assert other.returncode == -signal.SIGKILL
    lines: list[str] = []
    result = run_sweep(grid, tmp_path / "out", echo=lines.append)
    assert result.outcomes[0].status == "failed"
    assert "holds an unfinished run with other settings" in one_paragraph(result.outcomes[0].message)
    assert (folder / "masks" / "task_00.npz").exists()  # kept
    fresh = run_sweep(grid, tmp_path / "out", echo=lines.append, fresh=True)
    assert fresh.outcomes[0].status == "completed"
