"""Paired verdicts over seeds: "A beats B" holds, does not hold, or is inconclusive; pure functions.

For a comparison, the paired differences ``d_s = A_s - B_s`` over seeds (same seed: same class order,
batches and initial weights), their mean, and Student's t with ``n - 1`` degrees of freedom:

* :func:`paired_test` — the one-sided p-value of "A beats B" and of "B beats A";
* :func:`verdict` — *holds* when A beats B at level ``alpha``, *does not hold* when the opposite is
  significant, *inconclusive* otherwise (one seed never decides);
* :func:`holm` — Holm's step-down correction over the m comparisons that make up one claim, so that a
  claim tested in several cells is not called true by the luck of one of them;
* :func:`interval` — the two-sided confidence interval of the mean difference.

The t distribution is computed here (the regularised incomplete beta function, Lentz's continued
fraction), so no statistics package is needed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Paired:
    """The paired differences of one comparison and what they say."""

    diffs: tuple[float, ...]
    mean: float
    t: float  # nan with fewer than 2 differences
    p_greater: float  # one-sided p of "A beats B" (mean > 0)
    p_less: float  # one-sided p of "B beats A"

    @property
    def n(self) -> int:
        return len(self.diffs)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 3e-16:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf(t: float, df: int) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return tail if t > 0 else 1.0 - tail


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t (bisection on :func:`t_sf`; q in (0.5, 1))."""
    low, high = 0.0, 1e3
    for _ in range(200):
        mid = (low + high) / 2
        if t_sf(mid, df) > 1.0 - q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def paired_test(diffs: Sequence[float]) -> Paired:
    diffs = tuple(float(d) for d in diffs)
    mean = statistics.mean(diffs) if diffs else math.nan
    if len(diffs) < 2:
        return Paired(diffs, mean, math.nan, math.nan, math.nan)
    sd = statistics.stdev(diffs)
    if sd == 0:
        t = math.copysign(math.inf, mean) if mean != 0 else 0.0
    else:
        t = mean / (sd / math.sqrt(len(diffs)))
    df = len(diffs) - 1
    return Paired(diffs, mean, t, t_sf(t, df), t_sf(-t, df))


def verdict(test: Paired, alpha: float = 0.05) -> str:
    """holds / does not hold / inconclusive for "A beats B" at one-sided level ``alpha``."""
    if test.n < 2:
        return "inconclusive"
    if test.p_greater <= alpha:
        return "holds"
    if test.p_less <= alpha:
        return "does not hold"
    return "inconclusive"


def holm(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Which hypotheses Holm's step-down procedure rejects (family-wise error at most ``alpha``)."""
    order = sorted(range(len(p_values)), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    rejected = [False] * len(p_values)
    m = len(p_values)
    for rank, i in enumerate(order):
        p = p_values[i]
        if math.isnan(p) or p > alpha / (m - rank):
            break
        rejected[i] = True
    return rejected


def holm_verdicts(tests: Sequence[Paired], alpha: float = 0.05) -> list[str]:
    """Each comparison's verdict with Holm's correction over the family: a comparison is decided (in the
    direction its mean points) when its one-sided p-value in that direction survives Holm at ``alpha``."""
    ps = [min(t.p_greater, t.p_less) if t.n >= 2 else math.nan for t in tests]
    rejected = holm(ps, alpha)
    out = []
    for test, reject in zip(tests, rejected):
        if not reject:
            out.append("inconclusive")
        else:
            out.append("holds" if test.mean > 0 else "does not hold")
    return out


def interval(test: Paired, level: float = 0.95) -> tuple[float, float] | None:
    """The two-sided ``level`` confidence interval of the mean paired difference (None below 2 seeds)."""
    if test.n < 2:
        return None
    sd = statistics.stdev(test.diffs)
    half = t_quantile(0.5 + level / 2, test.n - 1) * sd / math.sqrt(test.n)
    return (test.mean - half, test.mean + half)
