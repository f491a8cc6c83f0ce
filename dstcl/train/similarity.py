"""Class similarity measured from the data (``dstcl similarity``): class-mean features of a dense network.

1. Each class's training images are split, by a generator seeded with ``seed``, into a part that trains
   and a held-out part (``holdout``, default 20 %); the test images are never read, so the
   similarity cannot leak into the accuracies a run reports.
2. A dense network (the data set's default backbone, or ``backbone``) is trained on the first part over
   *all* classes at once (one C-way classifier: the features must tell every class from every other),
   with dstcl's own loop (:class:`~dstcl.train.trainer.TaskTrainer`: augmentation, Adam, schedule).
3. The held-out images pass through it in the canonical class-mixed order (batch-statistics BatchNorm
   sees mixed batches, as in evaluation); the input of the classifier (the penultimate layer) is the
   feature vector, averaged per class.
4. Similarity of classes a and b: the cosine of their mean features after subtracting the mean over
   classes. Without centring, ReLU features share one large common direction and every cosine is near
   1; centred, a cosine says in which directions two classes differ from the average class alike.

Everything is drawn from ``seed`` (split, initialisation, batches, augmentation), so a seed and a thread
count give the same matrix (the file does not record the time taken, so it is byte-identical).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..data import BatchAugment, dataset_defaults, load_dataset, split_classes
from ..data.base import ImageDataset
from ..data.grouping import equal_groups
from ..data.hierarchy import agreement, superclasses_of
from ..data.similarity import FORMAT, rounded, similarity_digest, split_summary
from ..errors import DstclError
from ..models import build_model, output_weight
from .config import TrainConfig
from .dense import DenseLearner
from .evaluate import EvalSet, eval_batches
from .trainer import TaskTrainer

FEATURE_BATCH = 128


@dataclass(frozen=True)
class SimilaritySettings:
    """How the similarity is measured (recorded in the file; ``None``: the data set's default)."""

    backbone: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. width
    data_options: dict[str, Any] = field(default_factory=dict)  # e.g. image_size
    epochs: int = 10
    batch_size: int | None = None
    lr: float = 1e-3
    holdout: float = 0.2
    per_class: int | None = None  # at most this many training images of each class (before the holdout)
    num_classes: int | None = None
    tasks: int = 5  # the split whose task x task similarity is reported
    seed: int = 0


def split_per_class(y: torch.Tensor, holdout: float, per_class: int | None, seed: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (fit, held out): per class a seeded permutation of its images, the first ``holdout`` share held
    out (at least one image each side), then at most ``per_class`` images in all."""
    generator = torch.Generator().manual_seed(seed)
    fit, held = [], []
    for c in range(int(y.max()) + 1):
        members = (y == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=generator)][:per_class]
        if len(members) < 2:
            raise DstclError(f"class {c} has {len(members)} training image(s); measuring similarity needs at least 2 "
                             "per class (one to train, one held out). Use a larger --per-class or more data.")
        n_held = min(len(members) - 1, max(1, round(holdout * len(members))))
        held.append(members[:n_held])
        fit.append(members[n_held:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def centred_cosine(means: np.ndarray) -> np.ndarray:
    """C x C cosine similarity of the rows after subtracting their mean (diagonal exactly 1)."""
    centred = means - means.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    unit = centred / np.where(norms > 0, norms, 1.0)
    sim = np.clip(unit @ unit.T, -1.0, 1.0)
    sim = (sim + sim.T) / 2.0
    np.fill_diagonal(sim, 1.0)
    return sim


@torch.inference_mode()
def class_features(model: nn.Module, classifier: str, data: EvalSet, prepare: Callable[[torch.Tensor], torch.Tensor],
                   num_classes: int, device: torch.device) -> tuple[np.ndarray, float]:
    """Per-class mean of the classifier's input over ``data`` (C x D, float64) and the accuracy (%) there."""
    module = model.get_submodule(classifier.rsplit(".", 1)[0]) if "." in classifier else model
    captured: list[torch.Tensor] = []
    handle = module.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().flatten(1)))
    model.eval()
    sums: torch.Tensor | None = None
    correct = 0
    try:
        for start, stop in eval_batches(len(data), FEATURE_BATCH):
            xb, yb = data.x[start:stop].to(device), data.y[start:stop].to(device)
            captured.clear()
            logits = model(prepare(xb))
            feats = captured[-1].double()
            if sums is None:
                sums = torch.zeros(num_classes, feats.shape[1], dtype=torch.float64, device=device)
            sums.index_add_(0, yb, feats)
            correct += int((logits.argmax(1) == yb).sum())
    finally:
        handle.remove()
    counts = torch.bincount(data.y.to(device), minlength=num_classes).double().unsqueeze(1)
    return (sums / counts).cpu().numpy(), 100.0 * correct / len(data)


