"""A TensorBoard logger: turns a run's event dicts into TensorBoard scalars.

Pass it to ``run_experiment(..., loggers=[TensorBoardLogger(log_dir, run_dir)])`` (it subscribes to
the run's events) or use
``dstcl run --tensorboard DIR`` (and ``dstcl sweep --tensorboard DIR``), which write each run to
``DIR/<run directory name>`` so that ``tensorboard --logdir DIR`` compares runs side by side.

What is written (x axis in brackets):

* ``train/loss``, ``train/accuracy``, ``train/lr`` — per epoch [epochs over all tasks];
* ``dst/drop_fraction``, ``dst/dropped``, ``dst/grown_reused`` — per topology update [optimizer steps
  over all tasks];
* ``accuracy/task_NN``, ``accuracy/mean_seen`` — after each task [tasks learned];
* ``density/<layer>``, ``capacity/owned/<layer>``, ``capacity/reused/<layer>`` — per layer after
  each task (from the run's ``capacity.json``) [tasks learned];
* ``final/acc``, ``final/bwt``, ``final/fwt``, ``final/fwt_reference`` and the config as hyper-parameters
  (TensorBoard's HParams tab) at the end of a completed run.

TensorBoard is an optional extra (``pip install 'dstcl[tensorboard]'``), imported only when a logger
is made. A resumed run continues the same curves: the step offsets are rebuilt from ``events.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ..errors import DstclError
from .rundir import CAPACITY, CONFIG, METRICS, read_events

FINAL_METRICS = ("acc", "bwt", "fwt", "fwt_reference")


def summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DstclError(
            "--tensorboard needs the tensorboard package, which is not installed; install it with "
            "pip install 'dstcl[tensorboard]' (or pip install tensorboard)."
        ) from None
    return SummaryWriter


class TensorBoardLogger:
    """Callable logger (``logger(event_dict)``) writing TensorBoard events into ``log_dir``.

    ``run_dir`` (the run's directory) is where per-layer capacity, the config and the final metrics
    are read from; without it only the event contents are logged.
    """

    def __init__(self, log_dir: str | Path, run_dir: str | Path | None = None,
                 writer_factory: Callable[[str], Any] | None = None):
        self.log_dir = Path(log_dir)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._factory = writer_factory or (lambda path: summary_writer_class()(log_dir=path))
        if writer_factory is None:
            summary_writer_class()  # fail now, before the run starts, if tensorboard is missing
        self._writer: Any = None
        self._epochs_done = 0  # epochs of finished tasks
        self._epochs_in_task: dict[int, int] = {}
        self._step_offset = 0  # optimizer steps of finished tasks
        self._handlers = {
            "epoch": self._epoch, "topology_update": self._topology, "task_end": self._task_end,
            "run_end": self._run_end, "resumed": self._resumed, "baseline": self._baseline,
        }

    @property
    def writer(self) -> Any:
        if self._writer is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = self._factory(str(self.log_dir))
        return self._writer

    def __call__(self, event: dict) -> None:
        handler = self._handlers.get(event.get("event"))
        if handler is not None:
            handler(event)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # --- handlers --------------------------------------------------------------------------------

    def _baseline(self, event: dict) -> None:
        values = [v for v in event.get("accuracy") or [] if v is not None]
        if values:
            self.writer.add_scalar("accuracy/untrained_mean", sum(values) / len(values), 0)

    def _epoch(self, event: dict) -> None:
        task, epoch = int(event.get("task", 0)), int(event.get("epoch", 0))
        self._epochs_in_task[task] = max(self._epochs_in_task.get(task, 0), epoch + 1)
        step = self._epochs_done + epoch
        for key, tag in (("loss", "train/loss"), ("train_accuracy", "train/accuracy"), ("lr", "train/lr")):
            if isinstance(event.get(key), (int, float)):
                self.writer.add_scalar(tag, float(event[key]), step)
        self.writer.add_scalar("train/task", task, step)

    def _topology(self, event: dict) -> None:
        step = self._step_offset + int(event.get("step", 0))
        for key, tag in (("drop_fraction", "dst/drop_fraction"), ("dropped", "dst/dropped"),
                         ("grown_reused", "dst/grown_reused")):
            if isinstance(event.get(key), (int, float)):
                self.writer.add_scalar(tag, float(event[key]), step)

    def _task_end(self, event: dict) -> None:
        task = int(event.get("task", 0))
        self._finish_task(event)
        accuracies = event.get("accuracy") or []
        for j, value in enumerate(accuracies):
            if value is not None:
                self.writer.add_scalar(f"accuracy/task_{j:02d}", float(value), task + 1)
        seen = [v for v in accuracies if v is not None]
        if seen:
            self.writer.add_scalar("accuracy/mean_seen", sum(seen) / len(seen), task + 1)
        for layer in self._capacity(task):
            name = layer.get("name", "?")
            if layer.get("numel"):
                self.writer.add_scalar(f"density/{name}", layer["active"] / layer["numel"], task + 1)
            self.writer.add_scalar(f"capacity/owned/{name}", float(layer.get("owned_fraction", 0.0)), task + 1)
            self.writer.add_scalar(f"capacity/reused/{name}", float(layer.get("reused_fraction", 0.0)), task + 1)
        self.writer.flush()

    def _run_end(self, event: dict) -> None:
        metrics = self._read(METRICS)
        if event.get("status") == "completed" and isinstance(metrics, dict):
            final = {k: float(metrics[k]) for k in FINAL_METRICS if isinstance(metrics.get(k), (int, float))}
            for key, value in final.items():
                self.writer.add_scalar(f"final/{key}", value, 0)
            config = self._read(CONFIG)
            if isinstance(config, dict) and final:
                hparams = {k: v for k, v in config.items()
                           if isinstance(v, (int, float, str, bool)) and k not in ("out", "progress", "data_dir")}
                self.writer.add_hparams(hparams, {f"hparam/{k}": v for k, v in final.items()}, run_name=".")
        self.close()

    def _resumed(self, event: dict) -> None:
        """Rebuild the step offsets of the tasks finished before the resume from events.jsonl."""
        resumed_task = int(event.get("task", 0))
        finished: dict[int, int] = {}
        for past in self._past_events():
            task = int(past.get("task", 0) or 0)
            if past.get("event") == "epoch":
                self._epochs_in_task[task] = max(self._epochs_in_task.get(task, 0), int(past.get("epoch", 0)) + 1)
            elif past.get("event") == "task_end" and task < resumed_task:
                finished[task] = int(past.get("steps") or 0)
        self._epochs_done = sum(self._epochs_in_task.get(t, 0) for t in finished)
        self._step_offset = sum(finished.values())

    # --- helpers ---------------------------------------------------------------------------------

    def _finish_task(self, event: dict) -> None:
        task = int(event.get("task", 0))
        self._epochs_done += self._epochs_in_task.get(task, 0)
        self._step_offset += int(event.get("steps") or 0)

    def _capacity(self, task: int) -> list[dict]:
        capacity = self._read(CAPACITY)
        if isinstance(capacity, list):
            for entry in capacity:
                if isinstance(entry, dict) and entry.get("task") == task:
                    return [layer for layer in entry.get("layers", []) if isinstance(layer, dict)]
        return []

    def _past_events(self) -> list[dict]:
        return read_events(self.run_dir) if self.run_dir is not None else []

    def _read(self, name: str) -> Any:
        if self.run_dir is None:
            return None
        try:
            return json.loads((self.run_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def loggers_for_run(log_root: str | Path | None, run_dir: str | Path | None) -> list[TensorBoardLogger]:
    """``[]`` without ``log_root``; else one logger writing to ``log_root/<name of run_dir>``."""
    if log_root is None:
        return []
    run_dir = Path(run_dir) if run_dir is not None else None
    name = run_dir.resolve().name if run_dir is not None else "run"
    return [TensorBoardLogger(Path(log_root) / name, run_dir)]
