"""The configuration of a run: defaults, the paper's presets, YAML files, and validation.

Precedence, lowest first: built-in defaults < dataset defaults < ``--preset`` < ``--config`` file <
command-line flags. The resolved configuration is written to the run's ``config.json``; it can be
passed back with ``--config`` to repeat the run.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError


@dataclass(frozen=True)
class RunConfig:
    # data
    dataset: str = "digits"
    data_dir: str | None = None
    tasks: int = 5
    class_order: str = "sequential"  # sequential | random (seeded permutation)
    num_classes: int | None = None  # use only the first N classes of the data set
    image_size: int | None = None  # miniImageNet: 32 (the reference) or 84
    split: str = "first500"  # miniImageNet train/test: first 500 sorted files per class train | seeded random
    download: bool = True
    # backbone
    backbone: str | None = None  # None: the data set's default
    width: int | None = None  # resnet18 base channels (64; 20 = "reduced ResNet-18")
    stem: str | None = None  # resnet18: imagenet (7x7/2, the reference) | cifar (3x3/1)
    bn: str = "batch"  # batch statistics (the paper) | task (per-task running statistics)
    # dynamic sparse training
    init: str = "erk"
    growth: str = "random"
    sparsity: float = 0.8
    drop: str = "magnitude"
    drop_rate: float = 0.5
    drop_schedule: str = "cosine"
    update_frequency: int | None = None
    free_init: str = "zero"
    # optimisation
    epochs: int | None = None
    batch_size: int | None = None
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    # run
    seed: int = 0
    device: str = "auto"
    out: str = "runs"
    progress: bool = True
    checkpoint_budget: float = 0.02  # max share of time spent writing epoch checkpoints (1 = every epoch)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def density(self) -> float:
        return round(1.0 - self.sparsity, 12)


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"backbone": "cnn", "epochs": 20, "batch_size": 32, "update_frequency": 10},
    "cifar10": {"backbone": "resnet18", "epochs": 100, "batch_size": 64, "update_frequency": 100},
    "cifar100": {"backbone": "resnet18", "epochs": 100, "batch_size": 64, "update_frequency": 100},
    "miniimagenet": {"backbone": "resnet18", "epochs": 100, "batch_size": 128, "update_frequency": 400, "image_size": 32},
}

# The settings of the paper (the reference code's README): epochs per task and update frequency.
PRESETS: dict[str, dict[str, Any]] = {
    "cifar100-5": {"dataset": "cifar100", "tasks": 5, "backbone": "resnet18", "epochs": 100, "update_frequency": 100, "batch_size": 64},
    "cifar100-10": {"dataset": "cifar100", "tasks": 10, "backbone": "resnet18", "epochs": 100, "update_frequency": 400, "batch_size": 64},
    "cifar100-20": {"dataset": "cifar100", "tasks": 20, "backbone": "resnet18", "epochs": 25, "update_frequency": 100, "batch_size": 64},
    "miniimagenet-10": {"dataset": "miniimagenet", "tasks": 10, "backbone": "resnet18", "epochs": 100, "update_frequency": 400, "batch_size": 128, "image_size": 32},
}

MAX_WIDTH = 1024
FLOAT32_LIMIT = 1e38  # larger step sizes overflow float32 inside the optimizer

FIELD_NAMES = [f.name for f in fields(RunConfig)]
CHOICES = {
    "class_order": ("sequential", "random"),
    "bn": ("batch", "task"),
    "init": ("erk", "uniform"),
    "drop_schedule": ("cosine", "constant"),
    "free_init": ("zero", "kaiming"),
    "optimizer": ("adam", "sgd"),
    "stem": ("imagenet", "cifar", None),
    "image_size": (32, 84, None),
    "split": ("first500", "random"),
}

# Classes of each built-in data set: tasks must divide them, checked before any data is read.
CLASS_COUNTS = {"digits": 10, "cifar10": 10, "cifar100": 100, "miniimagenet": 100}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (or JSON) config file into a dict of known fields."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of field: value, not {type(data).__name__}.")
    data = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = [k for k in data if k not in FIELD_NAMES and k != "density"]
    if unknown:
        raise ConfigError(
            f"config file {path} has unknown field {unknown[0]!r}; valid fields: {', '.join(FIELD_NAMES)}."
        )
    return data


def resolve(
    flags: Mapping[str, Any] | None = None,
    *,
    preset: str | None = None,
    config_file: str | Path | None = None,
) -> RunConfig:
    """Merge defaults, dataset defaults, preset, config file and flags (given ones only) and validate."""
    layers: list[dict[str, Any]] = []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}.")
        layers.append(dict(PRESETS[preset]))
    if config_file is not None:
        layers.append(load_config_file(config_file))
    layers.append({k: v for k, v in (flags or {}).items() if v is not None})
    merged: dict[str, Any] = {}
    for layer in layers:
        if "density" in layer:  # convenience: density instead of sparsity
            layer = dict(layer)
            layer["sparsity"] = 1 - _number("density", layer.pop("density"))
        merged.update(layer)
    dataset = merged.get("dataset", RunConfig.dataset)
    base = DATASET_DEFAULTS.get(str(dataset), {})
    values = {**{k: v for k, v in base.items()}, **merged}
    unknown = [k for k in values if k not in FIELD_NAMES]
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; valid: {', '.join(FIELD_NAMES)}.")
    return validate(_coerce(values))


def _coerce(values: dict[str, Any]) -> RunConfig:
    types = {f.name: f.type for f in fields(RunConfig)}
    out: dict[str, Any] = {}
    for name, value in values.items():
        kind = str(types[name])
        if value is None:
            if "None" not in kind:
                raise ConfigError(f"{name} needs a value (got an empty one); default: {getattr(RunConfig, name)!r}.")
            out[name] = None
        elif kind.startswith("int"):
            out[name] = _integer(name, value)
        elif kind.startswith("float"):
            out[name] = _number(name, value)
        elif kind.startswith("bool"):
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false, got {value!r}.")
            out[name] = value
        else:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ConfigError(f"{name} must be a string, got {value!r}.")
            out[name] = str(value)
    return RunConfig(**out)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{name} must be an integer, got {value!r}.")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}.")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float range
        shown = str(value)
        raise ConfigError(f"{name} must be a number in the range of a float, got "
                          f"{shown[:24] + '...' if len(shown) > 24 else shown}.") from None
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}.") from None
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {value!r}.")
    return number


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field; raise a ConfigError naming the field, the value and what is accepted."""
    from .data import DATASETS
    from .models import MODELS
    from .sparse import SparseConfig

    if cfg.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {cfg.dataset!r}; valid: {', '.join(sorted(DATASETS))}.")
    if cfg.backbone is not None and cfg.backbone not in MODELS:
        raise ConfigError(f"unknown backbone {cfg.backbone!r}; valid: {', '.join(sorted(MODELS))}.")
    for name, choices in CHOICES.items():
        value = getattr(cfg, name)
        if value not in choices:
            shown = ", ".join(str(c) for c in choices if c is not None)
            raise ConfigError(f"{name} must be one of {shown}; got {value!r}.")
    positive = {"tasks": cfg.tasks, "epochs": cfg.epochs, "batch_size": cfg.batch_size,
                "update_frequency": cfg.update_frequency, "width": cfg.width, "num_classes": cfg.num_classes}
    for name, value in positive.items():
        if value is not None and value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}.")
    if cfg.batch_size is not None and cfg.batch_size < 2:
        raise ConfigError(f"batch_size must be at least 2 (BatchNorm uses batch statistics), got {cfg.batch_size}.")
    if not 0.0 < cfg.checkpoint_budget <= 1.0:
        raise ConfigError(f"checkpoint_budget must be in (0, 1] (0.02 = at most 2 % of the time), got {cfg.checkpoint_budget}.")
    if not 0.0 <= cfg.sparsity < 1.0:
        raise ConfigError(f"sparsity must be in [0, 1) (0.8 = 80 % of weights inactive), got {cfg.sparsity}.")
    if not 0 < cfg.lr <= FLOAT32_LIMIT:
        raise ConfigError(f"lr must be a positive number up to {FLOAT32_LIMIT:g} (float32 range), got {cfg.lr}.")
    if not 0.0 <= cfg.momentum < 1.0:
        raise ConfigError(f"momentum must be in [0, 1), got {cfg.momentum}.")
    if not 0 <= cfg.weight_decay <= FLOAT32_LIMIT:
        raise ConfigError(f"weight_decay must be >= 0 and at most {FLOAT32_LIMIT:g}, got {cfg.weight_decay}.")
    if not 0 <= cfg.seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {cfg.seed}.")
    if cfg.width is not None and cfg.width > MAX_WIDTH:
        raise ConfigError(f"width must be at most {MAX_WIDTH} (64 is the standard ResNet-18), got {cfg.width}.")
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", cfg.device):
        raise ConfigError(f"device must be auto, cpu, mps, cuda or cuda:N; got {cfg.device!r}.")
    total = CLASS_COUNTS.get(cfg.dataset)
    if total is not None and cfg.num_classes is not None and cfg.num_classes > total:
        raise ConfigError(f"num_classes must be at most {total} for {cfg.dataset}, got {cfg.num_classes}.")
    classes = cfg.num_classes or total
    if classes is not None and classes % cfg.tasks:
        divisors = [t for t in range(1, classes + 1) if classes % t == 0]
        raise ConfigError(
            f"tasks must divide the {classes} classes of {cfg.dataset}{' used' if cfg.num_classes else ''}, "
            f"got {cfg.tasks}; valid task counts: {', '.join(map(str, divisors))}."
        )
    if cfg.split != "first500" and cfg.dataset != "miniimagenet":
        raise ConfigError(f"split applies to miniimagenet only; {cfg.dataset} has a fixed train/test split.")
    plan = sparse_config(cfg).validate(cfg.tasks)
    if cfg.optimizer == "sgd" and cfg.momentum == 0 and "momentum" in plan.describe(cfg.tasks):
        raise ConfigError(
            "growth 'momentum' ranks weights by the optimizer's momentum, but sgd with momentum 0 keeps none; "
            "use --momentum > 0, --optimizer adam, or another growth criterion."
        )
    return cfg


def sparse_config(cfg: RunConfig):
    from .sparse import SparseConfig

    return SparseConfig(
        density=cfg.density, init=cfg.init, drop=cfg.drop, growth=cfg.growth, drop_rate=cfg.drop_rate,
        drop_schedule=cfg.drop_schedule, update_frequency=cfg.update_frequency or 100, free_init=cfg.free_init,
    )


def replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    return validate(dataclasses.replace(cfg, **changes))
