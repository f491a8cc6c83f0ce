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
from ..data.similarity import read_similarity
from ..data.tasks import SIMILARITY_ORDERS
from ..errors import ConfigError
from ..sparse.density import density_of, sparsity_of
from ..train.methods import METHODS
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
    values = _with_similarity({**dataset_defaults(dataset), **expand_protocol(values)}, dataset)
    if values.get("method", "dst") == "dst" and values.get("update_frequency") in (0, "0"):
        values["method"] = "static"  # DST without topology updates is static sparse training: one spelling, one id
    if values.get("structure") == "channel" and "free_init" not in values:
        values["free_init"] = "kaiming"  # the structured default (see SparseConfig.validate)
    if values.get("reuse") == "off" and "free_init" not in values:
        values["free_init"] = "kaiming"  # without reuse, zero starts leave a task no signal (SparseConfig.validate)
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


def _with_similarity(values: dict[str, Any], dataset: str) -> dict[str, Any]:
    """Orders built from a class similarity: the file's digest joins the settings (a run's id holds the
    matrix, not the path) and its path is made absolute (a sweep's runs start elsewhere). Other orders read
    no file, so a similarity given to them is not part of their id. A recorded run whose file is gone keeps
    its digest (its id); only training it again needs the file (``DataSettings.class_similarity``)."""
    order = values.get("class_order", SECTIONS["data"].class_order)
    if not isinstance(order, str) or order not in SIMILARITY_ORDERS:  # a bad value is reported by its field check
        return {**values, "similarity_digest": None}
    path, digest = values.get("similarity"), values.get("similarity_digest")
    if path is None:
        raise ConfigError(f"class order {order} builds its tasks from a class similarity; give --similarity FILE "
                          f"(write it with dstcl similarity {dataset} -o FILE; docs/similarity.md).")
    file = Path(str(path)).expanduser()
    if not file.is_file() and digest is not None:
        return values
    found = read_similarity(file)
    if digest is not None and digest != found.digest:
        raise ConfigError(f"similarity file {file} has changed: its classes and matrix have digest {found.digest}, "
                          f"but the configuration records {digest}. Restore the file the run used, or drop "
                          "similarity_digest to set up a new run with the file as it is now.")
    if found.dataset is not None and found.dataset != dataset:
        raise ConfigError(f"similarity file {file} was measured on {found.dataset}, but this run uses {dataset}; "
                          f"measure it on {dataset} (dstcl similarity {dataset} -o FILE) or choose the matching file.")
    needed = values.get("num_classes") or dataset_classes(dataset)
    if needed is not None and isinstance(needed, int) and len(found.class_names) < needed:
        raise ConfigError(f"similarity file {file} covers {len(found.class_names)} classes, but this run uses "
                          f"{needed}; measure it on all of them (dstcl similarity without --num-classes).")
    return {**values, "similarity": str(file.resolve()), "similarity_digest": found.digest}


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
    if data.class_order in SIMILARITY_ORDERS and data.similarity_digest is None:
        raise ConfigError(f"class order {data.class_order} needs the similarity file's digest in the configuration "
                          "(its run id); build the configuration with dstcl.config.resolve or from_flat, which read "
                          "--similarity and record it.")
    if cfg.sparse.reuse == "off" and not METHODS.get(train.method).sparse:
        raise ConfigError(f"--reuse off keeps each task's sparse subnetwork off earlier tasks' weights; method "
                          f"{train.method!r} trains a dense network, so there is nothing to restrict. Drop --reuse off, "
                          "or use --method dst or static.")
    return cfg


def _check_gathered_training(cfg: RunConfig) -> None:
    """Gathered channel training computes only live channels (dstcl/train/gathered.py): what it needs."""
    problem = None
    if cfg.sparse.structure != "channel":
        problem = "it needs channel-structured subnetworks (--structure channel)"
    elif cfg.train.method not in ("dst", "static"):
        problem = (f"it runs the sparse learner of --method dst and static only, not --method {cfg.train.method}"
                   + (" (a dense network has no inactive channels to skip)" if cfg.train.method in
                      ("finetune", "joint", "separate") else ""))
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


