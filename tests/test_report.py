"""Reports over hand-made run directories: the numbers must equal the runs' metrics.json (no training)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dstcl import metrics as M
from dstcl.cli.main import main
from dstcl.config import resolve
from dstcl.report import ReportError, build_report, collect, render
from dstcl.report.render import to_latex, to_markdown
from dstcl.run.rundir import RunDir

LAYERS = {"conv.weight": (8, 1, 3, 3), "fc.weight": (10, 8)}


def make_run(root: Path, name: str, *, seed: int = 0, status: str = "completed", rng=None, **settings) -> Path:
    """A run directory as dstcl run writes it: config.json, metrics.json, capacity.json, masks/task_00.npz."""
    rng = rng or np.random.default_rng(hash((name, seed)) % 2**32)
    cfg = resolve({"epochs": 1, "seed": seed, **settings})
    T = cfg.tasks
    R = [[float(rng.uniform(20, 99)) for _ in range(T)] for _ in range(T)]
    for i in range(T):  # isolation: a learned task keeps its accuracy
        for j in range(i):
            R[i][j] = R[j][j]
    baseline = [float(rng.uniform(5, 30)) for _ in range(T)]
    done = T if status == "completed" else 1
    matrix = [row if i < done else [None] * T for i, row in enumerate(R)]
    out = {"status": status, "tasks_completed": done, "accuracy_matrix": matrix, "baseline_accuracy": baseline,
           **M.summarize([row[:done] for row in R[:done]], baseline[:done])}
    path = root / name
    run = RunDir.fresh(path)
    run.write_json("config.json", {**cfg.as_dict(), "resolved": {"density": cfg.density}})
    run.write_json("metrics.json", out)
    capacity = []
    for t in range(done):
        layers = []
        for layer, shape in LAYERS.items():
            numel = math.prod(shape)
            active = max(1, round(cfg.density * numel))
            layers.append({"name": layer, "numel": numel, "active": active, "owned_fraction": min(1.0, (t + 1) * active / numel),
                           "new_fraction": active / numel, "reused_fraction": 0.1 * t, "free": 0})
        capacity.append({"task": t, "layers": layers})
    run.write_json("capacity.json", capacity)
    run.save_mask(0, {layer: torch.rand(shape) < cfg.density for layer, shape in LAYERS.items()})
    return path


@pytest.fixture(scope="module")
def grid_runs(tmp_path_factory) -> Path:
    """2 inits x 2 growths x 2 sparsities x 2 task counts x 3 seeds, plus one unfinished run."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    k = 0
    for init in ("uniform", "erk"):
        for growth in ("gradient", "random"):
            for sparsity in (0.9, 0.8):
                for tasks in (5, 2):
                    for seed in (0, 1, 2):
                        make_run(root, f"run{k:03d}", seed=seed, rng=rng, init=init, growth=growth,
                                 sparsity=sparsity, tasks=tasks)
                        k += 1
    make_run(root / "more", "unfinished", status="running", rng=rng, init="erk", growth="random", sparsity=0.8, tasks=5, seed=9)
    return root


def runs_under(root: Path) -> list[dict]:
    out = []
    for metrics_path in sorted(root.rglob("metrics.json")):
        out.append({"config": json.loads((metrics_path.parent / "config.json").read_text()),
                    "metrics": json.loads(metrics_path.read_text()), "path": metrics_path.parent})
    return out


def expected_cell(values: list[float]) -> str:
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {float(np.std(values, ddof=1)):.2f}"