def measure_similarity(dataset: str, data_dir: str | None, settings: SimilaritySettings, *, device: torch.device,
                       download: bool = True, progress: bool = False, echo: Callable[[str], None] = print
                       ) -> dict[str, Any]:
    """Train, measure and describe: the content of a similarity file (docs/similarity.md)."""
    started = time.perf_counter()
    ds = load_dataset(dataset, data_dir, download=download, progress=progress, num_classes=settings.num_classes,
                      seed=settings.seed, **settings.data_options)
    defaults = dataset_defaults(dataset)
    backbone = settings.backbone or defaults.get("backbone")
    if backbone is None:
        raise DstclError(f"data set {dataset} names no default backbone; choose one with --backbone.")
    batch_size = settings.batch_size or int(defaults.get("batch_size", 64))
    fit, held = split_per_class(ds.train_y, settings.holdout, settings.per_class, settings.seed)
    torch.manual_seed(settings.seed)
    channels, height, _ = ds.image_shape
    model = build_model(backbone, num_classes=ds.num_classes, in_channels=channels, image_size=height,
                        **settings.model_options).to(device)
    classifier = output_weight(model, ds.num_classes)
    augment = BatchAugment(ds.crop_padding, ds.hflip, ds.mean, ds.std)
    config = TrainConfig(epochs=settings.epochs, batch_size=batch_size, lr=settings.lr).validate()
    trainer = TaskTrainer(model, DenseLearner(model, num_tasks=1), 0, ds.train_x[fit].to(device),
                          ds.train_y[fit].to(device), slice(0, ds.num_classes),
                          lambda xb, g: augment(xb, g, train=True), config,
                          generator=torch.Generator().manual_seed(settings.seed), device=device)
    trainer.begin()
    while not trainer.finished:
        event = trainer.run_epoch()
        echo(f"epoch {trainer.epochs_done}/{settings.epochs}: loss {event['loss']:.3f}, training accuracy "
             f"{event['train_accuracy']:.1f} % ({time.perf_counter() - started:.0f} s)")
    means, accuracy = class_features(model, classifier, EvalSet(ds.train_x[held], ds.train_y[held]),
                                     lambda xb: augment(xb, None, train=False), ds.num_classes, device)
    matrix = centred_cosine(means)
    echo(f"held-out accuracy {accuracy:.1f} % over {ds.num_classes} classes ({len(held)} images)")
    return describe(ds, matrix, settings, backbone=backbone, batch_size=batch_size, fit=len(fit), held=len(held),
                    accuracy=accuracy, feature_size=int(means.shape[1]))


def describe(ds: ImageDataset, matrix: np.ndarray, settings: SimilaritySettings, **measured: Any) -> dict[str, Any]:
    """The file's content: matrix and names, how it was measured, the task splits, the hierarchy agreement."""
    stored = rounded(matrix)
    names = list(ds.class_names)
    C, T = len(names), settings.tasks
    doc: dict[str, Any] = {
        "format": FORMAT, "dstcl": __version__, "dataset": ds.name, "class_names": names,
        "digest": similarity_digest(names, stored), "matrix": stored,
        "method": {
            "measure": "cosine similarity of class-mean features, centred (the mean over classes subtracted)",
            "features": f"penultimate layer (the classifier's input, {measured['feature_size']} values) of a dense "
                        f"{measured['backbone']} trained on all {C} classes at once",
            "images": f"training images only: per class {100 * (1 - settings.holdout):g} % train the network and "
                      f"{100 * settings.holdout:g} % held out give the features ({measured['fit']} / "
                      f"{measured['held']}); test images are never read",
            "heldout_accuracy": round(measured["accuracy"], 2),
        },
        "settings": {**asdict(settings), "backbone": measured["backbone"], "batch_size": measured["batch_size"]},
    }
    if C % T:
        doc["tasks"] = {"count": T, "note": f"{T} tasks do not divide {C} classes: no task split reported"}
    else:
        orders = {order: split_summary(np.asarray(stored), split_classes(C, T, order, settings.seed, np.asarray(stored)))
                  for order in ("sequential", "random", "clustered", "interleaved")}
        doc["tasks"] = {"count": T, "seed": settings.seed, "orders": orders,
                        "groups": {"clustered": equal_groups(np.asarray(stored), T),
                                   "interleaved": equal_groups(np.asarray(stored), C // T)}}
    hierarchy = superclasses_of(ds)
    doc["hierarchy"] = (agreement(np.asarray(stored), hierarchy) if hierarchy is not None else
                        {"none": f"{ds.name} has no class hierarchy in its files (CIFAR-100's 20 superclasses are "
                                 "the built-in one)"})
    doc["most_similar_pairs"] = top_pairs(np.asarray(stored), names, 10)
    return doc


def top_pairs(matrix: np.ndarray, names: list[str], count: int) -> list[list[Any]]:
    """The ``count`` most similar pairs of distinct classes: [name a, name b, similarity]."""
    upper = np.triu_indices(len(names), 1)
    order = np.argsort(-matrix[upper], kind="stable")[:count]
    return [[names[upper[0][k]], names[upper[1][k]], float(matrix[upper][k])] for k in order]
