"""Sweeps that really run (tiny digits runs, 1 epoch, 2 tasks): failures, skipping, resuming, reports."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import textwrap
from pathlib import Path

import pytest

from dstcl.cli.main import main
from dstcl.sweep import format_summary, load_plan, run_sweep
from dstcl.sweep.jobs import CONFIG_NAME, LOG_NAME, Job, execute_job, prepare_job
from dstcl.sweep.local import slot_environment

# The include entry is a valid configuration that fails only when it runs: its data set (CIFAR-10)
# is read from data_dir, which holds CIFAR-10's files, all corrupt. digits ignores data_dir.
GRID = """
name: tiny
base: {{epochs: 1, tasks: 2, device: cpu, data_dir: {data_dir}, download: false}}
vary:
  sparsity: [0.8, 0.9]
include:
  - {{dataset: cifar10}}     # fails at run time: unreadable data files
"""
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta")


def corrupt_cifar10(root: Path) -> Path:
    """A data folder with CIFAR-10's layout whose files are not pickles (a damaged download)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_FILES:
        (folder / name).write_bytes(b"not a pickle\n")
    return root


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    grid = root / "grid.yaml"
    data_dir = corrupt_cifar10(root / "data")
    grid.write_text(textwrap.dedent(GRID.format(data_dir=json.dumps(str(data_dir)))))
    out = root / "out"
    tensorboard = root / "tb" if _has("tensorboard") else None
    lines: list[str] = []
    result = run_sweep(grid, out, jobs=2, tensorboard=tensorboard, echo=lines.append)
    return grid, out, result, tensorboard, lines


def test_a_failing_run_is_recorded_and_the_others_complete(sweep):
    grid, out, result, _, lines = sweep
    by_status = {o.label: o.status for o in result.outcomes}
    assert by_status == {"sparsity=0.8": "completed", "sparsity=0.9": "completed", "dataset=cifar10": "failed"}
    failed = result.failed[0]
    assert "is not a readable CIFAR pickle" in failed.message and failed.returncode == 2
    assert "is not a readable CIFAR pickle" in " ".join((out / failed.id / LOG_NAME).read_text().split())
    assert not (out / failed.id / "metrics.json").exists()  # it failed reading its data, before training
    for outcome in result.outcomes:
        if outcome.status == "completed":
            metrics = json.loads((out / outcome.id / "metrics.json").read_text())
            assert metrics["status"] == "completed" and outcome.acc == metrics["acc"]
    summary = format_summary(result)
    assert "2 completed now, 0 already completed, 1 failed" in summary
    manifest = json.loads((out / "sweep.json").read_text())
    assert sorted(r["status"] for r in manifest["runs"]) == ["completed", "completed", "failed"]
    assert any(line.startswith("[3/3]") for line in lines)


def test_run_directory_is_the_config_hash_and_repeatable_by_hand(sweep):
    grid, out, result, _, _ = sweep
    _, specs = load_plan(grid)
    for spec in specs:
        assert (out / spec.id / CONFIG_NAME).is_file()
    done = [s for s in specs if s.config.dataset == "digits"]
    assert len(done) == 2
    for spec in done:
        saved = json.loads((out / spec.id / "config.json").read_text())
        assert saved["sparsity"] == spec.config.sparsity and saved["epochs"] == 1


def test_rerun_skips_completed_runs_and_retries_failed_ones(sweep, capsys):
    grid, out, result, _, _ = sweep
    completed = [o.id for o in result.outcomes if o.status == "completed"]
    stamps = {i: (out / i / "metrics.json").stat().st_mtime_ns for i in completed}
    assert main(["sweep", str(grid), "--out", str(out)]) == 1  # the bad run fails again
    printed = capsys.readouterr().out
    assert "3 runs, 2 already completed, 1 to run" in printed
    assert "0 completed now, 2 already completed, 1 failed" in printed
    assert {i: (out / i / "metrics.json").stat().st_mtime_ns for i in completed} == stamps
    log = (out / result.failed[0].id / LOG_NAME).read_text()
    assert log.count("=== ") >= 2  # both attempts are in the log


