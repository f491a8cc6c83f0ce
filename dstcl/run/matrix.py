"""The accuracy matrix of a run: which subnetwork is evaluated on which test set, after which task.

After learning task ``i``, ``R[i][j]`` is:

* ``j <= i``: task j's test set through task j's mask and logits (task-incremental);
* ``j > i``: task j's test set through task i's mask and task i's logits (the reference code's
  forward-transfer evaluation); ``R[j-1][j]`` is what GEM's FWT reads.

``baseline[j]`` is the untrained network (its initial dense weights) on task j with task j's logits.
Every test set is walked in its canonical class-mixed order (:class:`~dstcl.train.evaluate.EvalSet`).

**What is measured** (``--eval``):

* ``needed`` (default): the diagonal, the first superdiagonal (GEM's FWT), the final row (always
  measured, so ACC and BWT never rest on a proof) and the baseline. The other entries below the
  diagonal are *proven*: a digest of everything task j's outputs depend on (its mask, the stored
  values under it, its BatchNorm statistics) is taken when task j ends and checked bit for bit after
  every later task; equal digests make ``R[i][j] = R[j][j]`` exact (evaluation is deterministic), and
  a mismatch is an error. Entries above the superdiagonal stay ``None``, so the reference's FWT needs
  ``--eval full``. About ``4T`` evaluation passes instead of ``T(T+1)/2 + T(T-1)/2 + T``.
* ``acc``: only what ACC and BWT need: the diagonal and the final row (2T - 1 passes, the rest proven
  as above); no superdiagonal and no baseline, so both FWTs are ``None``.
* ``full``: every entry measured, as the reference does (the digests are still checked).
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable, Sequence

import torch
from torch import nn

from .. import faults, metrics
from ..errors import DstclError
from ..models import set_task, task_norm_state
from ..models.gather import gather_channels
from ..train.contract import Learner
from ..train.evaluate import CANONICAL, EVAL_BATCH_SIZE, FORWARD_METRICS, EvalSet, EvalProtocol, accuracy


class IsolationError(DstclError):
    """A learned task's subnetwork changed after the task ended: parameter isolation was broken."""


