"""The budget axis of docs/results.md: each claim's paired difference against the epochs per task.

    python scripts/budget_page.py [--data docs/results/budget-axis] [--fixed docs/results/data]
                                  [--out docs/results] [--page docs/results.md]

Reads every completed run under ``--data`` (grids/study/budget-axis.yaml: drawn class orders), groups
them by budget (epochs per task) and configuration, and writes the part of ``--page`` between
``<!-- generated budget -->`` and ``<!-- end generated budget -->``: per claim, the paired difference at
each budget (mean over seeds, 95 % interval with 3 or more seeds, one-sided t-test, and Holm's
correction over the claim's budgets), each budget's regime, a generated sentence per claim and regime,
and one figure per claim (``--out/budget_<claim>.png``). The study's fixed-order runs (``--fixed``,
classes 0-9 for task 0 and so on) are set beside the 6-epoch point: how much the class order alone
moves each comparison.

Regime of a budget (from its runs' own measurements, all configurations pooled): the training accuracy
over each task's last epoch (augmented images, ``task_end`` events) against the test accuracy right
after learning the task (the diagonal of R). **underfitting**: training within 5 points of test;
**fitting**: 5 to 20 points above test and below 95 %; **converged**: training at 95 % or more, or 20
points or more above test (the training set is memorised).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from pathlib import Path
from typing import Any

from dstcl.report import collect
from dstcl.report.verdicts import Paired, holm_verdicts, interval, paired_test, verdict
from dstcl.run.rundir import read_events

BEGIN, END = "<!-- generated budget -->", "<!-- end generated budget -->"
ERK80, UNI80 = ("dst", "erk", "random", 0.8), ("dst", "uniform", "random", 0.8)
ERK95, UNI95 = ("dst", "erk", "random", 0.95), ("dst", "uniform", "random", 0.95)
GRAD80, GRAD95 = ("dst", "erk", "gradient", 0.8), ("dst", "erk", "gradient", 0.95)
STATIC80, ADAPTIVE80 = ("static", "erk", "random", 0.8), ("dst", "erk", "random@0-4,gradient", 0.8)
# (slug, claim as "A beats B", A, B)
CLAIMS = [
    ("c1", "C1: ERK beats uniform at 80 % sparsity", ERK80, UNI80),
    ("c2", "C2: uniform beats ERK at 95 % sparsity", UNI95, ERK95),
    ("c3-80", "C3: gradient growth beats random growth at 80 % (ERK)", GRAD80, ERK80),
    ("c3-95", "C3: gradient growth beats random growth at 95 % (ERK)", GRAD95, ERK95),
    ("static", "DST beats static sparse training at 80 % (ERK, random growth)", ERK80, STATIC80),
    ("c4", "C4: adaptive growth (random for tasks 0-4, then gradient) beats random growth (ERK, 80 %)",
     ADAPTIVE80, ERK80),
]


SHORT = {"c1": "C1 (ERK − uniform, 80 %)", "c2": "C2 (uniform − ERK, 95 %)", "c3-80": "C3 at 80 % (gradient − random)",
         "c3-95": "C3 at 95 % (gradient − random)", "static": "DST − static (80 %)", "c4": "C4 (adaptive − random)"}


def key_of(config: dict) -> tuple:
    return (config.get("method", "dst"), config.get("init"), str(config.get("growth")), float(config.get("sparsity")))


def load(folder: Path) -> dict[tuple, dict[int, Any]]:
    """Completed runs by (epochs, configuration), then by seed."""
    runs: dict[tuple, dict[int, Any]] = {}
    if not folder.is_dir():
        return runs
    for record in collect([folder]).completed:
        runs.setdefault((int(record.config["epochs"]), key_of(record.config)), {})[int(record.config["seed"])] = record
    return runs


def comparison(runs: dict, epochs: int, a: tuple, b: tuple) -> Paired | None:
    ra, rb = runs.get((epochs, a), {}), runs.get((epochs, b), {})
    seeds = sorted(set(ra) & set(rb))
    if not seeds:
        return None
    return paired_test([float(ra[s].metrics["acc"]) - float(rb[s].metrics["acc"]) for s in seeds])


def train_and_test(record: Any) -> tuple[list[float], list[float]]:
    """Per task: training accuracy over its last epoch, and test accuracy right after learning it."""
    ends = {e["task"]: float(e["train_accuracy"]) for e in read_events(record.path) if e.get("event") == "task_end"}
    R = record.metrics["accuracy_matrix"]
    tasks = [t for t in sorted(ends) if R[t][t] is not None]  # joint training has no diagonal
    return [ends[t] for t in tasks], [float(R[t][t]) for t in tasks]


def regime(runs: dict, epochs: int) -> tuple[str, float, float, list[float]]:
    """(regime, mean training accuracy, mean test accuracy, training accuracy per task) of a budget."""
    train, test, per_task = [], [], {}
    for (e, _), seeds in runs.items():
        if e != epochs:
            continue
        for record in seeds.values():
            tr, te = train_and_test(record)
            train += tr
            test += te
            for t, value in enumerate(tr):
                per_task.setdefault(t, []).append(value)
    if not train:
        return "–", math.nan, math.nan, []
    mean_train, mean_test = statistics.mean(train), statistics.mean(test)
    gap = mean_train - mean_test
    name = "underfitting" if gap < 5 else ("fitting" if gap < 20 and mean_train < 95 else "converged")
    return name, mean_train, mean_test, [statistics.mean(per_task[t]) for t in sorted(per_task)]


def fmt_test(test: Paired | None) -> tuple[str, str, str]:
    if test is None:
        return "–", "–", "–"
    ci = interval(test)
    ci_text = f"[{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci is not None and test.n >= 3 else "–"
    t_text = f"{test.t:.2f}" if not math.isnan(test.t) else "–"
    return f"{test.mean:+.2f}", ci_text, t_text


def claim_section(runs: dict, fixed: dict, budgets: list[int], regimes: dict, slug: str, title: str, a: tuple,
                  b: tuple) -> tuple[list[str], list[tuple[int, Paired]]]:
    tests = [(e, comparison(runs, e, a, b)) for e in budgets]
    present = [(e, t) for e, t in tests if t is not None]
    corrected = dict(zip([e for e, _ in present], holm_verdicts([t for _, t in present]))) if present else {}
    lines = [f"### {title}", "", f"![{title}](results/budget_{slug}.png)", "",
             "| epochs per task | regime | seeds | A − B | 95 % interval | t | verdict | with Holm over the budgets |",
             "|---|---|---|---|---|---|---|---|"]
    for e, test in tests:
        mean, ci, t = fmt_test(test)
        seeds = str(test.n) if test is not None else "0"
        one = verdict(test) if test is not None and test.n >= 2 else ("1 seed: a trend" if test is not None else "–")
        holm_text = corrected.get(e, "–") if test is not None and test.n >= 2 else "–"
        lines.append(f"| {e} | {regimes[e][0]} | {seeds} | {mean} | {ci} | {t} | {one} | {holm_text} |")
    fixed_test = comparison(fixed, 6, a, b)
    if fixed_test is not None:
        mean, ci, t = fmt_test(fixed_test)
        lines.append(f"| 6, fixed class order (the study) | {regimes.get('fixed', ('–',))[0]} | {fixed_test.n} | {mean} "
                     f"| {ci} | {t} | {verdict(fixed_test)} | – |")
    lines += ["", sentence(slug, title, present, regimes, corrected), ""]
    return lines, present


def sentence(slug: str, title: str, present: list[tuple[int, Paired]], regimes: dict, corrected: dict) -> str:
    """One generated sentence per regime: the differences measured there and what they decide."""
    name = SHORT.get(slug, title)
    if not present:
        return f"*{name}: no budget measured yet.*"
    by_regime: dict[str, list[str]] = {}
    for e, test in present:
        word = corrected.get(e, "inconclusive") if test.n >= 2 else "a trend (1 seed)"
        by_regime.setdefault(regimes[e][0], []).append(f"{test.mean:+.2f} at {e} epochs ({word})")
    parts = [f"{name}: {', '.join(items)}" for name, items in by_regime.items()]
    signs = {math.copysign(1, t.mean) for _, t in present if t.mean != 0}
    trend = "the sign changes with the budget" if len(signs) > 1 else "the same sign at every budget measured"
    return f"**{name}** — {'; '.join(parts)}; {trend}."


def figure(out: Path, slug: str, title: str, runs: dict, budgets: list[int], a: tuple, b: tuple,
           regimes: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    xs, means, lows, highs = [], [], [], []
    for e in budgets:
        test = comparison(runs, e, a, b)
        if test is None:
            continue
        ax.scatter([e] * test.n, test.diffs, s=12, color="0.6", zorder=2)
        xs.append(e)
        means.append(test.mean)
        ci = interval(test) if test.n >= 3 else None
        lows.append(test.mean - ci[0] if ci else 0.0)
        highs.append(ci[1] - test.mean if ci else 0.0)
    if xs:
        ax.errorbar(xs, means, yerr=[lows, highs], marker="o", color="C0", capsize=4, zorder=3,
                    label="mean (bars: 95 % interval, 3+ seeds)")
        ax.legend(fontsize=7, loc="best")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [f"{e}\n{regimes[e][0]}" for e in budgets])
    ax.set_xlabel("epochs per task (regime)")
    ax.set_ylabel("A − B, ACC points")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"budget_{slug}.png", dpi=110)
    plt.close(fig)


def write_generated(page: Path, lines: list[str]) -> None:
    text = page.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{page}: needs a line '{BEGIN}' followed by a line '{END}' where the budget tables go")
    head, rest = text.split(BEGIN, 1)
    page.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="docs/results/budget-axis")
    parser.add_argument("--fixed", default="docs/results/data")
    parser.add_argument("--out", default="docs/results")
    parser.add_argument("--page", default="docs/results.md")
    args = parser.parse_args()
    runs, fixed = load(Path(args.data)), load(Path(args.fixed))
    budgets = sorted({e for e, _ in runs})
    regimes: dict = {e: regime(runs, e) for e in budgets}
    if fixed:
        regimes["fixed"] = regime(fixed, 6)
    count = sum(len(s) for s in runs.values())
    lines = [f"Generated by `python scripts/budget_page.py` from the {count} completed runs under `{args.data}` "
             f"(drawn class orders); rule for regimes and verdicts in the script's docstring.", "",
             "| epochs per task | runs | regime | training accuracy, last epoch | test accuracy right after learning "
             "| training accuracy per task (0-9) |", "|---|---|---|---|---|---|"]
    for e in budgets:
        name, train, test, per_task = regimes[e]
        n = sum(len(s) for (ee, _), s in runs.items() if ee == e)
        lines.append(f"| {e} | {n} | {name} | {train:.2f} % | {test:.2f} % | {', '.join(f'{v:.1f}' for v in per_task)} |")
    lines.append("")
    for slug, title, a, b in CLAIMS:
        section, _ = claim_section(runs, fixed, budgets, regimes, slug, title, a, b)
        lines += section
        if budgets:
            figure(Path(args.out), slug, title, runs, budgets, a, b, regimes)
    write_generated(Path(args.page), lines)
    print(f"{count} runs at budgets {budgets}: {args.page} updated, figures in {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
