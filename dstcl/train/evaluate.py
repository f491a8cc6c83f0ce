"""Task-incremental evaluation: accuracy of one task's test set through one task's subnetwork.

BatchNorm uses batch statistics at test time (the paper), so what a test batch holds changes the
answer: a batch of one class is normalised with that class's own mean, which removes exactly what
tells the classes apart (on real miniImageNet, whose reader stores test images by class, that halved
the measured accuracy). So a test set is always walked in one **canonical order** (:class:`EvalSet`):

* repeatable: a fixed batch size and an order fixed by the data alone, no test-time augmentation;
  evaluating the same weights twice gives the same number, which is what makes BWT exactly 0;
* unbiased: every batch holds the task's classes in proportion (a stratified interleave), as a
  random training batch does on average;
* independent of storage: the order is a function of the set of (image, label) pairs, not of the
  order a reader returns them in (within a class, images are ordered by a hash of their bytes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .precision import autocast

EVAL_BATCH_SIZE = 128
# Which entries of the accuracy matrix a run measures (dstcl.run.matrix): ``needed`` measures what the
# metrics need and proves the rest unchanged; ``acc`` only what ACC and BWT need (no FWT); ``full``
# measures every entry, as the reference does.
EVAL_MODES = ("needed", "acc", "full")
# The forward-transfer metrics each mode measures, cheapest mode first (ACC and BWT: every mode).
FORWARD_METRICS = {"acc": (), "needed": ("fwt",), "full": ("fwt", "fwt_reference")}
# How a test set is presented (protocol switches, docs/algorithm.md "Two protocols"): dstcl's way first.
EVAL_LOGITS = ("task", "all")  # the argmax over the task's own logits, or over every class (the reference)
TEST_AUGMENT = ("off", "reference")  # test images as they are, or randomly cropped and flipped (the reference)
TEST_ORDER = ("fixed", "shuffled")  # the canonical class-mixed order, or a fresh shuffle per evaluation


@dataclass(frozen=True)
class EvalProtocol:
    """How test sets are presented and scored: dstcl's way by default, the reference code's by switch.

    ``logits``: the argmax over the task's own logits (``task``) or every class's (``all``, the label then
    read as its global class). ``augment``: ``reference`` crops and flips test images as in training;
    ``order``: ``shuffled`` draws a new batch order per evaluation. Random draws come from a generator
    seeded by the run's seed and the evaluation's place in the accuracy matrix, so a run (and a resumed
    one) repeats bit for bit.
    """

    logits: str = "task"
    augment: str = "off"
    order: str = "fixed"
    seed: int = 0

    @property
    def canonical(self) -> bool:
        """dstcl's evaluation: deterministic and reading only the task's own logits (what proofs need)."""
        return self.logits == "task" and self.augment == "off" and self.order == "fixed"

    def generator(self, *key: int) -> torch.Generator | None:
        """The generator of one evaluation (``key``: which one), or None when nothing is drawn."""
        if self.augment == "off" and self.order == "fixed":
            return None
        digest = hashlib.blake2b(repr((self.seed, *key)).encode(), digest_size=8).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


CANONICAL = EvalProtocol()


def content_keys(x: torch.Tensor) -> np.ndarray:
    """One 64-bit key per image: the BLAKE2b hash of its bytes (equal only for byte-identical images)."""
    flat = np.ascontiguousarray(x.detach().cpu().reshape(len(x), -1).numpy())
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(row, digest_size=8).digest(), "little") for row in flat),
        dtype=np.uint64, count=len(flat),
    )


def canonical_order(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The permutation that puts a test set into its canonical, class-mixed order.

    Within each class the images are ordered by :func:`content_keys`; image ``k`` of the ``n_c``
    images of class ``c`` gets the position ``(2k + 1) / (2 n_c)`` in [0, 1), and the whole set is
    sorted by position (then label, then key). Every stretch of the result, a batch included, holds
    each class in proportion to its size (classes of equal size take turns). Byte-identical images
    of one class tie; their order cannot change a result.
    """
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    n = len(y)
    if n == 0:
        return torch.zeros(0, dtype=torch.int64)
    keys = content_keys(x)
    labels = y.detach().cpu().numpy().astype(np.int64)
    position = np.empty(n, dtype=np.float64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        members = members[np.argsort(keys[members], kind="stable")]
        # (2k+1)/(2n) is correctly rounded, so equal fractions of different classes compare equal
        position[members] = (2.0 * np.arange(len(members)) + 1.0) / (2.0 * len(members))
    order = np.lexsort((keys, labels, position))  # the last key is the primary one
    return torch.from_numpy(order.astype(np.int64))


class EvalSet:
    """A test set held in its canonical order (see the module doc); the only input :func:`accuracy` takes."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        order = canonical_order(x, y)
        self.x, self.y = x[order.to(x.device)], y[order.to(y.device)]

    @classmethod
    def _ordered(cls, x: torch.Tensor, y: torch.Tensor) -> "EvalSet":
        out = cls.__new__(cls)
        out.x, out.y = x, y
        return out

    def to(self, device: torch.device | str) -> "EvalSet":
        """The same set (same order) on ``device``."""
        return EvalSet._ordered(self.x.to(device), self.y.to(device))

    def __len__(self) -> int:
        return len(self.y)


@torch.inference_mode()
def accuracy(
    model: nn.Module,
    data: EvalSet,
    logit_slice: slice,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int = EVAL_BATCH_SIZE,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    fingerprint: "hashlib._Hash | None" = None,
    protocol: EvalProtocol = CANONICAL,
    key: tuple[int, ...] = (),
) -> float:
    """Top-1 accuracy in percent, the argmax taken over the logits in ``logit_slice`` only (or, with
    ``protocol.logits == "all"``, over every logit, the label shifted to ``logit_slice``; ``key`` seeds
    the draws of a non-deterministic ``protocol``: :class:`EvalProtocol`).

    ``data`` holds uint8 images (any device) and labels local to the slice (0..k-1); ``prepare`` turns
    a uint8 batch on ``device`` into the normalised float input; ``precision`` is the training's (the
    same arithmetic the weights were trained with). ``fingerprint``, a hashlib object, is fed the
    logits as float32 bytes in order (:func:`logits_fingerprint` of the whole N x k tensor gives the
    same digest), so another implementation can prove it computes bit-identical logits.
    """
    if not isinstance(data, EvalSet):
        raise TypeError("accuracy() takes an EvalSet (EvalSet(x, y)), which fixes the canonical class-mixed order")
    if len(data) == 0:
        return float("nan")
    model.eval()
    device = torch.device(device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    generator = protocol.generator(*key)
    x, y = data.x, data.y
    if protocol.order == "shuffled":
        order = torch.randperm(len(data), generator=generator)
        x, y = x[order.to(x.device)], y[order.to(y.device)]
    every = protocol.logits == "all"
    for start, stop in eval_batches(len(data), batch_size):
        xb = x[start:stop].to(device, non_blocking=True)
        xb = prepare(xb, generator) if protocol.augment == "reference" else prepare(xb)
        yb = y[start:stop].to(device, non_blocking=True)
        with autocast(precision, device):
            logits = model(xb) if every else model(xb)[:, logit_slice]
        correct += (logits.argmax(dim=1) == (yb + (logit_slice.start or 0) if every else yb)).sum()
        if fingerprint is not None:
            fingerprint.update(logits.detach().float().contiguous().cpu().numpy().tobytes())
    return 100.0 * int(correct) / len(data)


def logits_fingerprint(logits: torch.Tensor) -> str:
    """The digest :func:`accuracy` records for the same logits (N x k, any float dtype)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(logits.detach().float().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def eval_batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive (start, stop) ranges of ``batch_size``; a last batch of one image joins the one before,
    since batch statistics of a single image are undefined (BatchNorm would fail on it)."""
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] == 1:
        bounds[-2:] = [(bounds[-2][0], n)]
    return bounds
