"""From defaults, a data set, a preset, a config file and flags to one validated ``RunConfig``.

Precedence, lowest first: built-in defaults < the data set's defaults < ``--preset`` < ``--config``
file < command-line flags. :func:`validate` is the one function that checks a resolved config (field
types, ranges and choices by their declarations, registry membership, cross-field rules); the CLI,
config files, grid files and the library all reach it through :func:`resolve`.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Mapping

from ..data import DATASETS, dataset_classes, dataset_defaults
from ..errors import ConfigError
from ..sparse.density import density_of, sparsity_of
from ..train.precision import resolve_precision
from ..yamlfile import read_config_file
from .protocol import expand_protocol
from .fields import (FIELD_NAMES, FLAT, RESOLVED, SPARSITY, check_field, names_for_suggestion, option_owners,
                     route_options)
from .runconfig import RunConfig
from .sections import DEVICE_PATTERN, SECTIONS

# The settings of the paper (the reference code's README): epochs per task and update frequency.
PRESETS: dict[str, dict[str, Any]] = {
    "cifar100-5": {"dataset": "cifar100", "tasks": 5, "backbone": "resnet18", "epochs": 100, "update_frequency": 100, "batch_size": 64},
    "cifar100-10": {"dataset": "cifar100", "tasks": 10, "backbone": "resnet18", "epochs": 100, "update_frequency": 400, "batch_size": 64},
    "cifar100-20": {"dataset": "cifar100", "tasks": 20, "backbone": "resnet18", "epochs": 25, "update_frequency": 100, "batch_size": 64},
    "miniimagenet-10": {"dataset": "miniimagenet", "tasks": 10, "backbone": "resnet18", "epochs": 100, "update_frequency": 400, "batch_size": 128, "image_size": 32},
}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file into a dict of flat settings (unknown keys are caught by resolve)."""
    data = read_config_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value, not {type(data).__name__}.")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    data.pop(RESOLVED, None)  # a run's config.json: derived facts, not settings
    return data


def resolve(
    flags: Mapping[str, Any] | None = None,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
) -> RunConfig:
    """Merge defaults, data-set defaults, preset, config file and flags (given ones only) and validate."""
    layers: list[tuple[str, dict[str, Any]]] = []
    if preset is not None:
        if preset not in PRESETS:
            close = difflib.get_close_matches(str(preset), list(PRESETS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"unknown preset {preset!r}{hint}; valid: {', '.join(PRESETS)}.")
        layers.append((f"preset {preset}", dict(PRESETS[preset])))
    if config_file is not None:
        layers.append((f"config file {config_file}", load_config_file(config_file)))
    layers.append(("the command line", {k: v for k, v in (flags or {}).items() if v is not None}))
    merged: dict[str, Any] = {}
    for where, layer in layers:
        layer = expand_protocol(layer)  # a later layer's protocol overrides an earlier layer's switches
        if "density" in layer:  # convenience: density instead of sparsity
            if SPARSITY in layer:
                raise ConfigError(f"{where} gives both sparsity and density; give one (density = 1 - sparsity).")
            layer = dict(layer)
            layer[SPARSITY] = _sparsity_from_density(layer.pop("density"))
        merged.update(layer)
    return from_flat(merged)


def _sparsity_from_density(density: Any) -> float:
    from ..registry import coerce_scalar

    return sparsity_of(coerce_scalar(density, float, "density"))


def from_flat(values: Mapping[str, Any]) -> RunConfig:
    """A validated RunConfig from flat settings on top of the data set's defaults."""
    dataset = values.get("dataset", SECTIONS["data"].dataset)
    if dataset not in DATASETS:
        raise ConfigError(DATASETS.unknown(dataset))
    values = {**dataset_defaults(dataset), **expand_protocol(values)}
    if values.get("method", "dst") == "dst" and values.get("update_frequency") in (0, "0"):
        values["method"] = "static"  # DST without topology updates is static sparse training: one spelling, one id
    if values.get("structure") == "channel" and "free_init" not in values:
        values["free_init"] = "kaiming"  # the structured default (see SparseConfig.validate)
    backbone = values.get("backbone")
    if backbone is None:
        raise ConfigError(f"data set {dataset} names no default backbone; choose one with --backbone.")
    check_field("backbone", backbone)
    model_options, data_options, unknown = route_options(values, dataset, backbone)
    if unknown:
        key = unknown[0]
        owners = option_owners(key)
        if owners:
            raise ConfigError(f"{key} is an option of {' and '.join(owners)}, not of this run's backbone ({backbone}) "
                              f"or data set ({dataset}); drop it, or choose a backbone or data set that takes it.")
        names = names_for_suggestion(dataset, backbone)
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown setting {key!r}{hint}: it is not a run setting nor an option of backbone "
                          f"{backbone} or data set {dataset}; valid: {', '.join(names)}.")
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key in FIELD_NAMES:
        if key not in values:
            continue
        value = check_field(key, values[key])
        if key == SPARSITY:
            sections["sparse"]["density"] = density_of(value)
        else:
            sections[FLAT[key][0]][key] = value
    sections["data"]["options"] = data_options
    sections["model"]["options"] = model_options
    train = sections["train"]
    device = sections["run"].get("device", SECTIONS["run"].device)
    if re.fullmatch(DEVICE_PATTERN, str(device)):  # a bad device is reported by validate
        train["precision"] = resolve_precision(train.get("precision", SECTIONS["train"].precision), device)
    cfg = RunConfig(**{name: SECTIONS[name](**kwargs) for name, kwargs in sections.items()})
    return validate(cfg)


