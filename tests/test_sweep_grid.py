"""Grid files: expansion, validation with line numbers, and the stable hash of a run (no training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dstcl.config import RunConfig, resolve
from dstcl.errors import DstclError
from dstcl.sweep import GridError, config_hash, expand, load_grid, plan_runs


def write(tmp_path: Path, text: str, name: str = "grid.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def labels(specs) -> list[dict]:
    return [dict(spec.label) for spec in specs]


# --- expansion ------------------------------------------------------------------------------------

def test_cartesian_product_first_key_outermost(tmp_path):
    grid = load_grid(write(tmp_path, """
        base: {epochs: 1, tasks: 2}
        vary:
          init: [erk, uniform]
          sparsity: [0.8, 0.9, 0.95]
    """))
    points = expand(grid)
    assert [(p.settings["init"], p.settings["sparsity"]) for p in points] == [
        ("erk", 0.8), ("erk", 0.9), ("erk", 0.95), ("uniform", 0.8), ("uniform", 0.9), ("uniform", 0.95)]
    assert all(p.settings["epochs"] == 1 and p.settings["tasks"] == 2 for p in points)


def test_include_exclude_and_seeds(tmp_path):
    grid = load_grid(write(tmp_path, """
        base: {epochs: 1, tasks: 2}
        vary:
          init: [erk, uniform]
          growth: [random, gradient]
        exclude:
          - {init: uniform, growth: gradient}
        include:
          - {init: erk, growth: "random@0,gradient"}
        seeds: [3, 7]
    """))
    specs = plan_runs(grid)
    assert labels(specs) == [
        {"init": "erk", "growth": "random", "seed": 3},
        {"init": "erk", "growth": "gradient", "seed": 3},
        {"init": "uniform", "growth": "random", "seed": 3},
        {"init": "erk", "growth": "random@0,gradient", "seed": 3},
        {"init": "erk", "growth": "random", "seed": 7},
        {"init": "erk", "growth": "gradient", "seed": 7},
        {"init": "uniform", "growth": "random", "seed": 7},
        {"init": "erk", "growth": "random@0,gradient", "seed": 7},
    ]
    assert [s.config.seed for s in specs] == [3] * 4 + [7] * 4
    assert len({s.id for s in specs}) == 8


def test_seed_count_and_only_include(tmp_path):
    grid = load_grid(write(tmp_path, """
        base: {epochs: 1}
        include:
          - {sparsity: 0.9}
          - {sparsity: 0.95, init: uniform}
        seeds: 2
    """))
    specs = plan_runs(grid)
    assert [(s.config.sparsity, s.config.init, s.config.seed) for s in specs] == [
        (0.9, "erk", 0), (0.95, "uniform", 0), (0.9, "erk", 1), (0.95, "uniform", 1)]


def test_base_only_is_one_run_per_seed_and_preset_can_vary(tmp_path):
    assert len(plan_runs(load_grid(write(tmp_path, "base: {epochs: 1}\n")))) == 1
    grid = load_grid(write(tmp_path, """
        vary:
          preset: [cifar100-5, cifar100-20]
    """, "presets.yaml"))
    specs = plan_runs(grid)
    assert [(s.config.tasks, s.config.epochs, s.config.update_frequency) for s in specs] == [(5, 100, 100), (20, 25, 100)]
    assert labels(specs) == [{"preset": "cifar100-5"}, {"preset": "cifar100-20"}]


def test_same_config_spelled_twice_is_one_run(tmp_path):
    grid = load_grid(write(tmp_path, """
        base: {epochs: 1}
        vary:
          sparsity: [0.9]
        include:
          - {sparsity: 0.90, epochs: 1.0}
    """))
    assert len(plan_runs(grid)) == 1


def test_sparsity_and_density_in_one_grid_is_an_error(tmp_path):
    with pytest.raises(GridError, match="line 4: the grid sets both sparsity \\(line 2\\) and density \\(line 4\\)"):
        load_grid(write(tmp_path, """
            vary:
              sparsity: [0.9]
            include:
              - {density: 0.1}
        """))


def test_base_config_file_and_overrides(tmp_path):
    write(tmp_path, "epochs: 3\nlr: 0.01\n", "base.yaml")
    grid = load_grid(write(tmp_path, "config: base.yaml\nbase: {tasks: 2}\n"), overrides={"lr": 0.1, "data_dir": "/x"})
    (spec,) = plan_runs(grid)
    assert (spec.config.epochs, spec.config.tasks, spec.config.lr, spec.config.data_dir) == (3, 2, 0.1, "/x")


# --- hash -------------------------------------------------------------------------------------------

def test_hash_ignores_spelling_order_and_non_result_fields():
    a = resolve({"sparsity": 0.9, "epochs": 2})
    b = resolve({"epochs": 2.0, "density": 0.1, "device": "cpu", "out": "elsewhere", "progress": False,
                 "data_dir": "/data", "download": False, "checkpoint_budget": 1.0})
    assert config_hash(a) == config_hash(b)
    assert len(config_hash(a)) == 12 and all(c in "0123456789abcdef" for c in config_hash(a))
    assert config_hash(a) != config_hash(resolve({"sparsity": 0.9, "epochs": 2, "seed": 1}))
    assert config_hash(a) != config_hash(resolve({"sparsity": 0.95, "epochs": 2}))


def test_hash_of_run_config_json_equals_hash_of_config():
    cfg = resolve({"epochs": 1, "tasks": 2})
    saved = {**cfg.as_dict(), "density": cfg.density, "resolved_device": "cpu", "classes_per_task": 5,
             "task_classes": [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]}
    assert config_hash(json.loads(json.dumps(saved))) == config_hash(cfg)


def test_hash_is_stable_across_processes():
    code = "from dstcl.config import resolve; from dstcl.sweep import config_hash; print(config_hash(resolve({'lr': 0.01})))"
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1
    assert outs.pop().strip() == config_hash(resolve({"lr": 0.01}))


# --- bad input ----------------------------------------------------------------------------------------

def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(GridError) as info:
        plan_runs(load_grid(write(tmp_path, text)))
    assert isinstance(info.value, DstclError)
    return str(info.value)


def test_unknown_field_names_line_and_valid_fields(tmp_path):
    message = error_of(tmp_path, """
        base:
          epochs: 1
          sparsty: 0.9
    """)
    assert "line 3" in message and "'sparsty'" in message and "did you mean 'sparsity'" in message
    assert "valid fields:" in message and "growth" in message


def test_unknown_value_names_line_and_valid_options(tmp_path):
    message = error_of(tmp_path, """
        vary:
          init: [erk, unifrom]
          growth:
            - random
            - gradinet
    """)
    assert "line 2: unknown sparse initialisation (density rule) 'unifrom' (did you mean 'uniform'?); valid: erk, " \
           "uniform" in message
    assert "line 5: unknown growth criterion 'gradinet' (did you mean 'gradient'?); valid: auto, gradient, momentum, " \
           "random, unfired" in message
    assert "Nothing was run" in message


def test_every_problem_is_reported_at_once(tmp_path):
    message = error_of(tmp_path, """
        vary:
          sparsity: [0.8, 1.5]
          optimizer: [adamw]
        seeds: [0, -1]
        colour: blue
    """)
    assert "4 problems" in message
    for expected in ("line 2: sparsity must be in [0, 1)", "line 3: unknown optimizer",
                     "line 4: seeds must be non-negative", "line 5: unknown key 'colour'"):
        assert expected in message


def test_bad_combination_is_reported_with_its_lines(tmp_path):
    message = error_of(tmp_path, """
        base: {tasks: 2}
        vary:
          growth: ["random@0-4,gradient", random]
    """)
    assert "line 3" in message and "names task 4" in message


def test_tasks_that_do_not_divide_the_classes_are_refused_by_a_dry_run(tmp_path, capsys):
    """digits has 10 classes: 3 tasks is a bad value, reported before anything runs (not a failed run)."""
    from dstcl.cli.main import main

    path = write(tmp_path, """
        base: {epochs: 1}
        vary:
          sparsity: [0.8, 0.9]
        include:
          - {tasks: 3}
    """)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err and "1 problem: line 5: the run {tasks: 3} (include entry 1) is invalid" in err
    assert "tasks must divide the 10 classes of digits, got 3" in err and "Nothing was run" in err
    assert not (tmp_path / "out").exists()


def test_a_problem_from_the_config_file_names_the_config_line(tmp_path):
    (tmp_path / "base.yaml").write_text("tasks: 3\n")
    message = error_of(tmp_path, "name: x\nseeds: 2\nconfig: base.yaml\n")
    assert "1 problem: line 3: the run {seed: 0} (base) is invalid: tasks must divide" in message
    (tmp_path / "base.yaml").write_text("lr: 1" + "0" * 400 + "\n")  # too large for a float
    message = error_of(tmp_path, "config: base.yaml\n")
    assert "line 1: the run of the base (base) is invalid: lr must be a number in the range of a float" in message
    message = error_of(tmp_path, "base: {lr: 1" + "0" * 400 + "}\n")
    assert "line 1: lr must be a number in the range of a float, got 1000" in message


def test_empty_grid_and_empty_list_and_everything_excluded(tmp_path):
    assert "is empty" in error_of(tmp_path, "\n")
    assert "vary.init is an empty list" in error_of(tmp_path, "vary:\n  init: []\n")
    message = error_of(tmp_path, """
        vary:
          init: [erk]
        exclude:
          - {init: erk}
    """)
    assert "no runs" in message and "excluded" in message


def test_duplicate_keys_and_yaml_syntax_errors_name_the_line(tmp_path):
    assert "line 3: 'epochs' is given twice" in error_of(tmp_path, "base:\n  epochs: 1\n  epochs: 2\n")
    assert "line 2" in error_of(tmp_path, "base:\n  epochs: [1\n")
    with pytest.raises(GridError, match="does not exist"):
        load_grid(tmp_path / "missing.yaml")


def test_exclude_must_name_varied_fields_and_match_something(tmp_path):
    assert "not varied" in error_of(tmp_path, "vary:\n  init: [erk, uniform]\nexclude:\n  - {growth: random}\n")
    assert "matches no combination" in error_of(tmp_path, "vary:\n  init: [erk]\nexclude:\n  - {init: uniform}\n")


def test_cli_prints_one_paragraph_and_exits_2(tmp_path, capsys):
    from dstcl.cli.main import main

    path = write(tmp_path, "vary:\n  init: [erk, unifrom]\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dstcl: error: grid file") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_set_overrides_are_parsed_as_yaml_scalars():
    from dstcl.cli.sweep import parse_overrides

    assert parse_overrides(["epochs=5", "data-dir=/x", "lr=0.001"]) == {"epochs": 5, "data_dir": "/x", "lr": 0.001}
    with pytest.raises(DstclError, match="FIELD=VALUE"):
        parse_overrides(["epochs"])


def test_a_list_or_mapping_where_one_value_is_expected_names_line_field_value_and_options(tmp_path):
    message = error_of(tmp_path, """
        preset: [cifar100-10]
        vary:
          preset:
            - cifar100-5
            - {cifar100-20: 1}
          init: [[erk, uniform]]
        include:
          - {growth: [random, gradient]}
    """)
    assert "4 problems" in message and "Nothing was run" in message
    assert "line 1: preset must be a single value, not a list (['cifar100-10']); valid: cifar100-5, cifar100-10" in message
    assert "line 5: preset must be a single value, not a mapping ({'cifar100-20': 1}); valid: cifar100-5" in message
    assert "line 6: init must be a single value, not a list (['erk', 'uniform']); valid: erk, uniform" in message
    assert "line 8: growth must be a single value, not a list (['random', 'gradient']); valid: auto, gradient, " \
           "momentum, random, unfired" in message
    message = error_of(tmp_path, "vary:\n  preset: {cifar100-5: x}\nname: [a]\n")
    assert "line 2: preset must be a single value, not a mapping ({'cifar100-5': 'x'})" in message
    assert "line 3: name must be a text, not a list" in message
    message = error_of(tmp_path, "vary:\n  epochs: [1, 2]\nexclude:\n  - {epochs: [1]}\n")
    assert "line 4: epochs must be a single value, not a list ([1]); valid: an integer" in message


@pytest.mark.parametrize("text, expected", [
    ("resources: {cpus: .inf}", "resources.cpus must be a finite number greater than 0"),
    ("resources: {cpus: .nan}", "resources.cpus must be a finite number greater than 0"),
    ("resources: {cpus: 0}", "resources.cpus must be a finite number greater than 0"),
    ("resources: {gpus: .inf}", "resources.gpus must be a finite number of at least 0"),
    ("resources: {gpus: -0.5}", "resources.gpus must be a finite number of at least 0"),
    ("resources: {gpus: [1]}", "resources.gpus must be a finite number of at least 0"),
    ("resources: {cpus: 0.00001}", "resources.cpus must be 0 or at least 0.0001"),
])
def test_bad_ray_resources_in_the_grid_are_grid_errors(tmp_path, text, expected):
    message = error_of(tmp_path, text + "\n")
    assert f"line 1: {expected}" in message


def test_fractional_resources_are_accepted(tmp_path):
    grid = load_grid(write(tmp_path, "resources: {cpus: 0.5, gpus: 0.25}\n"))
    assert grid.resources == {"cpus": 0.5, "gpus": 0.25}


def test_absurdly_many_runs_are_refused_before_expanding(tmp_path):
    assert "at most 100000 runs" in error_of(tmp_path, "seeds: 9223372036854775808\n")
    text = "vary:\n" + "".join(f"  {f}: [{', '.join(str(i) for i in range(1, 12))}]\n"
                                for f in ("epochs", "update_frequency", "seed"))
    text += "".join(f"  {f}: [{', '.join(str(i / 100) for i in range(1, 12))}]\n" for f in ("lr", "weight_decay"))
    assert "expands to 161051 runs" in error_of(tmp_path, text)


@pytest.mark.parametrize("args, expected", [
    (["--executor", "ray", "--cpus-per-run", "-1"], "--cpus-per-run must be a finite number greater than 0"),
    (["--executor", "ray", "--cpus-per-run", "inf"], "--cpus-per-run must be a finite number greater than 0"),
    (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run must be a finite number greater than 0"),
    (["--executor", "ray", "--gpus-per-run", "nan"], "--gpus-per-run must be a finite number of at least 0"),
    (["--executor", "ray", "--gpus-per-run", "-1"], "--gpus-per-run must be a finite number of at least 0"),
    (["--address", "auto"], "--address only applies to --executor ray"),
    (["--cpus-per-run", "2", "--gpus-per-run", "1"], "--cpus-per-run, --gpus-per-run only apply to --executor ray"),
    (["--executor", "local", "--gpus-per-run", "0.5"], "--gpus-per-run only applies to --executor ray"),
])
def test_bad_executor_options_exit_2_before_anything_runs(tmp_path, capsys, monkeypatch, args, expected):
    from dstcl.cli.main import main
    from dstcl.sweep import runner

    monkeypatch.setattr(runner, "load_plan", lambda *a, **k: pytest.fail("the grid was read before the options"))
    path = write(tmp_path, "base: {epochs: 1, tasks: 2}\n")
    for dry_run in ([], ["--dry-run"]):
        assert main(["sweep", str(path), "--out", str(tmp_path / "out"), *args, *dry_run]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and expected in " ".join(err.split()), err
    assert not (tmp_path / "out").exists()


def test_run_ray_refuses_bad_resources_before_starting_ray(monkeypatch):
    from dstcl.sweep import ray_executor

    monkeypatch.setattr(ray_executor, "import_ray", lambda: pytest.fail("Ray was started"))
    with pytest.raises(DstclError, match="cpus per run must be a finite number"):
        ray_executor.run_ray([], cpus=float("inf"))
    with pytest.raises(DstclError, match="gpus per run must be a finite number"):
        ray_executor.run_ray([], gpus=-1.0)


SHIPPED = sorted((Path(__file__).resolve().parents[1] / "grids").rglob("*.yaml"))
EXPECTED_RUNS = {"cifar100-5": 72, "cifar100-10": 72, "cifar100-20": 72, "cifar100-all": 216, "miniimagenet-10": 72,
                 "adaptive-growth": 54, "smoke-digits": 16, "open-questions": 36}
STUDY_RUNS = {"budget": 7, "miniimagenet-10": 36, "budget-axis": 24, "reference-code": 4, "protocol": 24}  # grids/study: configurations x seeds


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_grids_are_valid(path):
    specs = plan_runs(load_grid(path))
    reduced = path.parent.name == "reduced"
    expected = ({"adaptive-growth": 18, "open-questions": 12}.get(path.stem, 24) if reduced else
                STUDY_RUNS[path.stem] if path.parent.name == "study" else EXPECTED_RUNS[path.stem])
    assert len(specs) == expected
    if reduced and path.stem != "open-questions":  # the open questions change the data set (CIFAR -> miniImageNet)  # same experiment as the full grid: data set, tasks and the varied components
        full = plan_runs(load_grid(path.parent.parent / path.name))
        assert {(s.config.dataset, s.config.tasks) for s in specs} == {(s.config.dataset, s.config.tasks) for s in full}
        assert {(s.config.init, s.config.growth, s.config.sparsity) for s in specs} == \
               {(s.config.init, s.config.growth, s.config.sparsity) for s in full}


def test_adaptive_grid_shares_its_fixed_growth_runs_with_the_main_grid():
    root = Path(__file__).resolve().parents[1] / "grids"
    main_ids = {s.id for s in plan_runs(load_grid(root / "cifar100-10.yaml"))}
    adaptive = plan_runs(load_grid(root / "adaptive-growth.yaml"))
    fixed = [s for s in adaptive if "@" not in s.config.growth]
    assert fixed and all(s.id in main_ids for s in fixed)


PROTOCOL_SWITCHES = ("counts", "reused_value", "head_ownership", "kept_epoch", "eval_logits", "test_augment",
                     "test_order")


def test_every_config_field_is_classified_for_the_run_hash():
    """A new RunConfig field must be a deliberate choice: in the hash (it can change results) or not.

    Forgetting it would either split finished sweeps (a logging knob in the hash) or merge different
    runs (a result-changing field left out); this test fails until the field is added below.
    """
    from dstcl.run.hashing import NON_RESULT_FIELDS, result_settings

    from dstcl.config import FIELD_NAMES

    result_fields = {"dataset", "tasks", "class_order", "num_classes", "backbone", "bn", "init", "erk_power_scale",
                     "growth", "sparsity", "drop", "drop_rate", "final_drop_rate", "drop_schedule", "update_frequency",
                     "free_init", "structure", "method", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay",
                     "precision", "seed", "channel_training", "retrain_epochs", "supsup_init", *PROTOCOL_SWITCHES,
                     "similarity_digest", "reuse"}  # issue 24: the similarity's content (not its path), reuse off
    assert NON_RESULT_FIELDS == {"data_dir", "download", "device", "threads", "out", "progress", "checkpoint_budget",
                                 "eval", "agnostic", "similarity"}
    assert set(FIELD_NAMES) == result_fields | NON_RESULT_FIELDS
    # a backbone's and a data set's options are result settings unless declared otherwise
    at_default = result_fields - {"channel_training", "retrain_epochs", "supsup_init",  # left out at their
                                  "similarity_digest", "reuse", *PROTOCOL_SWITCHES}  # defaults (the next test)
    assert set(result_settings(resolve({}))) == at_default | {"width"}
    assert set(result_settings(resolve({"dataset": "miniimagenet"}))) == at_default | {"width", "stem", "image_size",
                                                                                       "split"}


def test_a_setting_added_later_keeps_earlier_run_ids_at_its_default():
    """channel_training (added after the study's runs): 'masked' is what dstcl did before, so it is left out of
    the id; any other value is a different run."""
    from dstcl.config import NEUTRAL_DEFAULTS, resolve
    from dstcl.run.hashing import config_hash

    assert NEUTRAL_DEFAULTS == {"channel_training": "masked", "counts": "exact", "reused_value": "stored",
                                "head_ownership": "rows", "kept_epoch": "last", "eval_logits": "task",
                                "test_augment": "off", "test_order": "fixed", "retrain_epochs": 2,
                                "supsup_init": "signed-constant", "similarity_digest": None, "reuse": "on"}
    flat = resolve({"structure": "channel"}).flat()
    before = {k: v for k, v in flat.items() if k != "channel_training"}  # a config.json written before the field
    assert config_hash(flat) == config_hash(before)
    assert config_hash({**flat, "channel_training": "gathered"}) != config_hash(before)


def test_a_protocol_is_a_spelling_of_its_switches_so_a_run_has_one_id():
    """--protocol reference and the seven switches written out are the same run; dstcl's protocol is every
    earlier run (its switches are left out of the id); one switch changed is another run."""
    from dstcl.config import protocol_values, resolve
    from dstcl.run.hashing import config_hash

    assert config_hash(resolve({"protocol": "reference"}).flat()) == config_hash(
        resolve(protocol_values("reference")).flat())
    assert config_hash(resolve({"protocol": "dstcl"}).flat()) == config_hash(resolve({}).flat())
    one = resolve({"protocol": "reference", "counts": "exact"})
    assert one.counts == "exact" and one.eval_logits == "all"
    assert one.protocol == "reference except counts=exact"
    assert resolve({"eval_logits": "all"}).protocol == "dstcl with eval_logits=all"
    assert config_hash(one.flat()) != config_hash(resolve({"protocol": "reference"}).flat())


def test_every_committed_run_keeps_its_id():
    """The study's committed runs are found again by their ids (folder names): a new setting, a spelling or
    a refactor that changed an id would make a sweep redo finished work or mix two runs."""
    import json
    from pathlib import Path

    from dstcl.config import NEUTRAL_DEFAULTS, from_flat, result_keys, saved_settings
    from dstcl.run.hashing import config_hash

    configs = sorted((Path(__file__).resolve().parents[1] / "docs" / "results").rglob("config.json"))
    assert len(configs) >= 78
    resolved = 0
    for path in configs:
        saved = json.loads(path.read_text())
        assert config_hash(saved) == path.parent.name, path
        cfg = from_flat(saved_settings(saved))
        if result_keys(cfg.flat()) - set(NEUTRAL_DEFAULTS) <= set(saved):  # not written before a field existed
            assert config_hash(cfg) == path.parent.name, path
            resolved += 1
    assert resolved >= 48  # the study's runs and everything after


def test_static_sparse_training_has_one_spelling():
    """DST with no topology update is static sparse training: both spellings resolve to one run (one id)."""
    from dstcl.config import resolve
    from dstcl.run.hashing import config_hash

    spelled = resolve({"update_frequency": 0})
    assert spelled.train.method == "static"
    assert config_hash(spelled) == config_hash(resolve({"method": "static", "update_frequency": 0}))
