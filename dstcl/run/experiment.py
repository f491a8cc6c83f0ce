"""One run end to end: data, tasks, backbone, learner, training, evaluation, outputs.

Metrics are rewritten after every task, so a run that stops early keeps everything it finished.
Checkpoints (after every epoch within a time budget, and after every task) hold the weights, the
learner, optimizer, scheduler, every RNG state and the results so far; a run continues from the newest
readable one (``--resume``, or the same command in the same ``--run-dir``), bit-identically on the CPU
at the same seed and thread count.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .. import faults
from ..config import RESOLVED, RunConfig, from_flat, saved_settings
from ..data import BatchAugment, load_dataset, make_tasks
from ..data.similarity import similarity_facts
from ..errors import DstclError
from ..models import build_model, output_weight, reestimate_statistics, set_task
from ..models.probe import weight_uses
from ..sparse import CapacityWarning, prunable_parameters
from ..sparse.criteria import grow_needs
from ..train.evaluate import EvalSet, EvalProtocol, eval_batches
from ..train.gathered import GatheredTraining
from ..train.precision import memory_format
from ..train.trainer import TaskTrainer
from .agnostic import DEFAULT_CRITERION, agnostic_accuracy
from .checkpoint import Checkpointer
from .compute import ComputeLedger
from .environment import Terminated, capped_threads, environment, release_free_memory, resolve_device
from .environment import seed_everything, use_threads
from .integrity import FILES, FileDigests, mask_file, repair_masks, write_results
from .matrix import AccuracyMatrix
from .phases import check_updates, make_learner, method_of, training_phases
from .resume import RunParts, resume_from_checkpoint, save_checkpoint
from .reuse import decide
from .rundir import CAPACITY, CHECKPOINTS, COMPLETED, CONFIG, ENVIRONMENT, METRICS, SUMMARY
from .rundir import RunDir, read_config, read_metrics, run_status
from .summary import format_summary

@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    config: RunConfig


def run_experiment(cfg: RunConfig, *, echo: Callable[[str], None] = print, run_dir: str | Path | None = None,
                   loggers: Sequence[Callable[[dict], None]] = (), fresh: bool = False) -> RunResult:
    """Run ``cfg`` and write its run directory; returns the directory and the metrics.

    ``run_dir`` names the directory exactly; if it already holds this run (same settings), an
    unfinished one is resumed and a completed one returned as it is, and a run with other settings is
    refused unless ``fresh`` (which discards it). By default a new unique folder is made under
    ``cfg.run.out``. Every event written to ``events.jsonl`` is also passed to each of ``loggers``.
    """
    if run_dir is not None:
        reuse = decide(run_dir, cfg, fresh=fresh)  # refuses before any data is read
        if reuse.action == "done":
            echo(reuse.note)
            return RunResult(Path(run_dir), read_metrics(Path(run_dir)), cfg)
        if reuse.action == "resume":
            echo(reuse.note)
            return resume_experiment(run_dir, echo=echo, loggers=loggers,
                                     overrides={"device": cfg.run.device, "progress": cfg.run.progress})
    experiment = Experiment(cfg, echo=echo)  # data and model first: a bad input leaves no run folder
    run = RunDir.fresh(run_dir) if run_dir is not None else RunDir.create(cfg.run.out, cfg.data.dataset)
    for logger in loggers:
        run.subscribe(logger)
    return experiment.execute(run, resume=False)


def resume_experiment(run_dir: str | Path, *, echo: Callable[[str], None] = print,
                      loggers: Sequence[Callable[[dict], None]] = (), overrides: dict | None = None) -> RunResult:
    """Continue the run in ``run_dir`` from its newest readable checkpoint (completed tasks are kept).

    It runs with its recorded settings, thread count included; only ``overrides`` (device, progress) change.
    """
    run = RunDir.reopen(run_dir)  # takes the run's lock: a run still going is refused here
    try:
        saved = read_config(run.path)
        if run_status(run.path) == COMPLETED:  # as the same command with --run-dir: nothing to do, not an error
            run.close()
            echo(f"{run.path} already holds this run, completed; nothing to resume.")
            return RunResult(run.path, read_metrics(run.path), from_flat(saved_settings(saved)))
        cfg = from_flat({**saved_settings(saved), **{k: v for k, v in (overrides or {}).items() if v is not None}})
        experiment = Experiment(cfg, echo=echo)
    except BaseException:
        run.close()
        raise
    for logger in loggers:
        run.subscribe(logger)
    return experiment.execute(run, resume=True)


class Experiment:
    """Builds everything a run needs from its config, checks it, then executes (or resumes) it."""

    def __init__(self, cfg: RunConfig, *, echo: Callable[[str], None] = print):
        self.cfg, self.echo = cfg, echo
        self.threads = use_threads(capped_threads(cfg.run.threads, echo))  # never more threads than CPUs
        self.device = resolve_device(cfg.run.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
        self.generator = seed_everything(cfg.run.seed)
        self.method = method_of(cfg)
        data, model_cfg = cfg.data, cfg.model
        dataset = load_dataset(data.dataset, data.data_dir, download=data.download, progress=cfg.run.progress,
                               num_classes=data.num_classes, seed=cfg.run.seed, **data.options)
        self.similarity = data.class_similarity()  # clustered / interleaved: what the order is built from
        self.tasks = make_tasks(dataset, data.tasks, data.class_order, cfg.run.seed, self.similarity)
        self.per_task = len(self.tasks[0].classes)
        self.heads = [slice(i * self.per_task, (i + 1) * self.per_task) for i in range(data.tasks)]
        channels, height, _ = dataset.image_shape
        try:
            self.model = build_model(model_cfg.backbone, num_classes=dataset.num_classes, in_channels=channels,
                                     image_size=height, bn=model_cfg.bn, max_tasks=data.tasks,
                                     **model_cfg.options).to(self.device)
            self.learner = make_learner(cfg, self.model, self.heads, output_weight(self.model, dataset.num_classes))
        except (MemoryError, RuntimeError) as exc:
            if not isinstance(exc, MemoryError) and "alloc" not in str(exc).lower():
                raise
            raise DstclError(
                f"the {model_cfg.backbone} network does not fit in memory on {self.device} "
                f"({str(exc).splitlines()[0][:160]}); use a smaller --width or another --backbone."
            ) from None
        self.augment = BatchAugment(dataset.crop_padding, dataset.hflip, dataset.mean, dataset.std)
        self.memory_format = memory_format(cfg.train.precision, self.device, self.model)
        self.class_names, self.image_shape = list(dataset.class_names), dataset.image_shape
        self.shapes = {name: tuple(p.shape) for name, p in prunable_parameters(self.model)}
        self.compute = ComputeLedger(weight_uses(self.model, dataset.image_shape, self.shapes), self.shapes,
                                     output_weight(self.model, dataset.num_classes), self.heads)
        self.updates_per_task = check_updates(cfg, [len(t.train_y) for t in self.tasks], self.echo)
        self.capacity: list[dict] = []
        self._noted_full = False
        self.agnostic: dict | None = None
        self.next_task = 0
        self.trainer_state: dict | None = None

    # --- the run ----------------------------------------------------------------------------------

    def resolved_config(self) -> dict:
        """config.json: the flat settings (the thread count as used) and, under ``resolved``, derived facts."""
        return {**self.cfg.flat(), "threads": self.threads,
                RESOLVED: {"protocol": self.cfg.protocol, "density": self.cfg.density, "device": str(self.device), "classes_per_task": self.per_task,
                           "task_classes": [t.classes for t in self.tasks], "class_names": self.class_names,
                           "image_shape": list(self.image_shape), "mean": list(self.augment.mean),
                           "std": list(self.augment.std), "num_classes": len(self.class_names),
                           "classifier": self.compute.head_layer,
                           **similarity_facts(self.similarity, self.class_names, [t.classes for t in self.tasks])}}

    def execute(self, run: RunDir, *, resume: bool = False) -> RunResult:
        run.lock()
        self.checkpointer = Checkpointer(run.path / CHECKPOINTS)
        self.train_data = [(x.to(self.device), y.to(self.device), head) for x, y, head in
                           training_phases(self.method, self.tasks, self.heads)]
        tests = [EvalSet(t.test_x, t.test_y).to(self.device) for t in self.tasks]  # canonical class-mixed order
        run_cfg = self.cfg.run
        self.matrix = AccuracyMatrix(self.model, self.learner, self.heads, tests, self._prepare_test, self.device,
                                     mode=run_cfg.eval, precision=self.cfg.train.precision,
                                     isolated=self.method.sparse,
                                     protocol=EvalProtocol(run_cfg.eval_logits, run_cfg.test_augment,
                                                           run_cfg.test_order, run_cfg.seed),
                                     gather=self.image_shape if self.cfg.sparse.structure == "channel" else None)
        self.files = FileDigests(run.path)
        if resume:
            point = resume_from_checkpoint(self.checkpointer, self._parts(), run, self.echo)
            self.next_task, self.trainer_state, self.capacity = point.next_task, point.trainer_state, point.capacity
            if self.method.sparse:
                repair_masks(run, self.learner.state, self.learner.learned_tasks, self.echo)
                for task in range(self.learner.learned_tasks):
                    self.files.record(mask_file(task))
        else:
            run.write_json(CONFIG, self.resolved_config())
        run.write_json(ENVIRONMENT, environment(self.device))
        self.echo(f"run directory: {run.path}")
        status, error = "running", None
        try:
            if self.matrix.wants_baseline:
                run.event({"event": "baseline", "accuracy": self.matrix.measure_baseline()})
            bar = _progress_factory(self.cfg.run.progress)
            for i in range(self.next_task, len(self.train_data)):
                self._learn_task(i, run, bar)
            if self.cfg.run.agnostic and self.agnostic is None:
                self.agnostic = agnostic_accuracy(self.model, self.learner.apply_task, self.heads, self.matrix.tests,
                                                  self.matrix.prepare, self.device, self.cfg.train.precision)
                run.event({"event": "agnostic", **self.agnostic})
            status = COMPLETED
        except KeyboardInterrupt as exc:
            status, error = "interrupted", ("terminated by SIGTERM" if isinstance(exc, Terminated) else "stopped by Ctrl-C")
            run.event({"event": "run_failed", "status": status, "error": error})
            exc.dstcl_run_dir = run.path  # type: ignore[attr-defined]  # the CLI prints the resume command
            raise
        except BaseException as exc:
            status, error = "failed", f"{type(exc).__name__}: {exc}"
            run.event({"event": "run_failed", "status": status, "error": error})
            if isinstance(exc, (OSError, DstclError)) and self.matrix.completed:
                exc.dstcl_run_dir = run.path  # type: ignore[attr-defined]
            raise
        finally:
            status = self._finish(run, status, error)
        return RunResult(run.path, self._metrics(status, error), self.cfg)

    def _finish(self, run: RunDir, status: str, error: str | None) -> str:
        """Write the final files whatever happened; returns the final status."""
        late: DstclError | None = None
        try:
            try:
                self.checkpointer.wait()
            except DstclError as exc:  # a background write failed (a full disk): the run did not complete
                if status == COMPLETED:
                    status, error, late = "failed", str(exc), exc
            if status == COMPLETED:
                try:  # every result file first: metrics.json saying "completed" is the last write
                    write_results(run, self.files, self.learner, self.model)
                except (OSError, DstclError) as exc:  # a full disk: the run can be resumed to write them
                    status, error = "failed", f"writing the final files failed: {exc}"
                    late = exc if isinstance(exc, DstclError) else DstclError(error)
                    late.dstcl_run_dir = run.path  # type: ignore[attr-defined]  # the CLI adds the resume command
            final = self._metrics(status, error)
            if status != COMPLETED:
                final["resume"] = f"dstcl run --resume {run.path}"
            else:
                run.write_text(SUMMARY, format_summary(final, self.cfg.flat(), run.path,
                                                       [t.classes for t in self.tasks]))
            faults.point("final_write")
            run.write_json(METRICS, final)
            run.event({"event": "run_end", "status": status})
        finally:
            run.close()
        if late is not None:
            raise late
        return status

    def _learn_task(self, i: int, run: RunDir, bar) -> None:
        cfg, T = self.cfg, self.cfg.data.tasks
        train_x, train_y, head = self.train_data[i]
        set_task(self.model, i)
        trainer = TaskTrainer(
            self.model, self.learner, i, train_x, train_y, head,
            lambda xb, g: self._format(self.augment(xb, g, train=True)), cfg.train,
            generator=self.generator, device=self.device, log=run.event, network=self._training_network(i),
            rank_logits=cfg.run.eval_logits,
        )
        if self.trainer_state is not None:
            trainer.load_state_dict(self.trainer_state)
            self.trainer_state = None
        else:
            trainer.begin()
        progress = bar(trainer.total_steps, f"task {i + 1}/{len(self.train_data)}") if bar else None
        if progress is not None:
            progress.update(trainer.epochs_done * trainer.per_epoch)
        while not trainer.finished:
            event = trainer.run_epoch(on_step=(lambda: progress.update(1)) if progress is not None else None)
            if progress is not None:
                progress.set_postfix(loss=f"{event['loss']:.3f}", acc=f"{event['train_accuracy']:.1f}")
            if not trainer.finished and self.checkpointer.due(cfg.run.checkpoint_budget):
                save_checkpoint(self.checkpointer, self._parts(), "training", i, trainer)
        if progress is not None:
            progress.close()
        faults.point("task_end")
        masks = {name: mask.clone() for name, mask in self.learner.current_masks().items()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CapacityWarning)
            report = self.learner.end_task()
        for warning in caught:
            run.event({"event": "capacity", "task": i, "message": str(warning.message)})
        full = [row.name for row in report if row.free == 0 and row.new_fraction > 0]
        if full and not self._noted_full and i < T - 1:  # information, once per run
            self._noted_full = True
            self.echo(f"note: task {i} now owns every weight of {len(full)} layer(s) ({', '.join(full[:3])}"
                      f"{', ...' if len(full) > 3 else ''}); later tasks reuse them read-only. Expected when ERK keeps "
                      "small layers dense; per-layer use is in capacity.json.")
        growth = self.learner.plan.for_task(i) if self.method.sparse else None
        self.compute.record_phase(i, masks, len(trainer.train_y), len(self.tasks), self.cfg, growth,
                                  self.updates_per_task[i], sequential=self.method.sequential, shapes=self.shapes,
                                  epochs=trainer.epochs)
        if self.cfg.model.bn == "task" and self.method.sequential:  # statistics of the final weights,
            images = EvalSet(trainer.train_x, trainer.train_y).x  # from class-mixed batches (never stored order)
            prepare = self._prepare_test
            reestimate_statistics(self.model, i, (prepare(images[a:b]) for a, b in eval_batches(len(images), 128)))
        if masks:  # a dense learner has none
            run.save_mask(i, masks)
            self.files.record(mask_file(i))
            self.capacity.append({"task": i, "layers": [row.as_dict() for row in report],
                                  "inference": self.compute.per_task[-1] | self.compute.dense_figures()})
            run.write_json(CAPACITY, self.capacity)
        self.matrix.after_task(i) if self.method.sequential else self.matrix.after_joint()
        summary = {**trainer.summary(), "topology_updates": self.updates_per_task[i]}
        # the checkpoint first: once task_end and metrics.json say the task is done, a resume never redoes it
        save_checkpoint(self.checkpointer, self._parts(), "task_done", i, None, blocking=True)  # now: no copy
        release_free_memory()
        R = self.matrix.R
        row = R[i] if self.method.sequential else R[-1]
        seen = row[: i + 1] if self.method.sequential else row
        run.event({"event": "task_end", "task": i, **summary, "accuracy": seen})
        run.write_json(METRICS, self._metrics("running", None))
        if self.method.sequential:
            self.echo(f"task {i + 1}/{T}: accuracy {R[i][i]:.2f} %, mean over seen tasks {np.mean(seen):.2f} % "
                      f"({summary['seconds']:.1f} s)")
        else:
            self.echo(f"all {T} tasks at once: mean accuracy {np.mean(seen):.2f} % ({summary['seconds']:.1f} s)")

    def _parts(self) -> RunParts:
        return RunParts(self.cfg, self.model, self.learner, self.generator, self.matrix, self.compute, self.capacity)

    def _training_network(self, i: int):
        """``--channel-training gathered``: the live-channel network for task ``i``'s steps; else None."""
        if self.cfg.train.channel_training != "gathered":
            return None
        needs_gradient = grow_needs(self.learner.plan.for_task(i)) == "gradient"
        return GatheredTraining(self.model, self.learner, self.image_shape, needs_gradient).network

    def _prepare_test(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A test batch as the network takes it; with a generator (``--test-augment reference``) cropped and
        flipped like a training batch."""
        return self._format(self.augment(x, generator, train=generator is not None))

    def _format(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=self.memory_format)

    def _metrics(self, status: str, error: str | None) -> dict:
        out = {"status": status, **self.matrix.summary(), "topology_updates_per_task": self.updates_per_task,
               "compute": self.compute.summary(), FILES: self.files.as_dict()}
        if self.agnostic is not None:
            out["task_inference_accuracy"] = self.agnostic["task_inference"][DEFAULT_CRITERION]
            out["class_incremental_accuracy"] = self.agnostic["class_incremental"][DEFAULT_CRITERION]
            out["agnostic"] = {**self.agnostic, "criterion": DEFAULT_CRITERION}
        if error is not None:
            out["error"] = error
        return out


def _progress_factory(enabled: bool):
    """Progress bars on a terminal; elsewhere (a log file, a pipe) one line per task is enough."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm

    return lambda total, desc: tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr, dynamic_ncols=True)
