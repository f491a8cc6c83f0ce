"""Layer-wise density allocation: pure functions from layer shapes to active-weight counts.

Two rules from the DST literature:

* ``uniform``: every layer gets the overall density.
* ``erk`` (Erdős–Rényi-Kernel, Evci et al. 2020): a layer's density is proportional to
  ``(sum(shape) / prod(shape)) ** power_scale``, so small (narrow) layers stay denser. A layer
  whose density would exceed 1 is made dense and the scale is solved again over the others, as in
  RigL's ``sparse_utils``.

Counts are integers that sum to exactly ``round(density * total)`` (largest-remainder rounding),
and every layer keeps at least one weight so no layer is cut off entirely; weights for such a layer
are taken from the layers most above their exact share. The only case where the total cannot be
exact is a target smaller than the number of layers (a density below ``layers / total``): then every
layer gets one weight and the total is the number of layers.

``DENSITY_RULES`` is the registry behind ``--init``; a rule is ``rule(shapes, density, **options)``.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Mapping, Sequence

from ..errors import ConfigError
from ..registry import Registry

Shapes = Mapping[str, Sequence[int]]


def check_density(density: float) -> float:
    """Return ``density`` as a float, or raise a ConfigError when it is outside (0, 1]."""
    try:
        value = float(density)
    except (TypeError, ValueError):
        raise ConfigError(f"density must be a number in (0, 1], got {density!r}.") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ConfigError(
            f"density must be in (0, 1] (density = 1 - sparsity), got {density!r}; "
            "for 90 % sparsity use density 0.1."
        )
    return value


def density_of(sparsity: float) -> float:
    """The density a sparsity means (``1 - sparsity``, rounded so 0.8 gives exactly 0.2): the one conversion."""
    return round(1.0 - float(sparsity), 12)


def sparsity_of(density: float) -> float:
    """The sparsity a density means, after :func:`check_density` (0.2 gives exactly 0.8)."""
    return round(1.0 - check_density(density), 12)


def uniform_densities(shapes: Shapes, density: float) -> dict[str, float]:
    """Every layer gets the same density."""
    density = check_density(density)
    return {name: density for name in shapes}


def erk_densities(shapes: Shapes, density: float, power_scale: float = 1.0) -> dict[str, float]:
    """Erdős–Rényi-Kernel densities with RigL's capping of layers that would exceed density 1.

    Solves ``eps * sum_l raw_l * n_l = density * N - sum_{dense} n_l`` for the non-dense layers,
    making the layer(s) with the largest raw probability dense whenever ``eps * raw_l > 1``.
    """
    density = check_density(density)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    raw = {name: (sum(shape) / sizes[name]) ** power_scale for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        rhs = density * sum(sizes.values()) - sum(sizes[n] for n in dense)
        divisor = sum(raw[n] * sizes[n] for n in shapes if n not in dense)
        if divisor <= 0:  # every layer is dense
            return {name: 1.0 for name in shapes}
        eps = rhs / divisor
        over = [n for n in shapes if n not in dense and eps * raw[n] > 1.0]
        if not over:
            break
        top = max(raw[n] for n in over)
        dense.update(n for n in over if raw[n] == top)
    return {name: 1.0 if name in dense else eps * raw[name] for name in shapes}


DensityRule = Callable[..., dict[str, float]]
DENSITY_RULES: Registry[DensityRule] = Registry("sparse initialisation (density rule)")
DENSITY_RULES.register("uniform", uniform_densities, help="every layer at the overall density")
DENSITY_RULES.register("erk", erk_densities, help="Erdős–Rényi-Kernel: narrow layers denser")


def layer_densities(shapes: Shapes, density: float, rule: str = "erk", **options: float) -> dict[str, float]:
    """Per-layer densities by rule name (``uniform``, ``erk`` or a registered rule).

    ``options`` go to rules that take them (``power_scale`` for ERK) and are ignored by the others.
    """
    fn = DENSITY_RULES.get(str(rule).lower())
    accepted = inspect.signature(fn).parameters
    return fn(shapes, density, **{k: v for k, v in options.items() if k in accepted})


def densities_to_counts(shapes: Shapes, densities: Mapping[str, float], density: float) -> dict[str, int]:
    """Integer active counts per layer summing to ``round(density * total)`` (see the module doc).

    Largest-remainder rounding of ``densities[l] * n_l``; dense layers stay dense, no layer gets more
    than ``n_l`` or fewer than 1 weight.
    """
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    target = round(check_density(density) * sum(sizes.values()))
    exact = {n: min(densities[n], 1.0) * sizes[n] for n in shapes}
    counts = {n: max(1, min(int(math.floor(exact[n])), sizes[n])) for n in shapes}
    remaining = target - sum(counts.values())
    # remainders rounded so that 0.3 and 1 - 0.7 break ties the same way; names break exact ties
    if remaining > 0:
        order = sorted((n for n in shapes if counts[n] < sizes[n]),
                       key=lambda n: (-round(exact[n] - counts[n], 9), n))
        for name in order[:remaining]:
            counts[name] += 1
    while remaining < 0:  # layers lifted to one weight pushed the total over: take from the most over-served
        donors = sorted((n for n in shapes if counts[n] > 1), key=lambda n: (-round(counts[n] - exact[n], 9), n))
        if not donors:
            break  # target below the number of layers: one weight each (documented)
        for name in donors[:-remaining]:
            counts[name] -= 1
            remaining += 1
    return counts


def layer_counts(shapes: Shapes, density: float, rule: str = "erk", **options: float) -> dict[str, int]:
    """Active-weight count per layer for an overall ``density`` under ``rule``."""
    return densities_to_counts(shapes, layer_densities(shapes, density, rule, **options), density)
