"""The flat names of a run's settings: what the command line, config files and grids call them.

``FLAT`` maps each flat name to its section; ``sparsity`` is the user-facing name of the sparse
section's ``density`` (density = 1 - sparsity is the internal quantity). A backbone's or data set's
own options are flat names too, routed by name to the chosen backbone or data set.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping

from ..data import DATASETS
from ..errors import ConfigError
from ..models import MODELS
from ..registry import Option
from ..settings import check_value, declared
from ..sparse.density import check_density, density_of
from .sections import SECTIONS

SPARSITY = "sparsity"
FLAT: dict[str, tuple[str, dataclasses.Field]] = {}
for _section, _cls in SECTIONS.items():
    for _field in declared(_cls):
        FLAT[_field.name] = (_section, _field)

# Order of config.json and of --help: sparsity leads the sparse section.
FIELD_NAMES: list[str] = []
for _name, (_section, _) in FLAT.items():
    if _section == "sparse" and SPARSITY not in FIELD_NAMES:
        FIELD_NAMES.append(SPARSITY)
    FIELD_NAMES.append(_name)
SPARSITY_HELP = "fraction of inactive weights per task (0.8 = 80 %); density = 1 - sparsity"
NON_RESULT_FIELDS = frozenset(n for n, (_, f) in FLAT.items() if not f.metadata.get("result", True))
# result fields added later whose default reproduces earlier runs: left out of a run id at that default
NEUTRAL_DEFAULTS = {n: f.default for n, (_, f) in FLAT.items() if f.metadata.get("added")}


def check_field(name: str, value: Any) -> Any:
    """``value`` for flat field ``name``, coerced and checked by the field's own declaration."""
    if name == SPARSITY:
        return sparsity_value(value)
    section, field = FLAT[name]
    return check_value(field, SECTIONS[section], value)


def sparsity_value(value: Any) -> float:
    number = check_value(_SPARSITY_FIELD, _SparsityHolder, value, SPARSITY)
    if not 0.0 <= number < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1) (0.8 = 80 % of weights inactive), got {value!r}.")
    check_density(density_of(number))
    return number


@dataclasses.dataclass
class _SparsityHolder:
    sparsity: float = dataclasses.field(default=0.8, metadata={"help": SPARSITY_HELP})


_SPARSITY_FIELD = dataclasses.fields(_SparsityHolder)[0]


def options_of(registry_name: str, name: str | None) -> tuple[Option, ...]:
    registry = MODELS if registry_name == "model" else DATASETS
    if name is None or name not in registry:
        return ()
    return registry.entry(name).options


def all_option_names() -> set[str]:
    """Every option any registered backbone or data set declares (for grid key checks and --help)."""
    return {o.name for reg in (MODELS, DATASETS) for e in reg.entries() for o in e.options}


def option_owners(name: str) -> list[str]:
    """``["backbone resnet18", "data set miniimagenet"]``: who declares option ``name``."""
    return [f"{what} {e.name}" for what, reg in (("backbone", MODELS), ("data set", DATASETS))
            for e in reg.entries() if e.option(name) is not None]


def route_options(values: Mapping[str, Any], dataset: str, backbone: str) -> tuple[dict, dict, list[str]]:
    """Split the non-field keys of ``values`` into (model options, data options, unknown keys)."""
    model_opts = {o.name: o for o in options_of("model", backbone)}
    data_opts = {o.name: o for o in options_of("data", dataset)}
    for name in list(model_opts) + list(data_opts):
        if name in FLAT or name == SPARSITY:
            raise ConfigError(f"{'backbone ' + backbone if name in model_opts else 'data set ' + dataset} declares "
                              f"an option {name!r}, which is also a run setting; rename the option.")
    model, data, unknown = {}, {}, []
    for key, value in values.items():
        if key in FLAT or key == SPARSITY:
            continue
        if key in model_opts and key in data_opts:
            raise ConfigError(f"{key!r} is an option of both backbone {backbone} and data set {dataset}; "
                              "rename one of them.")
        if key in model_opts:
            if value is not None:  # None: the option's default (config.json of an older version)
                model[key] = model_opts[key].check(value, backbone)
        elif key in data_opts:
            if value is not None:
                data[key] = data_opts[key].check(value, dataset)
        else:
            unknown.append(key)
    model = {o.name: model.get(o.name, o.default) for o in model_opts.values()}
    data = {o.name: data.get(o.name, o.default) for o in data_opts.values()}
    return model, data, unknown


def flat_view(cfg: Any) -> dict[str, Any]:
    """The flat settings of a :class:`~dstcl.config.runconfig.RunConfig` (``RunConfig.flat``)."""
    out: dict[str, Any] = {}
    for name in FIELD_NAMES:
        if name == SPARSITY:
            out[name] = cfg.sparsity
        else:
            out[name] = getattr(getattr(cfg, FLAT[name][0]), name)
    out.update(cfg.model.options)
    out.update(cfg.data.options)
    return out


def result_keys(values: Mapping[str, Any]) -> set[str]:
    """The keys of a flat config (a RunConfig's or a config.json's) that can change results.

    Fields marked ``result=False`` and options declared so are left out, and so is anything that is
    neither a field nor an option of the run's backbone or data set (derived entries of config.json).
    """
    keys = {n for n in FIELD_NAMES if n not in NON_RESULT_FIELDS}
    for kind, key in (("model", "backbone"), ("data", "dataset")):
        keys |= {o.name for o in options_of(kind, values.get(key)) if o.result}
    return {k for k in values if k in keys and not (k in NEUTRAL_DEFAULTS and values[k] == NEUTRAL_DEFAULTS[k])}


def names_for_suggestion(dataset: str | None = None, backbone: str | None = None) -> list[str]:
    extra: Iterable[str] = (o.name for kind, n in (("model", backbone), ("data", dataset)) for o in options_of(kind, n))
    return [*FIELD_NAMES, "density", *extra]


RESOLVED = "resolved"  # the key of config.json holding derived facts (device, task classes); not a setting


def saved_settings(saved: Mapping[str, Any]) -> dict[str, Any]:
    """The settings in a saved flat config (a run's config.json): its fields and its backbone's and data
    set's options; derived entries (``resolved``, and ``density`` beside ``sparsity``) are dropped."""
    keys = set(FIELD_NAMES)
    for kind, key in (("model", "backbone"), ("data", "dataset")):
        keys |= {o.name for o in options_of(kind, saved.get(key))}
    out = {k: v for k, v in saved.items() if k in keys}
    if "density" in saved and SPARSITY not in saved:
        out["density"] = saved["density"]
    return out
