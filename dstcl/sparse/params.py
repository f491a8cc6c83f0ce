"""Which weights the masks cover, and which classifier rows each task owns.

One definition of a *prunable* weight for the whole package: every Conv and Linear weight, stem and
classifier included (the paper's backbones have no biases and no learned BatchNorm parameters, so
these are all their trainable state; other models' biases and norm parameters are kept per task:
:mod:`dstcl.sparse.copies`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

from torch import nn

from ..errors import ConfigError

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def prunable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every Conv and Linear weight of ``model``, in module order (stem and classifier included)."""
    return [(f"{name}.weight" if name else "weight", module.weight)
            for name, module in model.named_modules() if isinstance(module, PRUNABLE)]


def check_heads(
    heads: Mapping[str, Sequence[slice]], params: Mapping[str, nn.Parameter], num_tasks: int | None
) -> dict[str, list[slice]]:
    """Validate ``heads`` (layer name -> the output rows of each task) against the prunable weights."""
    checked = {}
    for name, rows in heads.items():
        if name not in params:
            raise ConfigError(f"heads names {name!r}, which is not a prunable weight; valid: {', '.join(params)}.")
        rows = list(rows)
        n = params[name].shape[0]
        if num_tasks is not None and len(rows) < num_tasks:
            raise ConfigError(f"heads[{name!r}] gives rows for {len(rows)} tasks, but the sequence has {num_tasks}.")
        for task, part in enumerate(rows):
            if not isinstance(part, slice) or len(range(n)[part]) == 0:
                raise ConfigError(f"heads[{name!r}][{task}] must be a non-empty slice of the {n} output rows, got {part!r}.")
        checked[name] = rows
    return checked
