"""The report as Markdown, CSV or LaTeX.

Markdown and LaTeX show the paper-shaped tables (mean ± std over seeds, two decimals, the best mean
of each column in bold) and a table of every configuration. CSV is for further analysis: one row per
configuration (or per run with ``per_run``) with every config field and full-precision numbers.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any, Sequence

from .aggregate import METRIC_TITLES, METRICS, Group, Stat, common_settings, group_runs, setting_names, varying_fields
from .collect import Collection
from .tables import PaperTable, best_in_column, group_order, paper_tables

FORMATS = ("markdown", "csv", "latex")
SHORT = {"acc": "ACC", "bwt": "BWT", "fwt": "FWT (GEM)", "fwt_reference": "future-task acc.",
         "task_inference_accuracy": "task-inference acc.", "class_incremental_accuracy": "class-IL acc."}


@dataclass
class Report:
    collection: Collection
    groups: list[Group]
    tables: list[PaperTable]
    metrics: tuple[str, ...]


def build_report(collection: Collection, metrics: Sequence[str] = ("acc", "bwt", "fwt")) -> Report:
    groups = group_order(group_runs(collection.completed))
    return Report(collection, groups, paper_tables(groups), tuple(metrics))


def render(report: Report, fmt: str = "markdown", *, per_run: bool = False) -> str:
    if fmt == "markdown":
        return to_markdown(report, per_run=per_run)
    if fmt == "csv":
        return to_csv(report, per_run=per_run)
    if fmt == "latex":
        return to_latex(report)
    raise ValueError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")


# --- numbers and labels ---------------------------------------------------------------------------

def fmt_stat(s: Stat) -> str:
    if s.mean is None:
        return "–"
    return f"{s.mean:.2f}" if s.std is None else f"{s.mean:.2f} ± {s.std:.2f}"


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "–" if value is None else str(value)


def init_label(init: Any) -> str:
    return {"erk": "ERK", "uniform": "Uniform"}.get(str(init), str(init))


def col_label(table: PaperTable, col: tuple) -> str:
    sparsity, tasks = col
    several_tasks = len({c[1] for c in table.cols}) > 1
    head = f"{100 * sparsity:g} %" if isinstance(sparsity, (int, float)) else str(sparsity)
    return f"{head} · {tasks} tasks" if several_tasks else head


def split_label(split: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {fmt_value(v)}" for k, v in split.items())


def _cell_text(table: PaperTable, row: tuple, col: tuple, metric: str, n_max: int, bold: str) -> str:
    group = table.cell(row, col)
    if group is None:
        return ""
    s = group.stat(metric)
    text = fmt_stat(s)
    if s.n and s.n < n_max:
        text += f" (n={s.n})"
    best = best_in_column(table, col, metric)
    if best is not None and s.mean == best:
        text = bold.format(text)
    return text


def _n_max(report: Report) -> int:
    return max((len(g.runs) for g in report.groups), default=0)


# --- Markdown ---------------------------------------------------------------------------------------

def to_markdown(report: Report, *, per_run: bool = False) -> str:
    c = report.collection
    seeds = sorted({s for g in report.groups for s in g.seeds})
    lines = [
        "# dstcl report",
        "",
        f"{len(c.completed)} completed run{'s' if len(c.completed) != 1 else ''} in {len(report.groups)} "
        f"configuration{'s' if len(report.groups) != 1 else ''} (seeds {', '.join(map(str, seeds)) or '–'}) from "
        f"{', '.join(f'`{p}`' for p in c.sources)}."
        + (f" {len(c.unfinished)} unfinished run(s) not included (listed at the end)." if c.unfinished else "")
        + (f" {len(c.duplicates)} duplicate run(s) (same settings and seed as another) counted once (listed at "
           "the end)." if c.duplicates else ""),
        "",
        "Each cell: mean ± sample standard deviation over seeds (no ± with one seed); best mean of each "
        "column in bold; (n=k) marks a configuration with fewer seeds than the others. Formulas: docs/metrics.md.",
        "",
    ]
    common = {k: v for k, v in common_settings(report.groups).items() if v is not None}
    if common:
        lines += ["Common settings: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in common.items()), ""]
    n_max = _n_max(report)
    for metric in report.metrics:
        lines += [f"## {METRIC_TITLES.get(metric, metric)}", ""]
        for table in report.tables:
            if table.split:
                lines += [f"### {split_label(table.split)}", ""]
            header = ["init", "growth"] + [col_label(table, col) for col in table.cols]
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            previous = None
            for row in table.rows:
                init = init_label(row[0]) if row[0] != previous else ""
                previous = row[0]
                cells = [_cell_text(table, row, col, metric, n_max, "**{}**") for col in table.cols]
                lines.append("| " + " | ".join([init, fmt_value(row[1])] + cells) + " |")
            lines.append("")
        if report.tables and report.tables[0].derived:
            lines += [f"Also differing between columns or rows (implied by them): {', '.join(report.tables[0].derived)}.", ""]
    lines += _markdown_configurations(report)
    if per_run:
        lines += _markdown_runs(report)
    if c.unfinished or c.unreadable or c.duplicates:
        lines += ["## Not included", ""]
        for run in c.unfinished:
            done = run.metrics.get("tasks_completed")
            total = run.config.get("tasks")
            lines.append(f"- `{run.path}`: {run.status}" + (f" ({done}/{total} tasks)" if done is not None else ""))
        for path, reason in c.unreadable:
            lines.append(f"- `{path}`: {reason}")
        for kept, path in c.duplicates:
            lines.append(f"- `{path}`: duplicate of `{kept}` (same settings and seed), counted once")
        lines.append("")
    return "\n".join(lines)


def _markdown_configurations(report: Report) -> list[str]:
    fields = varying_fields(report.groups)
    header = fields + ["seeds"] + [SHORT.get(m, m) for m in METRICS] + ["updates/task", "inference FLOPs",
                                                                        "training GFLOPs"]
    lines = ["## All configurations", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in report.groups:
        cells = [fmt_value(g.get(f)) for f in fields] + [", ".join(map(str, g.seeds))]
        cells += [fmt_stat(g.stat(m)) for m in METRICS] + [updates_text(g), *compute_text(g)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def compute_text(group: Group) -> tuple[str, str]:
    """Per-task inference FLOPs as % of the dense network, and training GFLOPs (mean over seeds)."""
    shares, training = [], []
    for run in group.runs:
        compute = run.metrics.get("compute") or {}
        per_task = compute.get("inference_flops_per_task") or []
        if per_task and compute.get("dense_inference_flops"):
            shares.append(100 * sum(per_task) / len(per_task) / compute["dense_inference_flops"])
        if isinstance(compute.get("training_flops"), (int, float)):
            training.append(compute["training_flops"] / 1e9)
    share = f"{sum(shares) / len(shares):.1f} %" if shares else "–"
    return share, (f"{sum(training) / len(training):,.1f}" if training else "–")


def updates_text(group: Group) -> str:
    """Topology updates per task of a configuration: one number when every task and run agree, else min-max."""
    counts = [n for r in group.runs for n in (r.metrics.get("topology_updates_per_task") or [])
              if isinstance(n, int)]
    if not counts:
        return "–"
    low, high = min(counts), max(counts)
    return str(low) if low == high else f"{low}-{high}"


def _markdown_runs(report: Report) -> list[str]:
    fields = varying_fields(report.groups)
    header = ["run"] + fields + ["seed"] + [SHORT.get(m, m) for m in METRICS]
    lines = ["## Runs", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for g in report.groups:
        for run in g.runs:
            cells = [f"`{run.id}`"] + [fmt_value(g.get(f)) for f in fields] + [fmt_value(run.seed)]
            cells += ["–" if run.metrics.get(m) is None else f"{run.metrics[m]:.2f}" for m in METRICS]
            lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


# --- CSV ----------------------------------------------------------------------------------------------

def to_csv(report: Report, *, per_run: bool = False) -> str:
    """Tidy CSV: every config field, then the numbers at full precision (repr of the JSON floats)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = setting_names(report.groups)
    if per_run:
        writer.writerow(["run_dir", *names, "seed", "status", "tasks_completed", *METRICS])
        for g in report.groups:
            for run in g.runs:
                writer.writerow([str(run.path), *[_csv(g.get(f)) for f in names], _csv(run.seed), run.status,
                                 _csv(run.metrics.get("tasks_completed")), *[_csv(run.metrics.get(m)) for m in METRICS]])
        return buffer.getvalue()
    stats = [f"{m}_{part}" for m in METRICS for part in ("mean", "std")]
    writer.writerow([*names, "n", "seeds", *stats, "updates_per_task", "run_dirs"])
    for g in report.groups:
        numbers = []
        for m in METRICS:
            s = g.stat(m)
            numbers += [_csv(s.mean), _csv(s.std)]
        writer.writerow([*[_csv(g.get(f)) for f in names], len(g.runs), " ".join(map(str, g.seeds)),
                         *numbers, updates_text(g), " ".join(str(r.path) for r in g.runs)])
    return buffer.getvalue()


