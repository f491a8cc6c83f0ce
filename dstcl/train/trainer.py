"""Training of one task: batches, optimizer, learning-rate schedule, DST steps, progress.

Per task a fresh optimizer (the reference: Adam, lr 1e-3), the learning rate multiplied by 0.1 after
epochs ``int(0.5 * E)`` and ``int(0.75 * E)`` (the reference's MultiStepLR, truncation included; see
:func:`~dstcl.train.config.lr_milestones`), and a DST topology update every
``update_frequency`` optimizer steps through the :class:`~dstcl.sparse.SparseLearner`.

:class:`TaskTrainer` runs one epoch at a time and exposes its whole state (optimizer, scheduler,
batch-order and augmentation RNGs), so a run killed between epochs resumes bit-identically.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import torch
from torch import nn

from .. import faults
from ..errors import DstclError
from .config import TrainConfig, lr_milestones
from .contract import Learner
from .precision import autocast, grad_scaler


class NumericalError(DstclError):
    """The loss became NaN or infinite."""


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Number of batches per epoch; a last batch of one sample is skipped (BatchNorm needs two)."""
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 else 0)


def batch_indices(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """A seeded random permutation cut into batches (see :func:`steps_per_epoch`)."""
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        if len(idx) >= 2:
            yield idx


Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Head = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class SliceHead:
    """A task's head: the logits of its classes, labels local to them (multi-head by slicing); ``offset``
    turns a local label into its global class index (the argmax over every class's logits needs it)."""

    def __init__(self, logit_slice: slice):
        self.slice, self.offset = logit_slice, logit_slice.start or 0

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return logits[:, self.slice], y


def slice_head(logit_slice: slice) -> Head:
    return SliceHead(logit_slice)


def joint_head(per_task: int, tasks: int) -> Head:
    """All tasks at once (multitask training): labels are global, and each sample's loss and prediction
    use only its own task's logits (the others are masked to -inf), as task-incremental evaluation does."""
    def head(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        block = torch.arange(logits.shape[1], device=logits.device) // per_task
        own = block.unsqueeze(0) == (y // per_task).unsqueeze(1)
        return logits.masked_fill(~own, float("-inf")), y
    return head


class TaskTrainer:
    """Trains one task epoch by epoch; ``state_dict``/``load_state_dict`` make it resumable."""

    def __init__(
        self,
        model: nn.Module,
        learner: Learner,
        task: int,
        train_x: torch.Tensor,
        train_y: torch.Tensor,
        logit_slice: slice | Head,
        augment: Augment,
        config: TrainConfig,
        *,
        generator: torch.Generator,
        device: torch.device,
        log: Callable[[dict], None] = lambda event: None,
        network: Callable[[], nn.Module] | None = None,
        rank_logits: str = "task",
    ):
        """``network``: the module the next step runs (default ``model``; gathered channel training gives
        a smaller network sharing ``model``'s parameters: :mod:`dstcl.train.gathered`). ``rank_logits``:
        with ``kept_epoch="best-train"``, epochs are ranked by the training accuracy over the task's
        logits (``task``) or over every class's (``all``, as the reference code measures it)."""
        self.model, self.learner, self.task = model, learner, task
        self.network = network or (lambda: model)
        self.train_x, self.train_y = train_x, train_y
        self.head = logit_slice if callable(logit_slice) else slice_head(logit_slice)
        self.rank_all = rank_logits == "all"
        self.best: dict | None = None  # kept_epoch best-train: the best epoch's network and masks so far
        self.augment, self.config, self.generator, self.device, self.log = augment, config, generator, device, log
        self.per_epoch = steps_per_epoch(len(train_y), config.batch_size)
        if self.per_epoch == 0:
            raise DstclError(f"task {task} has {len(train_y)} training images; at least 2 are needed for a batch.")
        # a learner may add epochs after the main phase (PackNet retrains after pruning); the learning-rate
        # milestones stay those of config.epochs, so the added epochs run at the final rate
        self.epochs = config.epochs + int(getattr(learner, "extra_epochs", 0))
        self.total_steps = self.per_epoch * self.epochs
        self.aug_generator = torch.Generator()  # CPU: BatchAugment draws on the CPU, same numbers on any device
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler = None
        self.epochs_done = 0
        self.seconds = 0.0
        self.last: dict = {}
        self.loss_fn = nn.CrossEntropyLoss()
        self.scaler = grad_scaler(config.precision, device)  # fp16 only

    def begin(self) -> None:
        """Start the task: initial topology, fresh optimizer and schedule, augmentation seed."""
        self.learner.start_task(self.task, self.total_steps)
        self._make_optimizer()
        self.aug_generator.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self.generator)))

    def _make_optimizer(self) -> None:
        c = self.config
        self.optimizer = self.learner.make_optimizer(c.optimizer, c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, lr_milestones(c.epochs, c.lr_milestones), gamma=c.lr_gamma
        )

    def run_epoch(self, on_step: Callable[[], None] | None = None) -> dict:
        """Train one epoch; returns (and logs) the epoch event."""
        assert self.optimizer is not None, "call begin() or load_state_dict() first"
        epoch = self.epochs_done
        lr = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trains with (before the scheduler steps)
        started = time.perf_counter()
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        correct_all = torch.zeros((), device=self.device, dtype=torch.long)
        offset = getattr(self.head, "offset", 0)
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        seen = 0
        for step, idx in enumerate(batch_indices(len(self.train_y), self.config.batch_size, self.generator)):
            idx = idx.to(self.device)
            xb = self.augment(self.train_x[idx], self.aug_generator)
            yb = self.train_y[idx]
            with autocast(self.config.precision, self.device):
                out = self.network()(xb)
                logits, yb = self.head(out, yb)
                loss = self.loss_fn(logits, yb)
            if faults.poisoned("loss"):
                loss = loss * float("nan")
            self.optimizer.zero_grad(set_to_none=True)
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            faults.point("training_step")
            report = self.learner.step(self.optimizer, self.scaler, loss=loss)
            detached = loss.detach()
            # remember the first non-finite step without a device sync per step
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(detached), step, first_bad)
            loss_sum += detached * len(idx)
            correct += (logits.detach().argmax(1) == yb).sum()
            if self.rank_all:
                correct_all += (out.detach().argmax(1) == yb + offset).sum()
            seen += len(idx)
            if report is not None:
                faults.point("topology_update")
                self.log({"event": "topology_update", "task": self.task, "step": report.step,
                          "drop_fraction": report.drop_fraction, "growth": report.growth,
                          "dropped": report.total_dropped, "grown_reused": sum(report.grown_reused.values()),
                          **({"auto_reward": report.auto_reward} if report.auto_reward is not None else {})})
            if on_step is not None:
                on_step()
        bad = int(first_bad)
        if bad >= 0:
            raise NumericalError(
                f"the training loss became NaN or infinite in task {self.task}, epoch {epoch}, step {bad} of "
                "the epoch; lower the learning rate (--lr) or check the data. Results of completed tasks "
                "are kept in the run directory."
            )
        self.scheduler.step()
        self.epochs_done += 1
        self.seconds += time.perf_counter() - started
        self.last = {"event": "epoch", "task": self.task, "epoch": epoch, "loss": float(loss_sum) / max(seen, 1),
                     "train_accuracy": 100.0 * float(correct) / max(seen, 1),
                     "lr": lr, "seconds": self.seconds}
        if self.rank_all:
            self.last["train_accuracy_all"] = 100.0 * float(correct_all) / max(seen, 1)
        self.log(self.last)
        if self.config.kept_epoch == "best-train":
            self._keep_best(epoch, self.last["train_accuracy_all" if self.rank_all else "train_accuracy"])
        return self.last

    def _keep_best(self, epoch: int, score: float) -> None:
        """``kept_epoch="best-train"``: remember the epoch with the best training accuracy (the first of
        equals, as the reference's strict ``>``); after the last epoch, go back to it."""
        if self.best is None or score > self.best["score"]:
            self.best = {"epoch": epoch, "score": score,
                         "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
                         "masks": {k: m.clone() for k, m in self.learner.current_masks().items()}}
        if self.finished:
            self.model.load_state_dict(self.best["model"])
            self.learner.restore_masks(self.best["masks"])
            self.log({"event": "kept_epoch", "task": self.task, "epoch": self.best["epoch"],
                     "score": self.best["score"]})

    @property
    def finished(self) -> bool:
        return self.epochs_done >= self.epochs

    def summary(self) -> dict:
        kept = {"kept_epoch": self.best["epoch"]} if self.best is not None else {}
        return {"steps": self.total_steps, "loss": self.last.get("loss"),
                "train_accuracy": self.last.get("train_accuracy"), "seconds": self.seconds, **kept}

    def state_dict(self) -> dict:
        return {
            "task": self.task,
            "epochs_done": self.epochs_done,
            "seconds": self.seconds,
            "last": self.last,
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "aug_generator": self.aug_generator.get_state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "best": self.best,
        }

    def load_state_dict(self, saved: dict) -> None:
        """Continue a task whose learner state was restored already (learner.load_state_dict)."""
        if saved["task"] != self.task:
            raise DstclError(f"checkpoint is for task {saved['task']}, not {self.task}.")
        self._make_optimizer()
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.aug_generator.set_state(saved["aug_generator"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])
        self.epochs_done = int(saved["epochs_done"])
        self.seconds = float(saved["seconds"])
        self.last = dict(saved.get("last") or {})
        self.best = saved.get("best")
