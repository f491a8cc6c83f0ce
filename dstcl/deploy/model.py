"""A loaded model: one network, each task's subnetwork on demand, prediction with or without the task.

    model = dstcl.load("model.dstcl")          # or a run directory
    model.predict(images)                       # task inferred (see dstcl.train.agnostic)
    model.predict(images, task=3)               # task given
    model.logits(images, task=3)                # task 3's head, as the run evaluated it

``images`` are uint8 ``N x C x H x W`` (the run's image shape; :mod:`dstcl.deploy.images` reads files)
or already-normalised floats. With ``--bn batch`` (the paper) a prediction depends on the other images
of its batch (BatchNorm uses batch statistics), so pass a batch, not single images; with ``--bn task``
each image is classified on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.augment import normalize
from ..errors import DstclError
from ..safeload import DamagedFileError
from ..models import build_model, set_task
from ..models.gather import gather_channels
from ..sparse.params import prunable_parameters
from ..sparse.state import unpack_mask
from ..train.agnostic import TASK_CRITERIA, choose, given_task, supsup_scores
from ..train.evaluate import EVAL_BATCH_SIZE, eval_batches
from ..train.precision import autocast
from .package import owned_positions, read_package


@dataclass(frozen=True)
class Prediction:
    """Per input: the global class, its name, the task and the softmax probability within the task's head."""

    classes: list[int]
    names: list[str]
    tasks: list[int]
    confidence: list[float]


