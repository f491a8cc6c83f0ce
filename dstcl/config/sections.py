"""The sections of a run's configuration; ``RunConfig`` composes them with ``SparseConfig`` and ``TrainConfig``.

Every field is declared once with :func:`dstcl.settings.setting` (default, help, accepted values,
whether it changes results). The command line (``dstcl run --help``), config files, grid checks and
the run hash are all derived from these declarations and from the registries they name. ``RunConfig``
(:mod:`.runconfig`) composes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..data import DATASETS, ORDERS
from ..data.similarity import ClassSimilarity, read_similarity
from ..data.tasks import SIMILARITY_ORDERS
from ..errors import ConfigError
from ..models import BN_MODES, MODELS
from ..settings import setting
from ..sparse import SparseConfig
from ..train.config import TrainConfig
from ..train.evaluate import EVAL_LOGITS, EVAL_MODES, TEST_AUGMENT, TEST_ORDER

DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"


@dataclass(frozen=True)
class DataSettings:
    dataset: str = setting("digits", "data set", choices=DATASETS)
    data_dir: str | None = setting(None, "where the data set lies (else $DSTCL_DATA, else the cache folder)",
                                   result=False, metavar="DIR")
    tasks: int = setting(5, "number of tasks (must divide the number of classes)", minimum=1, maximum=100_000)
    class_order: str = setting("sequential", "class order: sequential (0..C-1, the reference), random (seeded), "
                               "clustered (each task one group of similar classes) or interleaved (each task one class "
                               "of every group); the last two need --similarity", choices=ORDERS)
    similarity: str | None = setting(None, "class-similarity JSON the clustered and interleaved orders are built from "
                                     "(written by dstcl similarity; docs/similarity.md)", result=False, metavar="FILE")
    similarity_digest: str | None = setting(None, "digest of that file's class names and matrix, filled in from "
                                            "--similarity: the run id holds the content, not the path",
                                            added=True, metavar="DIGEST")
    num_classes: int | None = setting(None, "use only the first N classes", minimum=1, maximum=1 << 24)
    download: bool = setting(True, "download a missing data set (CIFAR); --no-download never does", result=False)
    options: Mapping[str, Any] = field(default_factory=dict)  # the data set's own (declared) options

    def class_similarity(self) -> ClassSimilarity | None:
        """The similarity the class order is built from (None for orders that need none), checked against
        the digest the run was resolved with: a file changed since is refused, not silently used."""
        if self.class_order not in SIMILARITY_ORDERS:
            return None
        if self.similarity is None:
            raise ConfigError(f"class order {self.class_order} builds its tasks from a class similarity; give "
                              "--similarity FILE (written by dstcl similarity DATASET -o FILE; docs/similarity.md).")
        found = read_similarity(self.similarity)
        if self.similarity_digest is not None and found.digest != self.similarity_digest:
            raise ConfigError(f"similarity file {self.similarity} has changed: its classes and matrix have digest "
                              f"{found.digest}, but this run was set up with {self.similarity_digest}. Restore the "
                              "file the run used, or start a new run with the file as it is now (drop "
                              "similarity_digest from the config).")
        return found


@dataclass(frozen=True)
class ModelSettings:
    backbone: str | None = setting(None, "backbone (default: the data set's)", choices=MODELS)
    bn: str = setting("batch", "BatchNorm statistics: batch (the paper) or task (per-task running statistics)",
                      choices=BN_MODES)
    options: Mapping[str, Any] = field(default_factory=dict)  # the backbone's own (declared) options


@dataclass(frozen=True)
class RunSettings:
    seed: int = setting(0, "random seed", minimum=0, below=2**63)
    device: str = setting("auto", "auto (CUDA when present), cpu, cuda, cuda:N or mps", result=False)
    threads: int | None = setting(None, "CPU threads (default: the CPUs this process may use); results are "
                                  "bit-identical only at the same count", minimum=1, maximum=4096, result=False)
    out: str = setting("runs", "folder for new run directories", result=False, metavar="DIR")
    progress: bool = setting(True, "progress bars; --no-progress turns them off", result=False)
    checkpoint_budget: float = setting(0.02, "max share of time spent on epoch checkpoints (1 = after every epoch)",
                                       above=0.0, maximum=1.0, result=False)
    agnostic: bool = setting(False, "also measure prediction without the task label at the end: task-inference "
                             "and class-incremental accuracy (T passes over all test sets)", result=False)
    eval: str = setting("needed", "accuracy matrix: needed (the diagonal, the entries GEM's FWT needs and the final "
                        "row measured; the rest proven unchanged by a digest), acc (only the diagonal and the final "
                        "row: ACC and BWT, no FWT; half the passes) or full (every entry measured, as the reference; "
                        "needed for the reference's FWT)", choices=EVAL_MODES, result=False)
    # protocol switches (docs/algorithm.md, "Two protocols"): dstcl's choice by default, the reference code's
    eval_logits: str = setting("task", "accuracy takes the argmax over the task's own logits (task-incremental), or "
                               "over every class's logits (all: the reference code)", choices=EVAL_LOGITS,
                               added=True, reference="all")
    test_augment: str = setting("off", "test images as they are, or randomly cropped and flipped at every "
                                "evaluation, seeded (reference: the reference code)", choices=TEST_AUGMENT,
                                added=True, reference="reference")
    test_order: str = setting("fixed", "test batches in the canonical class-mixed order, or shuffled afresh at every "
                              "evaluation, seeded (the reference code)", choices=TEST_ORDER, added=True,
                              reference="shuffled")


SECTIONS: dict[str, type] = {"data": DataSettings, "model": ModelSettings, "sparse": SparseConfig,
                             "train": TrainConfig, "run": RunSettings}


