"""Property test: any YAML document as a grid file is either a valid grid or a clear GridError.

Random mappings with known and unknown keys and random scalar, list and mapping values (also inside
``vary``, ``include``, ``exclude``, ``seeds``, ``resources``, ``base`` and ``preset``) are written to
a grid file. Reading and planning it may only raise a DstclError (a GridError names the line), never
a TypeError or another crash, and ``dstcl sweep FILE --dry-run`` exits 0 or 2 without a traceback.
"""

from __future__ import annotations

import math

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dstcl.cli.main import main  # noqa: E402
from dstcl.config import FIELD_NAMES, PRESETS  # noqa: E402
from dstcl.errors import DstclError  # noqa: E402
from dstcl.sweep import load_grid, plan_runs  # noqa: E402
from dstcl.sweep.grid import TOP_KEYS  # noqa: E402
from dstcl.sweep.checks import run_keys  # noqa: E402

KNOWN_STRINGS = [
    *PRESETS, "erk", "uniform", "random", "unfired", "gradient", "momentum", "random@0-1,gradient",
    "random@0-9,gradient", "magnitude", "digits", "cifar100", "cnn", "resnet18", "cpu", "auto", "cuda:1", "adam",
    "sgd", "cosine", "batch", "task", "imagenet", "", " ", "none", "null", "~", "grid.yaml", ".", "[a]", "{a: 1}",
    "1e999", "nan", "-1", "0x10", "é", "a:b", "- x",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=12),
    st.sampled_from([0, 1, 2, 3, 5, 10, 100, 2**63, -2**70, 10**30, 10**400, -10**400]),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, 0.5, 0.8, 0.9, 0.95, 1.0, 1.5, -0.1, math.inf, -math.inf, math.nan, 1e-320, 1e300]),
    st.sampled_from(KNOWN_STRINGS),
    st.text(max_size=8),
)
keys = st.one_of(st.sampled_from(run_keys()), st.sampled_from(TOP_KEYS), st.text(max_size=6),
                 st.integers(-2, 3), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)),
    max_leaves=6,
)
field_keys = st.one_of(st.sampled_from([*FIELD_NAMES, "density", "preset"]), st.text(max_size=6), st.integers(0, 2))
settings_map = st.dictionaries(field_keys, values, max_size=3)
vary_map = st.dictionaries(field_keys, st.one_of(st.lists(values, max_size=3), values), max_size=3)
entries = st.one_of(st.lists(st.one_of(settings_map, values), max_size=3), values)
seeds = st.one_of(st.integers(-2, 3), st.lists(st.one_of(st.integers(-1, 4), values), max_size=3), values)
resources = st.one_of(
    st.dictionaries(st.one_of(st.sampled_from(["cpus", "gpus"]), st.text(max_size=4)), values, max_size=3), values)
presets = st.one_of(st.sampled_from([*PRESETS]), values)

top_level = st.fixed_dictionaries({}, optional={
    "name": values, "description": values, "preset": presets,
    "config": st.one_of(st.sampled_from(["base.yaml", "grid.yaml", ".", "missing.yaml"]), values),
    "base": st.one_of(settings_map, values), "vary": st.one_of(vary_map, values), "include": entries,
    "exclude": entries, "seeds": seeds, "resources": resources,
})
# Nearly valid grids, so that resolving the runs (plan_runs) is exercised too, not only the first checks.
PLAUSIBLE = {
    "init": ["erk", "uniform", "ERK"], "growth": ["random", "gradient", "random@0-1,gradient", "random@0-7,momentum"],
    "sparsity": [0.8, 0.9, 0.0, 1.0, "0.5", 10**400], "density": [0.2, 0.1, 1.0, 0], "tasks": [1, 2, 5, 10, 11, 0],
    "epochs": [1, 2, 0, 1.0, 1.5], "batch_size": [2, 32, 1], "update_frequency": [1, 10, None],
    "dataset": ["digits", "cifar100", "miniimagenet"], "backbone": ["cnn", "resnet18", None], "width": [8, 2000],
    "num_classes": [4, 10, 100, 0], "image_size": [32, 84, 8], "seed": [0, 1, -1, 2**63], "lr": [0.01, 0, 1e39, 10**400],
    "drop_rate": [0.5, 0.0, 1.0, 2.0], "device": ["cpu", "auto", "gpu"], "class_order": ["random", "sequential"],
    "stem": ["cifar", None], "preset": [*PRESETS, "cifar100-7"],
}
plausible_value = {key: st.sampled_from(options) for key, options in PLAUSIBLE.items()}
plausible_key = st.sampled_from(sorted(PLAUSIBLE))


