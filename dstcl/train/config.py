"""``TrainConfig``: how each task is trained (not what is sparse: see ``SparseConfig``).

Each field is declared once (:func:`dstcl.settings.setting`); the run configuration composes this class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..methods import WEIGHT_INITS
from ..settings import check_fields, setting
from ..sparse.optim import OPTIMIZERS
from .gathered import CHANNEL_TRAINING
from .methods import METHODS
from .precision import PRECISIONS

KEPT_EPOCHS = ("last", "best-train")
FLOAT32_LIMIT = 1e38  # larger step sizes overflow float32 inside the optimizer


@dataclass(frozen=True)
class TrainConfig:
    """Per task: a fresh optimizer, ``epochs`` passes, the learning rate x ``lr_gamma`` at the milestones."""

    method: str = setting("dst", "how the sequence is learned", choices=METHODS)
    epochs: int = setting(5, "epochs per task", minimum=1, maximum=100_000)
    batch_size: int = setting(64, "training batch size (at least 2: BatchNorm uses batch statistics)",
                              minimum=2, maximum=1 << 20)
    lr: float = setting(1e-3, "learning rate (x0.1 at 50 % and 75 % of the epochs)", above=0.0,
                        maximum=FLOAT32_LIMIT)
    optimizer: str = setting("adam", "optimizer", choices=OPTIMIZERS)
    momentum: float = setting(0.9, "SGD momentum", minimum=0.0, below=1.0)
    weight_decay: float = setting(0.0, "L2 weight decay on trainable weights only", minimum=0.0,
                                  maximum=FLOAT32_LIMIT)
    precision: str = setting("fp32", "arithmetic: fp32, bf16 (autocast; CPUs with native bf16, GPUs), fp16 "
                             "(autocast + gradient scaling, CUDA), or auto (the fastest of them this device runs "
                             "natively); weights and optimizer state stay fp32", choices=PRECISIONS)
    channel_training: str = setting("masked", "with --structure channel: train the masked full-size network, or "
                                    "only the live channels (gathered: faster at high sparsity; equal up to "
                                    "floating-point summation order; docs/algorithm.md)", choices=CHANNEL_TRAINING,
                                    added=True)
    kept_epoch: str = setting("last", "the network a task ends with: after its last epoch, or after the epoch with the "
                              "best training accuracy (best-train: the reference code)", choices=KEPT_EPOCHS,
                              added=True, reference="best-train")
    retrain_epochs: int = setting(2, "--method packnet: epochs retraining the kept weights after each task's pruning, "
                                  "at the final learning rate (other methods ignore it)", minimum=0, maximum=100_000,
                                  added=True)
    supsup_init: str = setting("signed-constant", "--method supsup: its fixed random weights, sign(w) * sqrt(2 / "
                               "fan_in) (the paper) or a Kaiming-normal draw (other methods ignore it)",
                               choices=WEIGHT_INITS, added=True)
    lr_milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of the epochs (library-only)
    lr_gamma: float = 0.1

    def validate(self) -> "TrainConfig":
        check_fields(self)
        return self

    def as_dict(self) -> dict:
        return asdict(self)


def lr_milestones(epochs: int, fractions: tuple[float, ...]) -> list[int]:
    """Epochs after which the learning rate drops: ``int(f * epochs)`` for each fraction, as the reference.

    Like the reference (``MultiStepLR(milestones=[int(0.5 * E), int(0.75 * E)])``) the values are
    truncated, not rounded (25 epochs: 12 and 18), and not deduplicated: with 2 epochs both are 1, so
    the second epoch runs at ``lr * gamma**2``. A milestone of 0 is dropped: ``MultiStepLR`` would apply
    it before the first epoch, so a 1-epoch task would train at ``lr * gamma**2`` throughout (what the
    reference code does at 1 epoch, a setting the paper never uses; here 1 epoch trains at ``lr``).
    """
    return [m for m in (int(f * epochs) for f in fractions) if m > 0]
