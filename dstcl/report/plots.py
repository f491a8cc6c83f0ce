"""PNG figures of a report (matplotlib, an optional extra imported only here).

Written under the ``--plots`` folder:

* ``accuracy_matrix/<run>.png`` — the accuracy matrix of each run (rows: after learning task i;
  columns: task j; above the diagonal the reference's forward-transfer evaluation);
* ``final_task_accuracy*.png`` — accuracy on each task after the last one, mean ± std over seeds,
  one line per init x growth, one panel per sparsity;
* ``accuracy_after_each_task*.png`` — mean accuracy over the tasks seen so far, after each task;
* ``capacity/<run>.png`` — per layer and task: share of the layer owned, and share of the new
  task's mask reused from earlier tasks;
* ``layer_density*.png`` — per-layer density of ERK vs uniform at each sparsity of the runs
  (computed from the layer shapes; dots: what the runs actually used).
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any, Sequence

from ..files import atomic_write_bytes
from .aggregate import Group, stat, varying_fields
from .collect import ReportError, RunRecord
from .render import Report, col_label, fmt_value, init_label, split_label
from .tables import PaperTable

INSTALL_HINT = "pip install 'dstcl[plots]' (or pip install matplotlib)"


def pyplot() -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a ReportError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise ReportError(f"--plots needs matplotlib, which is not installed; install it with {INSTALL_HINT}.") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_plots(report: Report, out: str | Path) -> list[Path]:
    """Write every figure under ``out``; returns the files written."""
    plt = pyplot()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create the plot folder {out}: {exc.strerror}.") from None
    labels = run_labels(report)
    written: list[Path] = []
    for group in report.groups:
        for run in group.runs:
            written += plot_accuracy_matrix(plt, run, labels[run.path], out / "accuracy_matrix")
            written += plot_capacity(plt, run, labels[run.path], out / "capacity")
            written += plot_growth_choices(plt, run, labels[run.path], out / "growth_auto")
    for table in report.tables:
        written += plot_task_curves(plt, table, out)
    written += plot_layer_density(plt, report.groups, out)
    return written


def run_labels(report: Report) -> dict[Path, str]:
    fields = varying_fields(report.groups)
    labels = {}
    for g in report.groups:
        for run in g.runs:
            parts = [f"{f}={fmt_value(g.get(f))}" for f in fields] + [f"seed={run.seed}"]
            labels[run.path] = " ".join(parts)
    return labels


def plot_growth_choices(plt: Any, run: RunRecord, label: str, folder: Path) -> list[Path]:
    """``--growth auto``: the criterion the bandit chose at each topology update, task boundaries marked."""
    if "auto" not in str(run.config.get("growth", "")):
        return []
    choices = [(e.get("task", 0), e.get("growth")) for e in run.events() if e.get("event") == "topology_update"]
    if not choices:
        return []
    arms = sorted({arm for _, arm in choices})
    fig, ax = plt.subplots(figsize=(8, 2.2 + 0.25 * len(arms)))
    ax.scatter(range(len(choices)), [arms.index(arm) for _, arm in choices], s=10)
    for i in range(1, len(choices)):
        if choices[i][0] != choices[i - 1][0]:
            ax.axvline(i - 0.5, color="grey", linewidth=0.5)
    ax.set_yticks(range(len(arms)), arms)
    ax.set_xlabel("topology update (grey lines: a new task)")
    ax.set_title(_wrap(f"growth chosen by --growth auto: {label}"), fontsize=9)
    return [_save(plt, fig, folder / f"{_slug(label)}.png")]


def plot_accuracy_matrix(plt: Any, run: RunRecord, label: str, folder: Path) -> list[Path]:
    import numpy as np

    matrix = run.metrics.get("accuracy_matrix")
    if not matrix:
        return []
    R = np.array([[np.nan if v is None else float(v) for v in row] for row in matrix])
    T = len(R)
    size = min(2.0 + 0.55 * T, 14.0)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    image = ax.imshow(R, vmin=0, vmax=100, cmap="viridis")
    if T <= 12:
        for i in range(T):
            for j in range(T):
                if not np.isnan(R[i, j]):
                    ax.text(j, i, f"{R[i, j]:.1f}", ha="center", va="center", fontsize=7,
                            color="white" if R[i, j] < 60 else "black", alpha=1.0 if j <= i else 0.6)
    ax.set_xlabel("task evaluated")
    ax.set_ylabel("after learning task")
    ax.set_xticks(range(T))
    ax.set_yticks(range(T))
    ax.set_title(_wrap(f"accuracy (%) — {label}", int(8 * size)), fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return [_save(plt, fig, folder / f"{run.id}.png")]


def plot_capacity(plt: Any, run: RunRecord, label: str, folder: Path) -> list[Path]:
    import numpy as np

    capacity = run.capacity()
    if not capacity:
        return []
    names = [layer["name"] for layer in capacity[0]["layers"]]
    tasks = [entry["task"] for entry in capacity]
    owned = np.array([[row["owned_fraction"] for row in entry["layers"]] for entry in capacity]).T
    reused = np.array([[row["reused_fraction"] for row in entry["layers"]] for entry in capacity]).T
    height = max(3.0, 0.28 * len(names) + 1.5)
    width = max(6.0, 0.45 * len(tasks) * 2 + 4)
    fig, axes = plt.subplots(1, 2, figsize=(width, height), sharey=True)
    for ax, data, title in ((axes[0], owned, "share of the layer owned by tasks"),
                            (axes[1], reused, "share of the task's mask reused")):
        image = ax.imshow(data, vmin=0, vmax=1, cmap="magma", aspect="auto")
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels([str(t) for t in tasks])
        ax.set_xlabel("after task")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    axes[0].set_yticks(range(len(names)))
    axes[0].set_yticklabels(names, fontsize=7)
    fig.suptitle(_wrap(f"capacity per layer — {label}"), fontsize=9)
    return [_save(plt, fig, folder / f"{run.id}.png")]


def plot_task_curves(plt: Any, table: PaperTable, out: Path) -> list[Path]:
    """Final per-task accuracy and accuracy after each task, one figure per number of tasks."""
    written = []
    suffix = _slug(split_label(table.split))
    for tasks in sorted({c[1] for c in table.cols}, key=lambda t: (t is None, t)):
        cols = [c for c in table.cols if c[1] == tasks]
        name = f"_{suffix}" if suffix else ""
        name += f"_T{tasks}" if len({c[1] for c in table.cols}) > 1 else ""
        for kind, ylabel in (("final_task_accuracy", "accuracy after the last task (%)"),
                             ("accuracy_after_each_task", "mean accuracy over tasks seen (%)")):
            from matplotlib.ticker import MaxNLocator

            fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols) + 1.5, 3.8), sharey=True, squeeze=False)
            for ax, col in zip(axes[0], cols):
                for row in table.rows:
                    group = table.cell(row, col)
                    if group is None:
                        continue
                    means, stds = _curve(group, kind)
                    if not means:
                        continue
                    x = list(range(1, len(means) + 1)) if kind == "accuracy_after_each_task" else list(range(len(means)))
                    line, = ax.plot(x, means, marker="o", markersize=3, label=f"{init_label(row[0])} + {fmt_value(row[1])}")
                    lower = [m - (s or 0) for m, s in zip(means, stds)]
                    upper = [m + (s or 0) for m, s in zip(means, stds)]
                    ax.fill_between(x, lower, upper, color=line.get_color(), alpha=0.15, linewidth=0)
                ax.set_title(col_label(table, col), fontsize=9)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_xlabel("task" if kind == "final_task_accuracy" else "tasks learned")
                ax.grid(alpha=0.3)
            axes[0][0].set_ylabel(ylabel)
            handles, labels = axes[0][0].get_legend_handles_labels()
            if handles:
                fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
            title = f"{tasks} tasks" + (f" — {split_label(table.split)}" if table.split else "")
            fig.suptitle(title, fontsize=10)
            fig.tight_layout(rect=(0, 0, 0.82 if handles else 1, 0.95))
            written.append(_save(plt, fig, out / f"{kind}{name}.png", tight=False))
    return written


def _curve(group: Group, kind: str) -> tuple[list[float], list[float | None]]:
    series = []
    for run in group.runs:
        if kind == "final_task_accuracy":
            matrix = run.metrics.get("accuracy_matrix") or []
            series.append(matrix[-1] if matrix else [])
        else:
            series.append(run.metrics.get("incremental_accuracy") or [])
    length = max((len(s) for s in series), default=0)
    means, stds = [], []
    for j in range(length):
        s = stat(row[j] for row in series if j < len(row))
        if s.mean is None:
            break
        means.append(s.mean)
        stds.append(s.std)
    return means, stds


def plot_layer_density(plt: Any, groups: Sequence[Group], out: Path) -> list[Path]:
    """Per-layer density of ERK vs uniform for each backbone (and input) and sparsity among the runs."""
    from ..sparse import layer_densities
    from ..sparse.density import density_of

    keys = ("dataset", "backbone", "width", "stem", "image_size", "num_classes")
    families: dict[tuple, list[Group]] = {}
    for g in groups:
        families.setdefault(tuple(repr(g.get(k)) for k in keys), []).append(g)
    written = []
    several = len(families) > 1
    for members in families.values():
        shapes = next((s for g in members for r in g.runs if (s := r.layer_shapes())), None)
        if not shapes:
            continue
        names = list(shapes)
        order = _capacity_order(members) or names
        names = [n for n in order if n in shapes]
        sparsities = sorted({float(g.get("sparsity")) for g in members})
        fig, axes = plt.subplots(len(sparsities), 1, figsize=(max(6.0, 0.35 * len(names) + 2), 2.6 * len(sparsities) + 1.2),
                                 squeeze=False, sharex=True)
        import numpy as np

        x = np.arange(len(names))
        for ax, sparsity in zip(axes[:, 0], sparsities):
            density = density_of(sparsity)
            scale = float(members[0].get("erk_power_scale") or 1.0)  # the runs' own ERK exponent
            for offset, rule in ((-0.2, "erk"), (0.2, "uniform")):
                values = layer_densities({n: shapes[n] for n in names}, density, rule, power_scale=scale)
                ax.bar(x + offset, [values[n] for n in names], width=0.4, label=init_label(rule))
            for g in members:
                if not math.isclose(float(g.get("sparsity")), sparsity):
                    continue
                used = _used_density(g.runs[0])
                if used:
                    offset = -0.2 if g.get("init") == "erk" else 0.2
                    ax.scatter(x + offset, [used.get(n, np.nan) for n in names], s=10, color="black", zorder=3)
            ax.set_yscale("log")
            ax.set_ylabel("density")
            ax.set_title(f"sparsity {100 * sparsity:g} % (overall density {density:g})", fontsize=9)
            ax.grid(alpha=0.3, axis="y")
        axes[0, 0].legend(fontsize=8)
        axes[-1, 0].set_xticks(x)
        axes[-1, 0].set_xticklabels(names, rotation=75, fontsize=7)
        first = members[0]
        what = f"{first.get('backbone')} on {first.get('dataset')}"
        fig.suptitle(f"per-layer density, ERK vs uniform — {what} (dots: used by the runs)", fontsize=10)
        slug = _slug(f"{first.get('backbone')}_{first.get('dataset')}") if several else ""
        written.append(_save(plt, fig, out / (f"layer_density_{slug}.png" if slug else "layer_density.png")))
    return written


def _capacity_order(groups: Sequence[Group]) -> list[str] | None:
    for g in groups:
        for run in g.runs:
            capacity = run.capacity()
            if capacity:
                return [layer["name"] for layer in capacity[0]["layers"]]
    return None


def _used_density(run: RunRecord) -> dict[str, float] | None:
    capacity = run.capacity()
    if not capacity:
        return None
    return {layer["name"]: layer["active"] / layer["numel"] for layer in capacity[0]["layers"] if layer["numel"]}


def _save(plt: Any, fig: Any, path: Path, tight: bool = True) -> Path:
    """Render ``fig`` to PNG in memory, then write it atomically (no half-written figure on a crash)."""
    try:
        if tight:
            fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110)
    finally:
        plt.close(fig)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        raise ReportError(f"cannot write the figure {path}: {exc.strerror or exc}. Give --plots a folder you "
                          "can write to.") from None
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.@,-]+", "_", text).strip("_")


def _wrap(text: str, width: int = 70) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text