def _csv(value: Any) -> str:
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else str(value)


# --- LaTeX ---------------------------------------------------------------------------------------------

def to_latex(report: Report) -> str:
    """One booktabs table per metric (and split); needs \\usepackage{booktabs,multirow}."""
    n_max = _n_max(report)
    out = ["% dstcl report: mean $\\pm$ sample std over seeds; needs \\usepackage{booktabs,multirow}", ""]
    for metric in report.metrics:
        for table in report.tables:
            out += _latex_table(table, metric, n_max)
    return "\n".join(out)


def _latex_table(table: PaperTable, metric: str, n_max: int) -> list[str]:
    sparsities = []
    for col in table.cols:
        if col[0] not in sparsities:
            sparsities.append(col[0])
    spans = [(s, [c for c in table.cols if c[0] == s]) for s in sparsities]
    several_tasks = len({c[1] for c in table.cols}) > 1
    caption = METRIC_TITLES.get(metric, metric).replace("%", "\\%")
    if table.split:
        caption += " --- " + _tex(split_label(table.split))
    lines = ["\\begin{table}[t]", "\\centering", f"\\caption{{{caption}}}",
             "\\begin{tabular}{ll" + "c" * len(table.cols) + "}", "\\toprule"]
    if several_tasks:  # two header rows: sparsity spanning its task counts, then the task counts
        head = ["", ""]
        rules = []
        start = 3
        for sparsity, cols in spans:
            head.append(f"\\multicolumn{{{len(cols)}}}{{c}}{{{_sparsity_tex(sparsity)}}}")
            rules.append(f"\\cmidrule(lr){{{start}-{start + len(cols) - 1}}}")
            start += len(cols)
        lines.append(" & ".join(head) + " \\\\")
        lines.append(" ".join(rules))
        lines.append(" & ".join(["Init", "Growth"] + [f"{c[1]} tasks" for c in table.cols]) + " \\\\")
    else:
        lines.append(" & ".join(["Init", "Growth"] + [_sparsity_tex(c[0]) for c in table.cols]) + " \\\\")
    lines.append("\\midrule")
    inits = []
    for row in table.rows:
        if row[0] not in inits:
            inits.append(row[0])
    for k, init in enumerate(inits):
        rows = [r for r in table.rows if r[0] == init]
        for i, row in enumerate(rows):
            first = f"\\multirow{{{len(rows)}}}{{*}}{{{_tex(init_label(init))}}}" if i == 0 else ""
            cells = [_cell_text(table, row, col, metric, n_max, "\\textbf{{{}}}") for col in table.cols]
            cells = [_tex_cell(c) for c in cells]
            lines.append(" & ".join([first, _tex(fmt_value(row[1]))] + cells) + " \\\\")
        if k < len(inits) - 1:
            lines.append("\\midrule")
    lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return lines


def _sparsity_tex(sparsity: Any) -> str:
    return f"{100 * sparsity:g}\\% sparsity" if isinstance(sparsity, (int, float)) else _tex(str(sparsity))


def _tex(text: str) -> str:
    for a, b in (("\\", "\\textbackslash{}"), ("_", "\\_"), ("%", "\\%"), ("&", "\\&"), ("#", "\\#"), ("$", "\\$")):
        text = text.replace(a, b)
    return text


def _tex_cell(text: str) -> str:
    """'63.46 ± 1.23' -> '63.46 $\\pm$ 1.23' (text mode, so \\textbf{...} makes the digits bold)."""
    return text.replace(" ± ", " $\\pm$ ").replace("–", "--")
