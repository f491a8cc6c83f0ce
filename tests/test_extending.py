"""docs/extending.md is true: its plugin file (a criterion pair, a backbone, a data set) works everywhere.

The Python blocks of the page are concatenated into one module, named in DSTCL_PLUGINS, and used from
``dstcl run`` (flags, options, --help, --check), a grid file and the error messages.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import dstcl as run_cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("plugins")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 3, "extending.md should show the plugin file in three python blocks"
    (folder / "mylab_plugins.py").write_text("\n\n".join(blocks), encoding="utf-8")
    return {**os.environ, "DSTCL_PLUGINS": "mylab_plugins",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}


def dstcl(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, env=env, cwd=cwd)


def test_the_documented_plugins_train_through_dstcl_run(plugin_env, tmp_path):
    done = dstcl(plugin_env, "run", "--dataset", "stripes", "--growth", "grad_times_value", "--drop",
                 "magnitude_times_grad", "--no-progress", "--out", str(tmp_path), "--threads", "1")
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    config = json.loads((run_dir / "config.json").read_text())
    # the data set's defaults apply (its backbone, epochs, tasks) and the backbone's option is recorded
    assert (config["backbone"], config["epochs"], config["tasks"], config["hidden"], config["noise"]) == \
        ("tiny_mlp", 2, 2, 32, 20.0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["acc"] > 60.0  # stripes are easy
    assert metrics["topology_updates_per_task"] == [3, 3]  # 2 classes x 40 images / 16 = 5 steps x 2 epochs, every 3rd


def test_plugin_options_are_flags_and_appear_in_help(plugin_env):
    checked = dstcl(plugin_env, "run", "--dataset", "stripes", "--hidden", "64", "--noise", "10", "--check")
    assert checked.returncode == 0, checked.stderr
    resolved = json.loads(checked.stdout[: checked.stdout.rindex("}") + 1])
    assert (resolved["hidden"], resolved["noise"]) == (64, 10.0)
    help_text = " ".join(dstcl(plugin_env, "run", "--help").stdout.split())
    for name in ("stripes", "tiny_mlp", "grad_times_value", "magnitude_times_grad", "--hidden", "--noise"):
        assert name in help_text
    assert "tiny_mlp: hidden units" in help_text


def test_plugin_names_reach_errors_and_grids(plugin_env, tmp_path):
    wrong = dstcl(plugin_env, "run", "--dataset", "stripes", "--growth", "grad_time_value")
    assert wrong.returncode == 2 and "did you mean 'grad_times_value'" in wrong.stderr.replace("\n", " ")
    misplaced = dstcl(plugin_env, "run", "--hidden", "8")  # digits' default backbone has no such option
    assert misplaced.returncode == 2
    assert "hidden is an option of backbone tiny_mlp" in " ".join(misplaced.stderr.split())
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {dataset: stripes}\nvary:\n  hidden: [16, 32]\n  growth: [random, grad_times_value]\n")
    dry = dstcl(plugin_env, "sweep", str(grid), "--out", str(tmp_path / "out"), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.count("  run  ") == 4 and "hidden=16 growth=grad_times_value" in dry.stdout
