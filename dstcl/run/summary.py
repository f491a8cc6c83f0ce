"""What a finished (or stopped) run says about itself: ``summary.md`` and the table printed at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..metrics import LABELS, SHORT_LABELS
from ..train.evaluate import FORWARD_METRICS


def _fmt(value: Any, spec: str = ".2f", unit: str = "") -> str:
    return "n/a" if value is None else format(value, spec) + unit


def _unmeasured(m: dict, key: str) -> str:
    """"n/a", with the --eval mode that would measure ``key`` where the run's mode left it out."""
    mode = (m.get("evaluation") or {}).get("mode")
    if mode not in FORWARD_METRICS or key in FORWARD_METRICS[mode]:
        return "n/a"
    wanted = next((other for other, measured in FORWARD_METRICS.items() if key in measured), None)
    return f"not measured (--eval {wanted} measures it; docs/metrics.md)" if wanted else "n/a"


def summary_line(m: dict) -> str:
    """ACC, BWT and both forward-transfer figures, each named with what it is and its unit."""
    future, fwt = m.get("fwt_reference"), m.get("fwt")
    future_text = f"{future:.2f} %" if future is not None else _unmeasured(m, "fwt_reference")
    fwt_text = f"{fwt:+.2f} points" if fwt is not None else _unmeasured(m, "fwt")
    return (f"ACC {_fmt(m.get('acc'), unit=' %')}   BWT {_fmt(m.get('bwt'), '+.2f', ' points')}   "
            f"{SHORT_LABELS['fwt']} {fwt_text}   {SHORT_LABELS['fwt_reference']} {future_text}")


def format_summary(m: dict, flat: dict, path: Path, task_classes: list[list[int]] | None = None) -> str:
    """Markdown: the settings, the accuracy matrix, the summary metrics and the topology updates per task."""
    from ..config.protocol import protocol_label

    R = m["accuracy_matrix"]
    T = len(R)
    order = flat.get("class_order")
    if task_classes and order != "sequential":
        order = f"{order}: " + "; ".join(f"task {t}: {', '.join(map(str, c))}" for t, c in enumerate(task_classes))
    lines = [
        f"# dstcl run: {flat.get('dataset')}, {T} tasks, {flat.get('backbone')}, {flat.get('init')} + "
        f"{flat.get('growth')}, sparsity {flat.get('sparsity'):g}",
        "",
        f"Run directory: `{path}`",
        "",
        f"Protocol: {protocol_label(flat)} (docs/algorithm.md, 'Two protocols'). Class order: {order}.",
        "",
        "Accuracy (%) on each task (columns) after learning task (rows); above the diagonal: future",
        "tasks through the current task's mask and head (the reference's forward-transfer evaluation).",
        "",
        "| after \\ task | " + " | ".join(str(j) for j in range(T)) + " |",
        "|---|" + "---|" * T,
    ]
    for i, row in enumerate(R):
        cells = ["" if v is None else f"{v:.2f}" for v in row]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    lines += ["", "| metric | value |", "|---|---|"]
    for key, label in LABELS.items():
        value = _fmt(m.get(key)) if m.get(key) is not None else _unmeasured(m, key)
        lines.append(f"| {label} | {value} |")
    compute = m.get("compute") or {}
    if compute.get("inference_flops_per_task"):
        flops, params = compute["inference_flops_per_task"], compute["inference_params_per_task"]
        lines += ["", f"Inference per task (RigL's count: active weights only): {_mean(params):,.0f} weights, "
                  f"{_mean(flops) / 1e6:,.2f} MFLOPs per example ({100 * _mean(flops) / compute['dense_inference_flops']:.1f} "
                  f"% of the dense network's {compute['dense_inference_flops'] / 1e6:,.2f} MFLOPs, "
                  f"{compute['dense_params']:,} weights). Training: {compute['training_flops'] / 1e9:,.1f} GFLOPs."]
    if m.get("agnostic"):
        a = m["agnostic"]
        lines += ["", f"Without the task label (task chosen by {a['criterion']}, {a['images']} test images of all tasks): "
                  f"task-inference accuracy {m['task_inference_accuracy']:.2f} %, class-incremental accuracy "
                  f"{m['class_incremental_accuracy']:.2f} % (other criteria: "
                  + ", ".join(f"{k} {v:.2f} / {a['class_incremental'][k]:.2f} %" for k, v in a["task_inference"].items()
                              if k != a["criterion"]) + ")."]
    updates = m.get("topology_updates_per_task")
    if updates:
        lines += ["", f"Topology updates per task: {', '.join(map(str, updates))}"
                  + (" (static sparse training)" if not any(updates) else "") + "."]
    return "\n".join(lines) + "\n"


def console_table(m: dict) -> str:
    """Per task: accuracy right after learning it and at the end; then the summary line."""
    R = m["accuracy_matrix"]
    T = len(R)
    lines = ["task  just learned  at the end"]
    for j in range(T):
        lines.append(f"{j:>4}  {_pct(R[j][j]):>12}  {_pct(R[-1][j]):>10}")
    lines.append(summary_line(m))
    if m.get("task_inference_accuracy") is not None:
        lines.append(f"task not given: task-inference {m['task_inference_accuracy']:.2f} %, class-incremental "
                     f"{m['class_incremental_accuracy']:.2f} %")
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.2f} %"


def _mean(values: list) -> float:
    return sum(values) / len(values)
