"""The two protocols on docs/results.md: dstcl against the reference code, and the verdicts under both.

    python scripts/protocol_page.py [--reference-code docs/results/reference-code]
                                    [--reference docs/results/protocol] [--dstcl docs/results/data]
                                    [--page docs/results.md]

Writes the part of ``--page`` between ``<!-- generated protocol -->`` and ``<!-- end generated protocol -->``:

1. **Against the reference code**: the reference code's printed final accuracy row, ACC, BWT and its own
   FWT (the constants below, from the issue that reported them: one run, seed 0, on a machine like this
   one), beside every seed of dstcl's ``--protocol reference`` run of the same setting
   (grids/study/reference-code.yaml), the seeds' range and mean ± std, and whether the seeds bracket
   the reference's figure (its value lies within [min, max] of the seeds).
2. **The verdicts under both protocols**: the study's deciding pairs, paired over 3 seeds each, under
   dstcl's protocol (the study's runs, ``--dstcl``) and under ``--protocol reference`` (``--reference``,
   grids/study/protocol.yaml), with the verdict rule of scripts/budget_page.py (one-sided paired t-test;
   Holm over the pairs of one claim where a claim has several).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from dstcl.report import collect
from dstcl.report.verdicts import holm_verdicts, paired_test, verdict

BEGIN, END = "<!-- generated protocol -->", "<!-- end generated protocol -->"
# The reference code's own output (issue 21, "Reference figures"): cifar100.py, miniImageNet packed as
# CIFAR-100, full-width ResNet-18, 10 tasks, 2 epochs, batch 64, density 0.2, ERK, random growth, update
# every 40 steps, Adam 1e-3, seed 0, on a 2-CPU Xeon with AVX512-BF16, torch 2.13.0.
REFERENCE_ROW = [36.2, 34.1, 29.3, 36.0, 25.6, 32.9, 23.8, 39.2, 31.7, 37.6]
REFERENCE_DIAGONAL = [35.5, 32.9, 27.9, 37.0, 25.2, 31.2, 24.3, 39.7, 34.4, 37.6]
REFERENCE = {"acc": 32.64, "bwt": 0.08, "fwt_reference": 7.31}
REFERENCE_WALL_S = 805

ERK80, UNI80 = ("dst", "erk", "random", 0.8), ("dst", "uniform", "random", 0.8)
ERK95, UNI95 = ("dst", "erk", "random", 0.95), ("dst", "uniform", "random", 0.95)
GRAD80, GRAD95 = ("dst", "erk", "gradient", 0.8), ("dst", "erk", "gradient", 0.95)
STATIC80, ADAPTIVE80 = ("static", "erk", "random", 0.8), ("dst", "erk", "random@0-4,gradient", 0.8)
CLAIMS = [
    ("C1: ERK beats uniform (80 %)", [(ERK80, UNI80)]),
    ("C2: uniform beats ERK (95 %)", [(UNI95, ERK95)]),
    ("C3: gradient beats random growth (ERK, 80 % and 95 %)", [(GRAD80, ERK80), (GRAD95, ERK95)]),
    ("C4: adaptive beats random growth (ERK, 80 %)", [(ADAPTIVE80, ERK80)]),
    ("DST beats static sparse training (ERK, 80 %)", [(ERK80, STATIC80)]),
]


def key_of(config: dict) -> tuple:
    return (config.get("method", "dst"), config.get("init"), str(config.get("growth")), float(config.get("sparsity")))


def label(key: tuple) -> str:
    method, init, growth, sparsity = key
    name = "adaptive" if growth == "random@0-4,gradient" else growth
    return f"{'static ' if method == 'static' else ''}{'ERK' if init == 'erk' else 'uniform'} / {name} / {100 * sparsity:g} %"


def load(folder: Path, protocol: str | None = None) -> dict[tuple, dict[int, Any]]:
    runs: dict[tuple, dict[int, Any]] = {}
    if not folder.is_dir():
        return runs
    for record in collect([folder]).completed:
        if protocol is not None and (record.config.get("resolved") or {}).get("protocol", "dstcl") != protocol:
            continue
        runs.setdefault(key_of(record.config), {})[int(record.config["seed"])] = record
    return runs


def reference_section(folder: Path) -> list[str]:
    records = sorted(collect([folder]).completed, key=lambda r: int(r.config["seed"])) if folder.is_dir() else []
    lines = ["### Against the reference code", "",
             f"Generated from {len(records)} completed run(s) under `{folder}` (`grids/study/reference-code.yaml`)."]
    if not records:
        return lines + ["", "*No run yet.*"]
    lines += ["", "| | " + " | ".join(f"task {t}" for t in range(10)) + " | ACC | BWT | FWT (reference's) | wall |",
              "|---|" + "---|" * 14,
              "| **the reference code**, seed 0 | " + " | ".join(f"{v:.1f}" for v in REFERENCE_ROW)
              + f" | {REFERENCE['acc']:.2f} | {REFERENCE['bwt']:+.2f} | {REFERENCE['fwt_reference']:.2f} | "
                f"{REFERENCE_WALL_S} s (2 threads) |"]
    for r in records:
        m = r.metrics
        fwt = m.get("fwt_reference")
        wall = sum(e.get("seconds", 0.0) for e in r.events() if e.get("event") == "task_end")
        lines.append(f"| dstcl `--protocol reference`, seed {r.config['seed']} | "
                     + " | ".join(f"{v:.1f}" for v in m["accuracy_matrix"][-1])
                     + f" | {m['acc']:.2f} | {m['bwt']:+.2f} | {'–' if fwt is None else f'{fwt:.2f}'} | "
                       f"{wall:.0f} s training (1 thread) |")
    lines += ["", "| figure | the reference code | dstcl, seeds: min – max | mean ± std | bracketed? |", "|---|---|---|---|---|"]
    for key, name in (("acc", "ACC"), ("bwt", "BWT"), ("fwt_reference", "FWT (the reference's own)")):
        values = [float(r.metrics[key]) for r in records if r.metrics.get(key) is not None]
        if not values:
            continue
        spread = f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else "–"
        inside = "yes" if min(values) <= REFERENCE[key] <= max(values) else "no"
        lines.append(f"| {name} | {REFERENCE[key]:.2f} | {min(values):.2f} – {max(values):.2f} | {spread} | {inside} |")
    for t in range(10):
        values = [float(r.metrics["accuracy_matrix"][-1][t]) for r in records]
        if not min(values) <= REFERENCE_ROW[t] <= max(values):
            lines.append(f"| task {t}, final | {REFERENCE_ROW[t]:.1f} | {min(values):.1f} – {max(values):.1f} | "
                         f"{statistics.mean(values):.2f} | no |")
    return lines


def verdict_section(dstcl_runs: dict, reference_runs: dict) -> list[str]:
    lines = ["### The verdicts under both protocols", "",
             "| claim | A | B | dstcl protocol: A − B | verdict | reference protocol: A − B | verdict |",
             "|---|---|---|---|---|---|---|"]
    for claim, pairs in CLAIMS:
        cells = {}
        for name, runs in (("dstcl", dstcl_runs), ("reference", reference_runs)):
            tests = []
            for a, b in pairs:
                seeds = sorted(set(runs.get(a, {})) & set(runs.get(b, {})))
                diffs = [float(runs[a][s].metrics["acc"]) - float(runs[b][s].metrics["acc"]) for s in seeds]
                tests.append(paired_test(diffs))
            words = holm_verdicts(tests) if len(tests) > 1 else [verdict(t) for t in tests]
            cells[name] = [(f"{t.mean:+.2f} (t = {t.t:.2f}, n = {t.n})" if t.n >= 2 else
                            (f"{t.mean:+.2f} (n = 1)" if t.n == 1 else "–"), w if t.n >= 2 else "–")
                           for t, w in zip(tests, words)]
        for i, (a, b) in enumerate(pairs):
            d, r = cells["dstcl"][i], cells["reference"][i]
            lines.append(f"| {claim if i == 0 else ''} | {label(a)} | {label(b)} | {d[0]} | {d[1]} | {r[0]} | {r[1]} |")
    lines += ["", "Verdicts: one-sided paired t-test at 95 % over seeds; where a claim has two pairs (C3), Holm's "
              "correction over them."]
    return lines


def write_generated(page: Path, lines: list[str]) -> None:
    text = page.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text or text.index(BEGIN) > text.index(END):
        raise SystemExit(f"{page}: needs a line '{BEGIN}' followed by a line '{END}'")
    head, rest = text.split(BEGIN, 1)
    page.write_text(head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + rest.split(END, 1)[1], encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-code", default="docs/results/reference-code")
    parser.add_argument("--reference", default="docs/results/protocol")
    parser.add_argument("--dstcl", default="docs/results/data")
    parser.add_argument("--page", default="docs/results.md")
    args = parser.parse_args()
    lines = [f"Generated by `python scripts/protocol_page.py`; rules in the script's docstring.", ""]
    lines += reference_section(Path(args.reference_code)) + [""]
    lines += verdict_section(load(Path(args.dstcl), "dstcl"), load(Path(args.reference), "reference"))
    write_generated(Path(args.page), lines)
    print(f"{args.page} updated")


if __name__ == "__main__":
    main()