def test_dry_run_lists_runs_and_runs_nothing(sweep, capsys, tmp_path):
    grid, out, _, _, _ = sweep
    assert main(["sweep", str(grid), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("skip (completed)") == 2
    assert re.search(r"^[0-9a-f]{12}\s+run\s+dataset=cifar10$", printed, re.M)
    assert main(["sweep", str(grid), "--out", str(tmp_path / "fresh"), "--dry-run"]) == 0
    assert not (tmp_path / "fresh").exists()


def test_tensorboard_events_per_run(sweep):
    _, _, result, tensorboard, _ = sweep
    if tensorboard is None:
        pytest.skip("tensorboard is not installed")
    for outcome in result.outcomes:
        if outcome.status == "completed":
            files = list((tensorboard / outcome.id).glob("events.out.tfevents.*"))
            assert files and all(f.stat().st_size > 0 for f in files)


def test_report_of_a_sweep_equals_its_metrics(sweep, capsys, tmp_path):
    _, out, result, _, _ = sweep
    assert main(["report", str(out), "--format", "csv", "--per-run"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 2
    for row in rows:
        metrics = json.loads((Path(row["run_dir"]) / "metrics.json").read_text())
        for key in ("acc", "bwt", "fwt", "fwt_reference"):
            assert float(row[key]) == metrics[key]
    assert main(["report", str(out)]) == 0
    markdown = capsys.readouterr().out
    assert "1 unfinished run(s) not included" not in markdown  # the failed run never wrote metrics
    if _has("matplotlib"):
        assert main(["report", str(out), "--plots", str(tmp_path / "plots")]) == 0
        pngs = list((tmp_path / "plots").rglob("*.png"))
        assert len(pngs) >= 2 * 2 + 3 and all(p.stat().st_size > 1000 for p in pngs)


def test_an_interrupted_run_is_resumed_by_the_next_sweep(tmp_path, monkeypatch):
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {epochs: 1, tasks: 2, device: cpu}\n")
    out = tmp_path / "out"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # tiny runs: faster on one thread on a busy 2-core machine
    monkeypatch.setenv("DSTCL_KILL_AT", "task_end:2")  # SIGKILL before the second task ends
    first = run_sweep(grid, out, echo=lambda line: None)
    (outcome,) = first.outcomes
    assert outcome.status == "failed"
    assert json.loads((out / outcome.id / "metrics.json").read_text())["status"] == "running"
    monkeypatch.delenv("DSTCL_KILL_AT")
    lines: list[str] = []
    second = run_sweep(grid, out, echo=lines.append)
    assert second.outcomes[0].status == "completed"
    events = [json.loads(line) for line in (out / outcome.id / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "resumed" for e in events)
    assert "resuming the unfinished run in" in (out / outcome.id / LOG_NAME).read_text()


def test_a_run_folder_that_lost_its_config_is_never_wiped(tmp_path):
    """Results without the config.json that says whose they are: the run refuses the folder (nothing is
    deleted) and the sweep reports it, rather than wiping what may be someone's results (issue 26, row 5)."""
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {epochs: 1, tasks: 2}\n")
    _, (spec,) = load_plan(grid)
    run_dir = tmp_path / "out" / spec.id
    (run_dir / "masks").mkdir(parents=True)
    (run_dir / "masks" / "task_00.npz").write_bytes(b"stale")
    (run_dir / "metrics.json").write_text('{"status": "failed"}')
    (run_dir / LOG_NAME).write_text("=== old attempt\n")
    job = prepare_job(spec, tmp_path / "out")
    assert "--config" in job.args and "--resume" not in job.args
    assert json.loads((run_dir / CONFIG_NAME).read_text())["progress"] is False
    outcome = execute_job(job)
    assert outcome.status == "failed"
    assert "not a dstcl run folder" in " ".join((run_dir / LOG_NAME).read_text().split())
    assert (run_dir / "masks" / "task_00.npz").read_bytes() == b"stale"  # nothing was deleted
    assert (run_dir / LOG_NAME).read_text().startswith("=== old attempt\n")


def test_sweep_config_is_written_atomically(tmp_path, monkeypatch):
    import dstcl.files

    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {epochs: 1, tasks: 2}\n")
    _, (spec,) = load_plan(grid)
    replaced = []
    original = os.replace

    def spy(src, dst, *args, **kwargs):
        replaced.append(Path(dst))
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(dstcl.files.os, "replace", spy)  # every dstcl.files atomic write ends in os.replace
    prepare_job(spec, tmp_path / "out")
    config_path = (tmp_path / "out" / spec.id / CONFIG_NAME).resolve()
    assert replaced == [config_path]
    assert json.loads(config_path.read_text())["epochs"] == 1


def test_slot_environment_pins_one_gpu_per_slot_and_leaves_threads_to_the_config():
    job = Job("id", "label", "/tmp/x", ("run",), uses_cuda=True)
    gpus = ["0", "1"]
    assert [slot_environment(s, 4, job, gpus)["CUDA_VISIBLE_DEVICES"] for s in range(4)] == ["0", "1", "0", "1"]
    cpu_job = Job("id", "label", "/tmp/x", ("run",), uses_cuda=False)
    # CPU threads are part of each run's config, never derived from --jobs
    assert slot_environment(0, 2, cpu_job, gpus) == {} and slot_environment(0, 1, cpu_job, []) == {}