def markdown_table(text: str, heading: str) -> list[list[str]]:
    """The first table after ``## heading``, as rows of cells (bold markers removed)."""
    lines = text.split(f"## {heading}", 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|---"):
            table.append([c.strip().replace("**", "") for c in line.strip().strip("|").split("|")])
    return table


def test_paper_table_cells_equal_mean_and_std_of_the_metrics(grid_runs):
    report = build_report(collect([grid_runs]))
    text = to_markdown(report)
    runs = [r for r in runs_under(grid_runs) if r["metrics"]["status"] == "completed"]
    for metric, heading in (("acc", "ACC (%)"), ("bwt", "BWT"), ("fwt", "FWT vs untrained (GEM, points)")):
        table = markdown_table(text, heading)
        header, body = table[0], table[1:]
        assert header[:2] == ["init", "growth"]
        assert header[2:] == ["80 % · 2 tasks", "80 % · 5 tasks", "90 % · 2 tasks", "90 % · 5 tasks"]
        assert [(r[0], r[1]) for r in body] == [("ERK", "random"), ("", "gradient"), ("Uniform", "random"), ("", "gradient")]
        init = None
        for row in body:
            init = {"ERK": "erk", "Uniform": "uniform"}.get(row[0], init)
            for col, cell in zip([(0.8, 2), (0.8, 5), (0.9, 2), (0.9, 5)], row[2:]):
                values = [r["metrics"][metric] for r in runs if r["config"]["init"] == init
                          and r["config"]["growth"] == row[1] and r["config"]["sparsity"] == col[0]
                          and r["config"]["tasks"] == col[1]]
                assert len(values) == 3
                assert cell == expected_cell(values)


def test_csv_numbers_equal_metrics_json(grid_runs):
    report = build_report(collect([grid_runs]))
    per_run = list(csv.DictReader(io.StringIO(render(report, "csv", per_run=True))))
    runs = {str(r["path"].resolve()): r for r in runs_under(grid_runs) if r["metrics"]["status"] == "completed"}
    assert len(per_run) == len(runs) == 48
    for row in per_run:
        metrics = runs[row["run_dir"]]["metrics"]
        for key in ("acc", "bwt", "fwt", "fwt_reference"):
            assert (float(row[key]) if row[key] else None) == metrics[key]
    per_config = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(per_config) == 16
    for row in per_config:
        members = [runs[p] for p in row["run_dirs"].split(" ")]
        assert row["seeds"] == "0 1 2" and row["n"] == "3"
        values = [m["metrics"]["acc"] for m in members]
        assert float(row["acc_mean"]) == pytest.approx(np.mean(values), rel=1e-12)
        assert float(row["acc_std"]) == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert {m["config"]["init"] for m in members} == {row["init"]}


def test_single_run_report_shows_its_exact_numbers(tmp_path):
    path = make_run(tmp_path, "one", tasks=2)
    metrics = json.loads((path / "metrics.json").read_text())
    text = render(build_report(collect([path])), "markdown", per_run=True)
    assert f"| ERK | random | {metrics['acc']:.2f} |" in text
    assert f"| `one` | 0 | {metrics['acc']:.2f} | {metrics['bwt']:.2f} | {metrics['fwt']:.2f} | " \
           f"{metrics['fwt_reference']:.2f} |" in text


def test_unfinished_runs_are_listed_not_counted(grid_runs):
    text = to_markdown(build_report(collect([grid_runs])))
    assert "48 completed runs in 16 configurations (seeds 0, 1, 2)" in text
    assert "1 unfinished run(s) not included" in text
    assert re.search(r"- `.*unfinished`: running \(1/5 tasks\)", text)


def test_other_varying_fields_split_tables_unless_implied(tmp_path):
    for seed in (0, 1):
        make_run(tmp_path, f"c5-{seed}", seed=seed, dataset="cifar100", tasks=5, epochs=100, update_frequency=100)
        make_run(tmp_path, f"c20-{seed}", seed=seed, dataset="cifar100", tasks=20, epochs=25, update_frequency=100)
        make_run(tmp_path, f"m10-{seed}", seed=seed, dataset="miniimagenet", tasks=10, epochs=100, update_frequency=400)
    report = build_report(collect([tmp_path]))
    assert [t.split for t in report.tables] == [{"dataset": "cifar100"}, {"dataset": "miniimagenet"}]
    assert report.tables[0].cols == [(0.8, 5), (0.8, 20)]
    assert report.tables[0].derived == ["update_frequency", "epochs", "batch_size", "image_size", "split"]
    text = to_markdown(report)
    assert "### dataset = cifar100" in text and "### dataset = miniimagenet" in text


def test_fewer_seeds_are_marked_and_best_is_bold(tmp_path):
    make_run(tmp_path, "a0", seed=0, growth="random")
    make_run(tmp_path, "a1", seed=1, growth="random")
    make_run(tmp_path, "b0", seed=0, growth="gradient")
    text = to_markdown(build_report(collect([tmp_path])))
    table = markdown_table(text, "ACC (%)")
    assert table[2][2].endswith("(n=1)")
    assert text.split("## ACC (%)")[1].split("## BWT")[0].count("**") == 2


def test_latex_table_layout(grid_runs):
    text = to_latex(build_report(collect([grid_runs])))
    assert text.count("\\begin{tabular}{llcccc}") == 3
    assert "\\multicolumn{2}{c}{80\\% sparsity} & \\multicolumn{2}{c}{90\\% sparsity}" in text
    assert "Init & Growth & 2 tasks & 5 tasks & 2 tasks & 5 tasks" in text
    assert "\\multirow{2}{*}{ERK}" in text and "$\\pm$" in text and "\\textbf{" in text


def test_no_runs_gives_a_clear_message(tmp_path, capsys):
    with pytest.raises(ReportError, match="no runs under"):
        collect([tmp_path])
    make_run(tmp_path, "half", status="running")
    with pytest.raises(ReportError, match="no completed run .* 1 unfinished"):
        collect([tmp_path])
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_formats_and_output_file(grid_runs, tmp_path, capsys):
    out = tmp_path / "table.tex"
    assert main(["report", str(grid_runs), "--format", "latex", "-o", str(out), "--metrics", "acc"]) == 0
    assert out.read_text().count("\\begin{table}") == 1
    assert main(["report", str(grid_runs), "--metrics", "accuracy"]) == 2
    assert "unknown metric 'accuracy'" in capsys.readouterr().err


def test_plots_are_written_and_not_empty(tmp_path):
    pytest.importorskip("matplotlib")
    from dstcl.report.plots import write_plots

    for init in ("erk", "uniform"):
        for growth in ("random", "gradient"):
            for tasks in (2, 5):
                make_run(tmp_path / "runs", f"{init}-{growth}-{tasks}", init=init, growth=growth, tasks=tasks)
    report = build_report(collect([tmp_path / "runs"]))
    files = write_plots(report, tmp_path / "plots")
    names = {str(p.relative_to(tmp_path / "plots")) for p in files}
    assert {"final_task_accuracy_T2.png", "final_task_accuracy_T5.png", "accuracy_after_each_task_T2.png",
            "accuracy_after_each_task_T5.png", "layer_density.png"} <= names
    assert sum(n.startswith("accuracy_matrix/") for n in names) == 8
    assert sum(n.startswith("capacity/") for n in names) == 8
    assert len(files) == len(names) == 21
    for path in files:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_report_into_a_closed_pipe_exits_quietly(grid_runs):
    """`dstcl report DIR | head -1`: the reader leaves early; no traceback (unbuffered, so writes fail at once)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-u", "-c", "import sys; from dstcl.cli.main import main; sys.exit(main())",
                             "report", str(grid_runs), "--per-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # nobody reads: the first write hits a broken pipe
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141


# --- LaTeX numbers ----------------------------------------------------------------------------------

def latex_tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """Every table of a LaTeX report as (caption, body rows), each row a list of cells without \\\\."""
    out = []
    for block in text.split("\\begin{table}")[1:]:
        caption = re.search(r"\\caption\{(.*)\}", block).group(1)
        body = block.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
        rows = [[c.strip() for c in line.strip().removesuffix("\\\\").split("&")]
                for line in body.splitlines() if line.strip() and line.strip() != "\\midrule"]
        out.append((caption, rows))
    return out


def latex_cell(cell: str) -> str:
    """'\\textbf{63.46 $\\pm$ 1.23}' -> '63.46 ± 1.23' (the Markdown spelling of a cell)."""
    bold = re.fullmatch(r"\\textbf\{(.*)\}", cell)
    return (bold.group(1) if bold else cell).replace(" $\\pm$ ", " ± ")


def test_latex_cells_equal_mean_and_std_of_the_metrics(grid_runs):
    text = to_latex(build_report(collect([grid_runs]), ("acc", "bwt", "fwt", "fwt_reference")))
    runs = [r for r in runs_under(grid_runs) if r["metrics"]["status"] == "completed"]
    tables = latex_tables(text)
    assert [caption.split(" (")[0] for caption, _ in tables] == ["ACC", "BWT", "FWT vs untrained",
                                                                 "future-task accuracy"]
    cols = [(0.8, 2), (0.8, 5), (0.9, 2), (0.9, 5)]
    checked = 0
    for (caption, rows), metric in zip(tables, ("acc", "bwt", "fwt", "fwt_reference")):
        assert [row[1] for row in rows] == ["random", "gradient", "random", "gradient"]
        init = None
        for row in rows:
            label = re.fullmatch(r"\\multirow\{2\}\{\*\}\{(.*)\}", row[0])
            if label:
                init = {"ERK": "erk", "Uniform": "uniform"}[label.group(1)]
            else:
                assert row[0] == ""
            assert len(row) == 2 + len(cols)
            for col, cell in zip(cols, row[2:]):
                values = [r["metrics"][metric] for r in runs if r["config"]["init"] == init
                          and r["config"]["growth"] == row[1] and r["config"]["sparsity"] == col[0]
                          and r["config"]["tasks"] == col[1]]
                assert len(values) == 3
                assert latex_cell(cell) == expected_cell(values), (caption, init, row[1], col)
                checked += 1
    assert checked == 4 * 4 * 4
    best = [c for _, rows in tables[:1] for row in rows for c in row[2:] if c.startswith("\\textbf")]
    assert len(best) == 4  # one best mean per column of the ACC table


# --- duplicates -------------------------------------------------------------------------------------

def test_the_same_run_twice_counts_once_with_a_warning(tmp_path, capsys):
    import shutil

    first = make_run(tmp_path / "a", "run0", seed=0, growth="random", tasks=2)
    make_run(tmp_path / "a", "run1", seed=1, growth="random", tasks=2)
    copy = tmp_path / "b" / "run0-copy"
    shutil.copytree(first, copy)  # the same run copied into another folder
    again = make_run(tmp_path / "b", "run0-again", seed=0, growth="random", tasks=2,
                     rng=np.random.default_rng(123))  # the same config run a second time (other numbers)
    collection = collect([tmp_path / "a", tmp_path / "b"])
    assert [r.path.name for r in collection.completed] == ["run0", "run1"]
    assert [(k.name, d.name) for k, d in collection.duplicates] == [("run0", "run0-again"), ("run0", "run0-copy")]
    report = build_report(collection)
    (group,) = report.groups
    assert group.seeds == [0, 1]
    values = [json.loads((tmp_path / "a" / n / "metrics.json").read_text())["acc"] for n in ("run0", "run1")]
    assert group.stat("acc").n == 2 and group.stat("acc").mean == pytest.approx(np.mean(values), rel=1e-12)
    assert json.loads((again / "metrics.json").read_text())["acc"] not in values

    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv", "--per-run"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert [Path(r["run_dir"]).name for r in rows] == ["run0", "run1"]
    err = " ".join(captured.err.split())
    assert err.count("dstcl: warning:") == 2
    assert f"{copy.resolve()} is a duplicate of {first.resolve()}" in err
    assert f"{again.resolve()} is a duplicate of {first.resolve()}" in err
    text = to_markdown(report)
    assert "2 completed runs in 1 configuration (seeds 0, 1)" in text
    assert "2 duplicate run(s)" in text and "run0-copy`: duplicate of" in text


def test_different_seeds_or_settings_are_not_duplicates(tmp_path, capsys):
    make_run(tmp_path, "s0", seed=0, tasks=2)
    make_run(tmp_path, "s1", seed=1, tasks=2)
    make_run(tmp_path, "g0", seed=0, tasks=2, growth="gradient")
    make_run(tmp_path, "cpu", seed=0, tasks=2, device="cpu")  # where it ran does not make it another run
    collection = collect([tmp_path])
    assert len(collection.completed) == 3 and [d.name for _, d in collection.duplicates] == ["s0"]
    assert main(["report", str(tmp_path)]) == 0
    assert "dstcl: warning:" in capsys.readouterr().err


# --- output paths -----------------------------------------------------------------------------------

def test_output_to_a_folder_or_an_unwritable_path_is_a_clear_error(grid_runs, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "existing"
    folder.mkdir()
    assert main(["report", str(grid_runs), "-o", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("dstcl: error:")
    assert f"-o {folder} is a folder" in " ".join(err.split()) and "report.md" in err
    assert list(folder.iterdir()) == []

    a_file = tmp_path / "file.txt"
    a_file.write_text("keep\n")
    assert main(["report", str(grid_runs), "-o", str(a_file / "report.tex"), "--format", "latex"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and f"{a_file} is a file, not a folder" in err
    assert a_file.read_text() == "keep\n"

    import dstcl.files

    def refuse(path, data, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(dstcl.files, "atomic_write_bytes", refuse)  # as a read-only folder would
    target = tmp_path / "ro" / "report.md"
    assert main(["report", str(grid_runs), "-o", str(target)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err
    assert f"cannot write the report to {target}: Permission denied" in err and "folder you can write to" in err


def test_plots_into_an_existing_file_is_a_clear_error(grid_runs, tmp_path, capsys):
    a_file = tmp_path / "figures.png"
    a_file.write_bytes(b"keep")
    assert main(["report", str(grid_runs), "--plots", str(a_file)]) == 2
    captured = capsys.readouterr()
    err = " ".join(captured.err.split())
    assert "Traceback" not in err and f"--plots {a_file} is a file" in err
    assert captured.out == ""  # refused before the report was printed
    assert a_file.read_bytes() == b"keep"


def test_figures_are_written_atomically(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import os

    import dstcl.files
    from dstcl.report.plots import write_plots

    make_run(tmp_path / "runs", "one", tasks=2)
    replaced = []
    original = os.replace

    def spy(src, dst, *args, **kwargs):
        replaced.append(Path(dst))
        return original(src, dst, *args, **kwargs)

    monkeypatch.setattr(dstcl.files.os, "replace", spy)
    files = write_plots(build_report(collect([tmp_path / "runs"])), tmp_path / "plots")
    assert files and sorted(files) == sorted(replaced)
    assert not list((tmp_path / "plots").rglob("*.tmp"))
