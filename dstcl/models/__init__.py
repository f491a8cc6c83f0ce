"""Backbones: the ``MODELS`` registry, ``build_model`` and the classifier lookup.

Every built-in backbone has no biases and no learned BatchNorm parameters, so the sparse masks cover
all trainable state, and its forward returns the logits of *all* classes (the caller slices per task).
A builder is ``builder(num_classes, in_channels=3, image_size=32, *, bn="batch", max_tasks=100,
**its_options) -> nn.Module``; add one with :func:`register_model` (see ``docs/extending.md``). Its
options (``width``, ``stem``, ...) are declared at registration and pass through ``dstcl run`` and
grid files generically (``--width 20`` reaches the backbone that declares ``width``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence, TypeVar

from torch import nn

from ..errors import ConfigError
from ..registry import Option, Registry, options_from_signature
from .alexnet import AlexNetCL, alexnet_cl
from .mobilenet import MobileNetV2, mobilenetv2
from .norm import (BN_MODES, TaskBatchNorm1d, TaskBatchNorm2d, batch_norm, check_bn, reestimate_statistics, set_task,
                   task_norm_state)
from .resnet import STEMS, ResNet, resnet18
from .small import MLP, SmallCNN, cnn, mlp

Builder = Callable[..., nn.Module]
B = TypeVar("B", bound=Builder)

# Arguments build_model always supplies (when the builder takes them); everything else is an option.
STANDARD = ("num_classes", "in_channels", "image_size", "bn", "max_tasks")
MODELS: Registry[Builder] = Registry("backbone", "Add your own with dstcl.models.register_model (docs/extending.md).")


def register_model(name: str, builder: B | None = None, *, options: Sequence[Option] | None = None,
                   help: str | None = None, override: bool = False) -> Any:
    """Register ``builder`` as backbone ``name`` (or use as a decorator).

    ``options`` declare the backbone's own settings; without them they are read from the builder's
    keyword parameters that have a scalar default. A second builder under a taken name is an error
    unless ``override=True``.
    """
    def add(fn: B) -> B:
        declared = tuple(options) if options is not None else options_from_signature(fn, STANDARD)
        return MODELS.register(name, fn, options=declared, help=help, override=override)

    return add if builder is None else add(builder)


register_model("resnet18", resnet18, options=(
    Option("width", int, 64, "base channels (64; 20 = the reduced ResNet-18)", minimum=1, maximum=1024),
    Option("stem", str, "imagenet", "stem: imagenet (7x7 stride 2, the reference) or cifar (3x3 stride 1)",
           choices=STEMS),
), help="ResNet-18 of the reference code")
register_model("mobilenetv2", mobilenetv2, options=(
    Option("width_mult", float, 1.0, "channel multiplier", minimum=1 / 16, maximum=64.0),
), help="MobileNetV2 of the reference code")
register_model("alexnet-cl", alexnet_cl, options=(),
               help="5-layer AlexNet of the GPM and WSN papers (64-128-256 convolutions, 2 x 2048 units)")
register_model("mlp", mlp, options=(
    Option("width", int, None, "size of both hidden layers (unset: 256)", minimum=1, maximum=1 << 16),
), help="two hidden layers, for tiny data")
register_model("cnn", cnn, options=(
    Option("width", int, 32, "channels of the first block (then 2x, 4x)", minimum=1, maximum=4096),
), help="three conv blocks, for tiny data")


def model_options(name: str) -> list[str]:
    """The backbone-specific options ``name`` accepts (beyond the standard arguments)."""
    return [o.name for o in MODELS.entry(name).options]


def build_model(name: str, num_classes: int, in_channels: int = 3, image_size: int = 32, **options: Any) -> nn.Module:
    """Build backbone ``name`` with a bias-free classifier over ``num_classes`` classes.

    ``options`` are the backbone's declared options plus ``bn`` ("batch" or "task") and ``max_tasks``;
    an option the backbone does not declare is a ConfigError naming the ones it does.
    """
    entry = MODELS.entry(name)
    for what, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{what} must be a positive integer, got {value!r}.")
    bn = options.pop("bn", "batch")
    max_tasks = options.pop("max_tasks", 100)
    check_bn(bn, max_tasks)
    unknown = sorted(k for k in options if entry.option(k) is None)
    if unknown:
        valid = model_options(name)
        raise ConfigError(
            f"backbone {name!r} does not take the option(s) {', '.join(unknown)}; its options are: "
            f"{', '.join(valid) if valid else 'none'} (plus bn and max_tasks)."
        )
    checked = {k: entry.option(k).check(v, name) for k, v in options.items()}
    params = inspect.signature(entry.obj).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    kwargs: dict[str, Any] = {}
    for key, value in (("in_channels", in_channels), ("image_size", image_size), ("bn", bn), ("max_tasks", max_tasks)):
        if takes_any or key in params:
            kwargs[key] = value
    if bn != "batch" and not (takes_any or "bn" in params):
        raise ConfigError(f"backbone {name!r} has no per-task BatchNorm option; use bn='batch' with it.")
    model = entry.obj(num_classes, **kwargs, **checked)
    if not isinstance(model, nn.Module):
        raise TypeError(f"the builder of backbone {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


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


__all__ = [
    "AlexNetCL", "BN_MODES", "MLP", "MODELS", "MobileNetV2", "ResNet", "SmallCNN", "TaskBatchNorm1d", "TaskBatchNorm2d",
    "alexnet_cl", "batch_norm", "build_model", "cnn", "mlp", "mobilenetv2", "model_options", "output_weight",
    "reestimate_statistics", "register_model", "resnet18", "set_task", "task_norm_state",
]