def validate(cfg: RunConfig) -> RunConfig:
    """Check a resolved config: every declared field, then the rules that involve several fields."""
    cfg.validate_sections()
    if not re.fullmatch(DEVICE_PATTERN, cfg.run.device):
        raise ConfigError(f"device must be auto, cpu, mps, cuda or cuda:N; got {cfg.run.device!r}.")
    data = cfg.data
    total = dataset_classes(data.dataset)
    if total is not None and data.num_classes is not None and data.num_classes > total:
        raise ConfigError(f"num_classes must be at most {total} for {data.dataset}, got {data.num_classes}.")
    classes = data.num_classes or total
    if classes is not None and classes % data.tasks:
        divisors = [t for t in range(1, classes + 1) if classes % t == 0]
        raise ConfigError(
            f"tasks must divide the {classes} classes of {data.dataset}{' used' if data.num_classes else ''}, "
            f"got {data.tasks}; valid task counts: {', '.join(map(str, divisors))}."
        )
    train = cfg.train
    if train.optimizer == "sgd" and train.momentum == 0 and cfg.sparse.needs("momentum", data.tasks):
        raise ConfigError(
            "growth 'momentum' ranks weights by the optimizer's momentum, but sgd with momentum 0 keeps none; "
            "use --momentum > 0, --optimizer adam, or another growth criterion."
        )
    if train.channel_training == "gathered":
        _check_gathered_training(cfg)
    return cfg


def _check_gathered_training(cfg: RunConfig) -> None:
    """Gathered channel training computes only live channels (dstcl/train/gathered.py): what it needs."""
    problem = None
    if cfg.sparse.structure != "channel":
        problem = "it needs channel-structured subnetworks (--structure channel)"
    elif cfg.train.method not in ("dst", "static"):
        problem = f"method {cfg.train.method!r} trains a dense network, which has no inactive channels to skip"
    elif cfg.model.bn != "batch":
        problem = "it supports batch-statistics BatchNorm only (--bn batch)"
    elif cfg.sparse.reads("momentum", cfg.data.tasks):
        problem = ("growth that reads the optimizer momentum of inactive weights (momentum, auto) needs the dense "
                   "gradient at every step, which gathered training does not compute")
    if problem:
        raise ConfigError(f"--channel-training gathered: {problem}. Use --channel-training masked (the default), "
                          "or change the setting named.")


def replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    """``cfg`` with some flat settings changed, resolved and validated again."""
    return from_flat({**cfg.flat(), **changes})


