"""One run end to end: data, tasks, backbone, sparse learner, training, evaluation, outputs.

The accuracy matrix ``R`` (percent) is filled after each task ``i``:

* ``R[i][j]`` for ``j <= i``: task j's test set through task j's mask and logits (task-incremental);
* ``R[i][j]`` for ``j > i``: task j's test set through task i's mask and task i's logits (the
  reference code's forward-transfer evaluation, used by ``fwt_reference``).

``baseline[j]`` is the untrained network (its initial dense weights) on task j with task j's logits;
GEM's FWT compares ``R[j-1][j]`` against it. Metrics are rewritten after every task, so a run that
stops early keeps everything it finished.

Checkpoints: after every epoch (but the last of a task) and after every task, a checkpoint holds the
weights, the learner (owners, masks, the task in progress, its RNG), the optimizer and scheduler, all
RNG states and the results so far. ``resume_experiment`` continues from the newest readable one;
on the CPU the result is bit-identical to an uninterrupted run with the same seed.
"""

from __future__ import annotations

import json
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from . import faults, metrics
from .checkpoint import CheckpointWarning, Checkpointer
from .config import RunConfig, resolve, sparse_config
from .hashing import config_hash
from .data import BatchAugment, load_dataset, make_tasks
from .errors import ConfigError, DstclError
from .models import build_model, output_weight, set_task
from .rundir import RunDir, environment, run_status
from .sparse import CapacityWarning, SparseLearner
from .train.evaluate import EVAL_BATCH_SIZE, EvalSet, accuracy
from .train.trainer import TaskTrainer, TrainConfig

CHECKPOINT_VERSION = 1


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    config: RunConfig


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for but CUDA is not available here; use --device cpu or auto.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r} does not exist: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}.")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"device {name!r} (Apple GPU) is not available here; use --device cpu or auto.")
    return device


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def rng_states() -> dict:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def run_experiment(
    cfg: RunConfig,
    *,
    echo: Callable[[str], None] = print,
    run_dir: str | Path | None = None,
    loggers: Sequence[Callable[[dict], None]] = (),
) -> RunResult:
    """Run ``cfg`` and write its run directory; returns the directory and the metrics.

    ``run_dir`` names the directory exactly (sweeps); by default a new unique one is made under
    ``cfg.out``. Every event written to ``events.jsonl`` is also passed to each of ``loggers``.
    """
    experiment = Experiment(cfg, echo=echo)  # data and model first: a bad input leaves no run folder
    run = RunDir.at(run_dir) if run_dir is not None else RunDir.create(cfg.out, cfg.dataset)
    return experiment.execute(run, loggers=loggers, resume=False)