class DstclModel:
    def __init__(self, package: dict):
        try:
            self._build(package)
        except DstclError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, ZeroDivisionError, AttributeError) as exc:
            raise DamagedFileError(f"the model's contents are inconsistent ({type(exc).__name__}: {str(exc)[:160]}); "
                                   "the file is damaged or was not written by dstcl export.") from None

    def _build(self, package: dict) -> None:
        _check_metadata(package)
        backbone = package["backbone"]
        channels, height, _ = package["preprocess"]["image_shape"]
        self.package = package
        self.model = build_model(backbone["name"], num_classes=backbone["num_classes"], in_channels=channels,
                                 image_size=height, bn=backbone["bn"], max_tasks=backbone["max_tasks"],
                                 **backbone["options"])
        self.model.eval()
        self.params = dict(prunable_parameters(self.model))
        self.class_names: list[str] = package["class_names"]
        self.task_classes: list[list[int]] = package["task_classes"]
        self.heads = [slice(a, b) for a, b in package["heads"]]
        self.precision = package.get("precision", "fp32")
        self.values: dict[str, torch.Tensor] = {}
        self.masks: list[dict[str, torch.Tensor]] = [{} for _ in self.heads]
        for layer in package["layers"]:
            name, shape = layer["name"], tuple(layer["shape"])
            if name not in self.params or tuple(self.params[name].shape) != shape:
                raise DstclError(f"the model file does not fit the {backbone['name']} backbone built from it (layer "
                                 f"{name}); it was made with other backbone options or another dstcl.")
            if layer["masks"] is None:
                self.values[name] = _finite(layer["dense_values"], name, shape)
                continue
            if len(layer["masks"]) != len(self.heads) or any(
                    not torch.is_tensor(b) or b.numel() != -(-math.prod(shape) // 8) for b in layer["masks"]):
                raise DamagedFileError(f"layer {name} of the model has {len(layer['masks'])} task mask(s) of the wrong "
                                       f"size for {len(self.heads)} tasks; the file is damaged.")
            masks = [unpack_mask(bits.numpy(), shape) for bits in layer["masks"]]
            values = torch.zeros(shape)
            values[owned_positions(masks, self.heads if layer["head"] else None)] = _finite(
                layer["owned_values"], name, None)
            self.values[name] = values
            for task, mask in enumerate(masks):
                self.masks[task][name] = mask
        missing = sorted(set(self.params) - set(self.values))
        if missing or not self.heads:
            raise DamagedFileError(f"the model file holds no weights for {', '.join(missing[:3]) or 'any task'}; the "
                                   "file is damaged or incomplete.")
        if package.get("buffers"):
            self.model.load_state_dict({**self.model.state_dict(), **package["buffers"]})
        self.mean, self.std = tuple(package["preprocess"]["mean"]), tuple(package["preprocess"]["std"])
        self._loaded: int | None = None
        self.structured = package["config"].get("structure") == "channel"  # runs as a smaller network per task
        self._gathered: tuple[int, torch.nn.Module] | None = None

    @property
    def tasks(self) -> int:
        return len(self.heads)

    @property
    def sparse(self) -> bool:
        return bool(self.masks[0])

    def load_task(self, task: int) -> None:
        """Put task ``task``'s subnetwork (its masked weights and BatchNorm statistics) into the network."""
        if not 0 <= task < self.tasks:
            raise DstclError(f"task {task} does not exist; this model has tasks 0 to {self.tasks - 1}.")
        if self._loaded != task:
            with torch.no_grad():
                for name, param in self.params.items():
                    value = self.values[name]
                    param.copy_(torch.where(self.masks[task][name], value, torch.zeros_like(value)) if self.sparse
                                else value)
            self._loaded = task
        set_task(self.model, task)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the normalised float input the network was trained on (floats pass through); a
        numpy array is taken as the tensor it holds."""
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(np.ascontiguousarray(images))
        if not torch.is_tensor(images):
            raise DstclError(f"images must be a tensor or a numpy array (N x C x H x W), got {type(images).__name__}.")
        expected = tuple(self.package["preprocess"]["image_shape"])
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise DstclError(f"images must be N x {' x '.join(map(str, expected))} (the run's image shape), got "
                             f"{tuple(images.shape)}; dstcl.deploy.images.read_images resizes files to it.")
        if images.dtype == torch.uint8:
            return normalize(images, self.mean, self.std)  # exactly the run's own normalisation
        return images.float()

    @torch.inference_mode()
    def logits(self, images: torch.Tensor, task: int, batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
        """Task ``task``'s logits (its head only), in batches of ``batch_size`` as the run evaluated."""
        self.load_task(task)
        network = self.model
        if self.structured:  # the task's channels only, as the run evaluated it
            if self._gathered is None or self._gathered[0] != task:
                self._gathered = (task, gather_channels(self.model, tuple(self.package["preprocess"]["image_shape"])))
            network = self._gathered[1]
        x = self.prepare(images)
        device = torch.device("cpu")
        parts = []
        for start, stop in eval_batches(len(x), batch_size):
            with autocast(self.precision, device):
                parts.append(network(x[start:stop])[:, self.heads[task]].float())
        return torch.cat(parts) if parts else torch.zeros(0, self.heads[task].stop - self.heads[task].start)

    def predict(self, images: torch.Tensor, task: int | None = None, criterion: str = "entropy") -> Prediction:
        """Classes (and tasks) of ``images``; without ``task`` it is inferred by ``criterion``
        (``confidence``, ``entropy``, or ``supsup`` for a batch from one task)."""
        if task is not None:
            choice = given_task(self.logits(images, task), task)
        elif criterion == "supsup":
            chosen = int(self.supsup(images).argmax())
            choice = given_task(self.logits(images, chosen), chosen)
        else:
            TASK_CRITERIA.get(criterion)
            choice = choose([self.logits(images, j) for j in range(self.tasks)], criterion)
        tasks = choice.task.tolist()
        classes = [self.task_classes[t][c] for t, c in zip(tasks, choice.local_class.tolist())]
        return Prediction(classes, [self.class_names[c] for c in classes], tasks, choice.confidence.tolist())

    def supsup(self, images: torch.Tensor) -> torch.Tensor:
        """SupSup's one-shot score of each task for the whole batch (``dstcl.train.agnostic``)."""
        if not self.sparse:
            raise DstclError("supsup task inference mixes the tasks' masks; this model is dense (one network).")
        self._loaded = None
        set_task(self.model, 0)
        return supsup_scores(self.model, self.values, self.masks, self.prepare(images))


def _check_metadata(package: dict) -> None:
    """The task split, class names and preprocessing of a model file must agree with each other."""
    classes = int(package["backbone"]["num_classes"])
    heads, task_classes, names = package["heads"], package["task_classes"], package["class_names"]
    shape = package["preprocess"]["image_shape"]
    problems = []
    if not heads or not all(isinstance(h, (list, tuple)) and len(h) == 2 and 0 <= h[0] < h[1] <= classes
                            for h in heads):
        problems.append(f"its task heads {str(heads)[:60]} are not row ranges of its {classes} classes")
    elif len(task_classes) != len(heads) or any(len(c) != h[1] - h[0] or not all(0 <= k < classes for k in c)
                                                for c, h in zip(task_classes, heads)):
        problems.append("its task split does not match its heads")
    if len(names) != classes:
        problems.append(f"it names {len(names)} classes for {classes}")
    if len(shape) != 3 or len(package["preprocess"]["mean"]) != shape[0] or len(package["preprocess"]["std"]) != shape[0]:
        problems.append("its image shape and normalisation do not agree")
    if problems:
        raise DamagedFileError(f"the model file is inconsistent: {'; '.join(problems)}. It is damaged, or it was not "
                               "written by dstcl export.")


def _finite(values: torch.Tensor, name: str, shape: tuple[int, ...] | None) -> torch.Tensor:
    """The weights of layer ``name`` if they are a float tensor (of ``shape``) without NaN or infinity."""
    if not torch.is_tensor(values) or not values.is_floating_point():
        raise DamagedFileError(f"layer {name} of the model holds no weight tensor; the file is damaged.")
    if shape is not None and tuple(values.shape) != shape:
        raise DamagedFileError(f"layer {name} of the model has weights of shape {tuple(values.shape)}, not {shape}; "
                               "the file is damaged.")
    if not bool(torch.isfinite(values).all()):
        raise DamagedFileError(f"layer {name} of the model holds NaN or infinite weights; a model like that predicts "
                               "nothing meaningful. The file is damaged, or the run diverged.")
    return values


def load(path: str | Path) -> DstclModel:
    """A model from a ``.dstcl`` file (``dstcl export``) or straight from a completed run directory."""
    return DstclModel(read_package(path))