@st.composite
def plausible_settings(draw, *, lists: bool = False, preset: bool = True):
    chosen = draw(st.lists(plausible_key, max_size=3, unique=True))
    out = {}
    for key in chosen:
        if key == "preset" and not preset:
            continue
        if lists:
            out[key] = draw(st.lists(plausible_value[key], min_size=1, max_size=3))
        else:
            out[key] = draw(plausible_value[key])
    return out


plausible = st.fixed_dictionaries({}, optional={
    "preset": st.sampled_from([*PRESETS]), "config": st.just("base.yaml"), "base": plausible_settings(preset=False),
    "vary": plausible_settings(lists=True), "include": st.lists(plausible_settings(), max_size=2),
    "exclude": st.lists(plausible_settings(preset=False), max_size=1),
    "seeds": st.one_of(st.integers(1, 3), st.lists(st.integers(0, 3), min_size=1, max_size=3)),
    "resources": st.fixed_dictionaries({}, optional={"cpus": st.sampled_from([1, 0.5, 4, 10**400, math.inf]),
                                                    "gpus": st.sampled_from([0, 0.25, 1, -10**400, math.nan])}),
})
documents = st.one_of(
    st.builds(lambda known, extra: {**known, **extra}, top_level, st.dictionaries(keys, values, max_size=2)),
    plausible,
    values,
)


def dump(document) -> str:
    return yaml.safe_dump(document, default_flow_style=None, allow_unicode=True, sort_keys=False)


# The base config file a grid may name (config: base.yaml), itself random.
config_documents = st.one_of(plausible_settings(preset=False), settings_map, values)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=documents, config_document=config_documents)
@example(document={"include": [{"stem": None}]}, config_document={})  # an unset backbone option the base lacks
def test_random_grid_files_give_a_grid_or_a_grid_error(tmp_path, capsys, document, config_document):
    path = tmp_path / "grid.yaml"
    path.write_text(dump(document), encoding="utf-8")
    (tmp_path / "base.yaml").write_text(dump(config_document), encoding="utf-8")
    try:
        plan_runs(load_grid(path))
        valid = True
    except DstclError:
        valid = False
    capsys.readouterr()
    code = main(["sweep", str(path), "--dry-run", "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code in (0, 2), captured.err
    assert code == (0 if valid else 2), captured.err
    assert "Traceback" not in captured.err
    if code == 2:
        assert captured.err.startswith("dstcl: error:"), captured.err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", [
    "preset: [cifar100-10]\n",
    "preset: {a: 1}\n",
    "vary:\n  preset: [[cifar100-10]]\n",
    "vary:\n  preset:\n    - {a: 1}\n",
    "include:\n  - {preset: [cifar100-5]}\n",
    "vary:\n  init: [[erk]]\n",
    "base: {growth: {a: 1}}\n",
    "seeds: [[0]]\n",
    "resources: {cpus: [1]}\n",
    "exclude:\n  - {init: [erk]}\nvary:\n  init: [erk, uniform]\n",
])
def test_non_scalar_values_are_grid_errors(tmp_path, text):
    path = tmp_path / "grid.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DstclError):
        plan_runs(load_grid(path))