class AccuracyMatrix:
    """R (T x T, percent, None where not evaluated) and the untrained baseline, filled task by task."""

    def __init__(self, model: nn.Module, learner: Learner, heads: Sequence[slice], tests: Sequence[EvalSet],
                 prepare: Callable[[torch.Tensor], torch.Tensor], device: torch.device, *, mode: str = "needed",
                 precision: str = "fp32", isolated: bool = True, gather: tuple[int, ...] | None = None,
                 protocol: EvalProtocol = CANONICAL):
        self.model, self.learner, self.heads, self.tests = model, learner, list(heads), list(tests)
        self.prepare, self.device, self.mode, self.precision = prepare, device, mode, precision
        self.isolated = isolated  # False (dense fine-tuning): nothing to prove, every lower entry is measured
        self.gather = gather  # channel-structured runs: the input shape; each subnetwork runs physically smaller
        # how test sets are presented; only dstcl's canonical evaluation lets an unchanged subnetwork prove
        # an entry (a random or all-logit evaluation is measured again, as the reference does)
        self.protocol = protocol
        self._gathered: tuple[int, nn.Module] | None = None
        T = len(self.heads)
        self.R: list[list[float | None]] = [[None] * T for _ in range(T)]
        self.baseline: list[float] | None = None
        self.digests: list[str] = []  # per learned task, taken when it ended
        self.final_logits: list[str | None] = [None] * T  # per task: fingerprint of its final-row logits
        self.measured = 0
        self.proven = 0
        self.learned = 0  # tasks whose rows are filled
        self.inference_seconds: dict[int, float] = {}  # per task: seconds per test image, its latest measurement
        self.seconds = 0.0  # spent evaluating (every pass)

    @property
    def tasks(self) -> int:
        return len(self.heads)

    def measure(self, weights_of: int, data_of: int, head: int, network: nn.Module | None = None,
                final: bool = False, row: int = -1) -> float:
        """Accuracy of task ``data_of``'s test set through the weights loaded now, with ``head``'s logits,
        in row ``row`` of R (-1: the baseline); ``final`` (the final row) also records the logits'
        fingerprint (the model file is checked against it; canonical evaluation only)."""
        set_task(self.model, weights_of)
        self.measured += 1
        network = network or self._network(weights_of)
        started = time.perf_counter()
        fingerprint = hashlib.blake2b(digest_size=16) if final and self.protocol.canonical else None
        value = accuracy(network, self.tests[data_of], self.heads[head], self.prepare, batch_size=EVAL_BATCH_SIZE,
                         device=self.device, precision=self.precision, fingerprint=fingerprint,
                         protocol=self.protocol, key=(row, weights_of, data_of))
        if fingerprint is not None:
            self.final_logits[data_of] = fingerprint.hexdigest()
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        if weights_of == data_of:  # a task through its own subnetwork: what inference on it costs here
            self.inference_seconds[data_of] = elapsed / max(len(self.tests[data_of]), 1)
        return value

    def _load(self, task: int) -> None:
        self.learner.apply_task(task)
        self._gathered = None

    def _network(self, task: int) -> nn.Module:
        """The network evaluating task ``task``'s subnetwork: gathered channels for channel-structured runs."""
        if self.gather is None:
            return self.model
        if self._gathered is None or self._gathered[0] != task:
            self._gathered = (task, gather_channels(self.model, self.gather))
        return self._gathered[1]

    @property
    def wants_baseline(self) -> bool:
        """Whether the untrained network's accuracy is still to be measured (GEM's FWT reads it)."""
        return self.baseline is None and "fwt" in FORWARD_METRICS[self.mode]

    def measure_baseline(self) -> list[float]:
        """The untrained network (the weights in the model now, dense) on every task."""
        self.baseline = [self.measure(j, j, j, network=self.model) for j in range(self.tasks)]
        return self.baseline

    def digest(self, task: int) -> str:
        """Everything task ``task``'s outputs depend on: its subnetwork's weights and its BatchNorm state."""
        norm = hashlib.blake2b(digest_size=16)
        for tensor in task_norm_state(self.model, task):
            norm.update(tensor.detach().cpu().numpy().tobytes())
        return f"{self.learner.task_digest(task)}-{norm.hexdigest()}"

    def after_task(self, i: int) -> None:
        """Fill row ``i`` (see the module doc for what ``needed`` measures and what it proves)."""
        faults.point("evaluation")
        if self.isolated:
            self._check_isolation(i)
            self.digests.append(self.digest(i))
        last = i == self.tasks - 1
        provable = self.isolated and self.protocol.canonical
        for j in range(i + 1):
            if j == i or last or self.mode == "full" or not provable:
                self._load(j)
                self.R[i][j] = self.measure(j, j, j, final=last, row=i)
            else:
                self.R[i][j] = self.R[j][j]  # proven: task j's subnetwork is bit-identical (checked above)
                self.proven += 1
        self._load(i)
        forward = FORWARD_METRICS[self.mode]  # fwt reads the first superdiagonal, fwt_reference all of it
        ahead = self.tasks if "fwt_reference" in forward else min(i + 2, self.tasks) if "fwt" in forward else i + 1
        for j in range(i + 1, ahead):
            self.R[i][j] = self.measure(i, j, i, row=i)
        self.learned = i + 1

    def after_joint(self) -> None:
        """Multitask training has one phase: only the final row (every task through the one network)."""
        faults.point("evaluation")
        for j in range(self.tasks):
            self.R[-1][j] = self.measure(0, j, j, final=True, row=self.tasks - 1)
        self.learned = self.tasks

    def _check_isolation(self, i: int) -> None:
        for j, before in enumerate(self.digests):
            if self.digest(j) != before:
                raise IsolationError(
                    f"after task {i}, the subnetwork of task {j} is not bit-identical to the one task {j} ended with "
                    "(its weights or BatchNorm statistics changed): parameter isolation was broken, so task "
                    f"{j}'s accuracy would be wrong. This is a bug; please report it with the run's config.json."
                )

    @property
    def completed(self) -> int:
        return self.learned

    def summary(self) -> dict:
        """The metrics of the rows filled so far (``acc`` etc. over the completed tasks)."""
        done = self.completed
        timing = [1000 * self.inference_seconds[j] for j in sorted(self.inference_seconds)]
        out: dict = {"tasks_completed": done, "accuracy_matrix": self.R, "baseline_accuracy": self.baseline,
                     "evaluation": {"mode": self.mode, "measured": self.measured, "proven": self.proven,
                                    "seconds": round(self.seconds, 3), "ms_per_image": timing}}
        if done == self.tasks:
            out["final_logits_blake2b"] = self.final_logits
        if done:
            partial = [row[:done] for row in self.R[:done]]
            out.update(metrics.summarize(partial, self.baseline[:done] if self.baseline else None))
        else:
            out.update({"acc": None, "bwt": None, "fwt": None, "fwt_reference": None, "incremental_accuracy": []})
        return out

    def state_dict(self) -> dict:
        return {"R": self.R, "baseline": self.baseline, "digests": self.digests, "measured": self.measured,
                "proven": self.proven, "learned": self.learned, "seconds": self.seconds,
                "final_logits": self.final_logits}

    def load_state_dict(self, saved: dict) -> None:
        self.R, self.baseline = saved["R"], saved["baseline"]
        self.digests = list(saved.get("digests", []))
        self.measured, self.proven = int(saved.get("measured", 0)), int(saved.get("proven", 0))
        self.learned = int(saved.get("learned", sum(1 for row in self.R if row[0] is not None)))
        self.seconds = float(saved.get("seconds", 0.0))
        self.final_logits = list(saved.get("final_logits", [None] * self.tasks))
