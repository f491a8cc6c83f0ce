"""A data set's own class hierarchy (CIFAR-100's 20 superclasses), and how well a similarity agrees with it.

A reader whose files carry a hierarchy attaches it to the :class:`~dstcl.data.base.ImageDataset` it
returns (:func:`attach`); :func:`superclasses_of` reads it back (None for data sets without one: digits,
CIFAR-10, miniImageNet, whose WordNet ids would need the WordNet graph). The hierarchy is a second,
independent measure of class similarity: two classes are alike when they share a superclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import ImageDataset
from .grouping import adjusted_rand, equal_groups

ATTRIBUTE = "superclasses"


@dataclass(frozen=True)
class Superclasses:
    """The superclass of each class (by the data set's class index) and the superclasses' names."""

    of_class: list[int]
    names: list[str]

    def first(self, num_classes: int) -> "Superclasses":
        """The hierarchy of the first ``num_classes`` classes (a run on fewer classes)."""
        return Superclasses(self.of_class[:num_classes], self.names)


def attach(dataset: ImageDataset, superclasses: Superclasses | None) -> ImageDataset:
    if superclasses is not None:
        setattr(dataset, ATTRIBUTE, superclasses.first(dataset.num_classes))
    return dataset


def superclasses_of(dataset: ImageDataset) -> Superclasses | None:
    return getattr(dataset, ATTRIBUTE, None)


def agreement(matrix: np.ndarray, superclasses: Superclasses) -> dict[str, Any]:
    """How well ``matrix`` (C x C) agrees with the hierarchy: pair similarities within vs between
    superclasses, the AUC of "same superclass" from the similarity, each class's nearest neighbours, and
    the grouping into as many equal groups as superclasses against them (adjusted Rand index)."""
    labels = np.asarray(superclasses.of_class)
    C = len(labels)
    upper = np.triu_indices(C, 1)
    same = (labels[:, None] == labels[None, :])[upper]
    values = np.asarray(matrix, dtype=np.float64)[upper]
    inside, across = values[same], values[~same]
    out: dict[str, Any] = {"superclasses": len(set(labels.tolist())), "superclass_names": superclasses.names,
                           "superclass_of_class": labels.tolist(), "pairs_within": int(same.sum()),
                           "pairs_between": int((~same).sum())}
    if len(inside) and len(across):
        wins = (inside[:, None] > across[None, :]).sum() + 0.5 * (inside[:, None] == across[None, :]).sum()
        out.update({"mean_within": float(inside.mean()), "mean_between": float(across.mean()),
                    "auc": float(wins / (len(inside) * len(across)))})
    sizes = np.bincount(labels)[labels]  # each class's superclass size
    sim = np.array(matrix, dtype=np.float64)
    np.fill_diagonal(sim, -np.inf)
    hits, chance = [], []
    for c in range(C):
        k = int(sizes[c]) - 1
        if k < 1:
            continue
        nearest = np.argsort(-sim[c], kind="stable")[:k]
        hits.append(float((labels[nearest] == labels[c]).mean()))
        chance.append(k / (C - 1))
    if hits:
        out.update({"neighbour_precision": float(np.mean(hits)), "neighbour_precision_chance": float(np.mean(chance))})
    groups = len(set(labels.tolist()))
    if len(set(np.bincount(labels)[np.unique(labels)].tolist())) == 1 and C % groups == 0:
        found = np.empty(C, dtype=np.int64)
        for g, members in enumerate(equal_groups(matrix, groups)):
            found[members] = g
        out["grouping_adjusted_rand"] = adjusted_rand(found.tolist(), labels.tolist())
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in out.items()}