def resume_experiment(
    run_dir: str | Path,
    *,
    echo: Callable[[str], None] = print,
    loggers: Sequence[Callable[[dict], None]] = (),
    overrides: dict | None = None,
) -> RunResult:
    """Continue the run in ``run_dir`` from its newest readable checkpoint (completed tasks are kept)."""
    run = RunDir.reopen(run_dir)  # takes the run's lock: a run still going is refused here
    try:
        try:
            saved = json.loads((run.path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise DstclError(f"cannot read {run.path / 'config.json'}: {exc}.") from None
        if not isinstance(saved, dict):
            raise DstclError(f"{run.path / 'config.json'} does not hold a run configuration (a JSON object); "
                             "it was changed by hand or is not a dstcl run directory.")
        if run_status(run.path) == "completed":
            raise DstclError(f"the run in {run.path} is already completed; nothing to resume.")
        fields = {k: v for k, v in saved.items() if k in RunConfig.__dataclass_fields__}
        cfg = resolve({**fields, **(overrides or {})})
        experiment = Experiment(cfg, echo=echo)
    except BaseException:
        run.close()
        raise
    return experiment.execute(run, loggers=loggers, resume=True)


class Experiment:
    """Builds everything a run needs from its config, then executes (or resumes) it."""

    def __init__(self, cfg: RunConfig, *, echo: Callable[[str], None] = print):
        self.cfg, self.echo = cfg, echo
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
        self.generator = seed_everything(cfg.seed)
        dataset = load_dataset(
            cfg.dataset, cfg.data_dir, download=cfg.download, progress=cfg.progress,
            image_size=cfg.image_size, num_classes=cfg.num_classes, seed=cfg.seed,
            **({"split": cfg.split} if cfg.dataset == "miniimagenet" else {}),
        )
        self.tasks = make_tasks(dataset, cfg.tasks, cfg.class_order, cfg.seed)
        self.per_task = len(self.tasks[0].classes)
        self.heads = [slice(i * self.per_task, (i + 1) * self.per_task) for i in range(cfg.tasks)]
        channels, height, _ = dataset.image_shape
        options = {k: v for k, v in {"width": cfg.width, "stem": cfg.stem}.items() if v is not None}
        try:
            self.model = build_model(
                cfg.backbone, num_classes=dataset.num_classes, in_channels=channels, image_size=height,
                bn=cfg.bn, max_tasks=cfg.tasks, **options,
            ).to(self.device)
            heads = {output_weight(self.model, dataset.num_classes): self.heads}  # task i trains only its rows
            self.learner = SparseLearner(self.model, sparse_config(cfg), seed=cfg.seed, num_tasks=cfg.tasks, heads=heads)
        except (MemoryError, RuntimeError) as exc:
            if not isinstance(exc, MemoryError) and "alloc" not in str(exc).lower():
                raise
            raise DstclError(
                f"the {cfg.backbone} network does not fit in memory on {self.device} "
                f"({str(exc).splitlines()[0][:160]}); use a smaller --width or another --backbone."
            ) from None
        self.train_config = TrainConfig(
            epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, optimizer=cfg.optimizer,
            momentum=cfg.momentum, weight_decay=cfg.weight_decay,
        )
        self.augment = BatchAugment(dataset.crop_padding, dataset.hflip, dataset.mean, dataset.std)
        T = cfg.tasks
        self.R: list[list[float | None]] = [[None] * T for _ in range(T)]
        self.baseline: list[float] | None = None
        self.capacity: list[dict] = []
        self.next_task = 0
        self.trainer_state: dict | None = None

    # --- evaluation -------------------------------------------------------------------------------

    def _prepare(self, xb: torch.Tensor) -> torch.Tensor:
        return self.augment(xb, None, train=False)

    def _accuracy(self, weights_of: int, data_of: int, head: int) -> float:
        set_task(self.model, weights_of)
        t = self.on_device[data_of]
        return accuracy(self.model, t.test, self.heads[head], self._prepare,
                        batch_size=EVAL_BATCH_SIZE, device=self.device)

    def _evaluate_after(self, i: int) -> None:
        faults.point("evaluation")
        for j in range(i + 1):
            self.learner.apply_task(j)
            self.R[i][j] = self._accuracy(j, j, j)
        self.learner.apply_task(i)
        for j in range(i + 1, self.cfg.tasks):
            self.R[i][j] = self._accuracy(i, j, i)

    # --- checkpoints ------------------------------------------------------------------------------

    def _checkpoint(self, phase: str, task: int, trainer: TaskTrainer | None) -> None:
        self.checkpointer.save({
            "version": CHECKPOINT_VERSION, "phase": phase, "task": task, "config": config_hash(self.cfg),
            "model": self.model.state_dict(), "learner": self.learner.state_dict(),
            "trainer": trainer.state_dict() if trainer is not None else None,
            "generator": self.generator.get_state(), "rng": rng_states(),
            "R": self.R, "baseline": self.baseline, "capacity": self.capacity,
        })

    def _restore(self, payload: dict) -> None:
        if payload.get("version") != CHECKPOINT_VERSION:
            raise DstclError(f"checkpoint version {payload.get('version')} is not supported by this dstcl.")
        saved = payload.get("config")  # absent in checkpoints written before the hash was recorded
        if saved is not None and saved != config_hash(self.cfg):
            raise DstclError(
                "the newest checkpoint in this run directory was written by a run with other settings than its "
                "config.json (the folder was reused); resuming would continue the wrong run. Start it again "
                "with --run-dir or in a new folder."
            )
        self.model.load_state_dict(payload["model"])
        self.learner.load_state_dict(payload["learner"])
        self.generator.set_state(payload["generator"])
        set_rng_states(payload["rng"])
        self.R, self.baseline, self.capacity = payload["R"], payload["baseline"], payload["capacity"]
        if payload["phase"] == "task_done":
            self.next_task, self.trainer_state = payload["task"] + 1, None
        else:
            self.next_task, self.trainer_state = payload["task"], payload["trainer"]

    # --- the run ----------------------------------------------------------------------------------

    def execute(self, run: RunDir, *, loggers: Sequence[Callable[[dict], None]] = (), resume: bool = False) -> RunResult:
        cfg = self.cfg
        run.lock()
        if loggers:
            write_event = run.event

            def fan_out(record: dict) -> None:
                write_event(record)
                for logger in loggers:
                    logger(record)

            run.event = fan_out  # type: ignore[method-assign]
        self.checkpointer = Checkpointer(run.path / "checkpoints")
        self.on_device = [_to_device(t, self.device) for t in self.tasks]
        if resume:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", CheckpointWarning)
                found = self.checkpointer.load_latest()
            for warning in caught:
                self.echo(f"warning: {warning.message}")
                run.event({"event": "warning", "message": str(warning.message)})
            if found is not None:
                self._restore(found[0])
                self.echo(f"resuming {run.path} from {found[1].name}: task {self.next_task + 1}/{cfg.tasks}"
                          + (f", epoch {self.trainer_state['epochs_done'] + 1}" if self.trainer_state else ""))
                run.event({"event": "resumed", "checkpoint": found[1].name, "task": self.next_task})
            else:
                self.echo(f"no readable checkpoint in {run.path}; starting it from the beginning.")
        else:
            resolved = {**cfg.as_dict(), "density": cfg.density, "resolved_device": str(self.device),
                        "classes_per_task": self.per_task, "task_classes": [t.classes for t in self.tasks]}
            run.write_json("config.json", resolved)
        run.write_json("environment.json", environment(self.device))
        self.echo(f"run directory: {run.path}")
        status = "running"
        error = None
        try:
            if self.baseline is None:
                self.baseline = [self._accuracy(j, j, j) for j in range(cfg.tasks)]
                run.event({"event": "baseline", "accuracy": self.baseline})
            bar = _progress_factory(cfg.progress)
            for i in range(self.next_task, cfg.tasks):
                self._learn_task(i, run, bar)
            status = "completed"
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            error = f"{type(exc).__name__}: {exc}"
            run.event({"event": "run_failed", "status": status, "error": error})
            raise
        finally:
            try:
                self.checkpointer.wait()
            finally:
                final = self._metrics(status, error)
                run.write_json("metrics.json", final)
                if status == "completed":
                    run.save_torch("state.pt", self.learner.state.to_payload())
                    run.save_torch("weights.pt", {n: l.values.cpu() for n, l in self.learner.state.by_name.items()})
                    run.write_text("summary.md", format_summary(final, cfg, run.path))
                run.event({"event": "run_end", "status": status})
                run.close()
        return RunResult(run.path, final, cfg)

    def _learn_task(self, i: int, run: RunDir, bar) -> None:
        cfg, T = self.cfg, self.cfg.tasks
        task = self.on_device[i]
        set_task(self.model, i)
        trainer = TaskTrainer(
            self.model, self.learner, i, task.train_x, task.train_y, self.heads[i],
            lambda xb, g: self.augment(xb, g, train=True), self.train_config,
            generator=self.generator, device=self.device, log=run.event,
        )
        if self.trainer_state is not None:
            trainer.load_state_dict(self.trainer_state)
            self.trainer_state = None
        else:
            trainer.begin()
        progress = bar(trainer.total_steps, f"task {i + 1}/{T}") if bar else None
        if progress is not None:
            progress.update(trainer.epochs_done * trainer.per_epoch)
        while not trainer.finished:
            event = trainer.run_epoch(on_step=(lambda: progress.update(1)) if progress is not None else None)
            if progress is not None:
                progress.set_postfix(loss=f"{event['loss']:.3f}", acc=f"{event['train_accuracy']:.1f}")
            if not trainer.finished and self.checkpointer.due(cfg.checkpoint_budget):
                self._checkpoint("training", i, trainer)
        if progress is not None:
            progress.close()
        faults.point("task_end")
        masks = {name: mask.clone() for name, mask in self.learner.current_masks().items()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CapacityWarning)
            report = self.learner.end_task()
        for warning in caught:
            run.event({"event": "warning", "task": i, "message": str(warning.message)})
            self.echo(f"warning: {warning.message}")
        run.save_mask(i, masks)
        self.capacity.append({"task": i, "layers": [row.as_dict() for row in report]})
        run.write_json("capacity.json", self.capacity)
        self._evaluate_after(i)
        summary = trainer.summary()
        # the checkpoint first: once task_end and metrics.json say the task is done, a resume never redoes it
        self._checkpoint("task_done", i, None)
        self.checkpointer.wait()
        run.event({"event": "task_end", "task": i, **summary, "accuracy": self.R[i][: i + 1]})
        run.write_json("metrics.json", self._metrics("running", None))
        self.echo(f"task {i + 1}/{T}: accuracy {self.R[i][i]:.2f} %, mean over seen tasks "
                  f"{np.mean([self.R[i][j] for j in range(i + 1)]):.2f} % ({summary['seconds']:.1f} s)")

    def _metrics(self, status: str, error: str | None) -> dict:
        R, baseline = self.R, self.baseline
        done = sum(1 for row in R if row[0] is not None)
        out = {"status": status, "tasks_completed": done, "accuracy_matrix": R, "baseline_accuracy": baseline}
        if error is not None:
            out["error"] = error
        if done:
            partial = [row[:done] for row in R[:done]]
            out.update(metrics.summarize(partial, baseline[:done] if baseline else None))
        else:
            out.update({"acc": None, "bwt": None, "fwt": None, "fwt_reference": None, "incremental_accuracy": []})
        return out


@dataclass
class _DeviceTask:
    train_x: torch.Tensor
    train_y: torch.Tensor
    test: EvalSet  # in its canonical class-mixed order (never the order the reader stored)


def _to_device(task, device: torch.device) -> _DeviceTask:
    return _DeviceTask(task.train_x.to(device), task.train_y.to(device), EvalSet(task.test_x, task.test_y).to(device))


def _progress_factory(enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return lambda total, desc: tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)


def format_summary(m: dict, cfg: RunConfig, path: Path) -> str:
    """Markdown table of the accuracy matrix and the summary metrics."""
    R = m["accuracy_matrix"]
    T = len(R)
    lines = [
        f"# dstcl run: {cfg.dataset}, {T} tasks, {cfg.backbone}, {cfg.init} + {cfg.growth}, sparsity {cfg.sparsity:g}",
        "",
        f"Run directory: `{path}`",
        "",
        "Accuracy (%) on each task (columns) after learning task (rows); above the diagonal: future",
        "tasks through the current task's mask and head (reference FWT).",
        "",
        "| after \\ task | " + " | ".join(str(j) for j in range(T)) + " |",
        "|---|" + "---|" * T,
    ]
    for i, row in enumerate(R):
        cells = ["" if v is None else f"{v:.2f}" for v in row]
        lines.append(f"| {i} | " + " | ".join(cells) + " |")
    fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
    lines += [
        "",
        f"ACC {fmt(m.get('acc'))} %   BWT {fmt(m.get('bwt'))}   FWT {fmt(m.get('fwt'))}   "
        f"FWT (reference) {fmt(m.get('fwt_reference'))}",
        "",
    ]
    return "\n".join(lines)
