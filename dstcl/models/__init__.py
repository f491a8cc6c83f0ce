"""Backbones: a registry of builders, ``build_model`` and the list of prunable weights.

Every built-in backbone has no biases and no learned BatchNorm parameters, so the sparse masks cover
all trainable state, and its forward returns the logits of *all* classes (the caller slices per task).
A builder is ``builder(num_classes, in_channels=3, image_size=32, *, bn="batch", max_tasks=100,
**its_options) -> nn.Module``; add one with :func:`register_model` (see ``docs/models.md``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, TypeVar

from torch import nn

from ..errors import ConfigError
from .mobilenet import MobileNetV2, mobilenetv2
from .norm import BN_MODES, TaskBatchNorm1d, TaskBatchNorm2d, batch_norm, check_bn, set_task
from .resnet import ResNet, resnet18
from .small import MLP, SmallCNN, cnn, mlp

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

MODELS: dict[str, Builder] = {
    "resnet18": resnet18,
    "mobilenetv2": mobilenetv2,
    "mlp": mlp,
    "cnn": cnn,
}

# Arguments build_model always supplies (when the builder takes them); everything else is an option.
_STANDARD = ("num_classes", "in_channels", "image_size", "bn", "max_tasks")


def register_model(name: str, *, override: bool = False) -> Callable[[B], B]:
    """Decorator adding a builder to :data:`MODELS` under ``name``.

    Registering a second builder under an existing name is an error unless ``override=True``, so two
    plugins cannot silently replace each other.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"a backbone name must be a non-empty string, got {name!r}.")

    def decorator(builder: B) -> B:
        if name in MODELS and MODELS[name] is not builder and not override:
            raise ConfigError(f"a backbone named {name!r} is already registered; choose another name or "
                              f"pass override=True to replace it.")
        MODELS[name] = builder
        return builder

    return decorator


def model_options(name: str) -> list[str]:
    """The backbone-specific options ``name`` accepts (beyond the standard arguments)."""
    params = inspect.signature(_lookup(name)).parameters.values()
    return [p.name for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in _STANDARD]


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **options: Any) -> nn.Module:
    """Build backbone ``name`` with a bias-free classifier over ``num_classes`` classes.

    ``options`` are backbone-specific (``width``, ``stem`` for resnet18; ``width_mult`` for
    mobilenetv2; ``hidden``, ``width`` for mlp; ``width`` for cnn) plus ``bn`` ("batch" or "task") and
    ``max_tasks``. An option the backbone does not take is a ConfigError naming the ones it does.
    """
    builder = _lookup(name)
    for what, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} must be a positive integer, got {value!r}.")
    bn = options.pop("bn", "batch")
    max_tasks = options.pop("max_tasks", 100)
    check_bn(bn, max_tasks)

    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepts = lambda key: takes_any or key in params  # noqa: E731
    unknown = sorted(k for k in options if not accepts(k) or k in _STANDARD)
    if unknown:
        valid = model_options(name)
        raise ConfigError(
            f"backbone {name!r} does not take the option(s) {', '.join(unknown)}; its options are: "
            f"{', '.join(valid) if valid else 'none'} (plus bn and max_tasks)."
        )
    kwargs: dict[str, Any] = {}
    for key, value in (("in_channels", in_channels), ("image_size", image_size), ("bn", bn), ("max_tasks", max_tasks)):
        if accepts(key):
            kwargs[key] = value
    if bn != "batch" and not accepts("bn"):
        raise ConfigError(f"backbone {name!r} has no per-task BatchNorm option; use bn='batch' with it.")
    model = builder(num_classes, **kwargs, **options)
    if not isinstance(model, nn.Module):
        raise TypeError(f"the builder of backbone {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def prunable_weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every Conv and Linear weight of ``model`` in module order, stem and classifier included.

    These are the tensors the sparse masks cover; for the built-in backbones they are *all* the
    parameters of the model.
    """
    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            found.append((f"{module_name}.weight" if module_name else "weight", module.weight))
    return found


def output_weight(model: nn.Module, num_classes: int) -> str:
    """The name of the classifier weight: the last Linear layer, which must score ``num_classes`` classes.

    The sparse learner splits its rows among tasks (task t owns only the rows of its classes).
    """
    linears = [(f"{n}.weight" if n else "weight", m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(f"the network has no Linear layer; its last layer must be a Linear classifier over the "
                          f"{num_classes} classes.")
    name, last = linears[-1]
    if last.out_features != num_classes:
        raise ConfigError(f"the network's last Linear layer ({name}) has {last.out_features} outputs; it must be the "
                          f"classifier over the {num_classes} classes.")
    return name


def _lookup(name: str) -> Builder:
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(sorted(MODELS))}. "
                          f"Add your own with dstcl.models.register_model.")
    return MODELS[name]


__all__ = [
    "BN_MODES", "MLP", "MODELS", "MobileNetV2", "ResNet", "SmallCNN", "TaskBatchNorm1d", "TaskBatchNorm2d",
    "batch_norm", "build_model", "cnn", "mlp", "mobilenetv2", "model_options", "output_weight", "prunable_weights",
    "register_model", "resnet18", "set_task",
]
