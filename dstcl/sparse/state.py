"""The continual-learning state of every prunable tensor: values, owners and per-task masks.

``values`` is the single source of truth of a weight's value once a task has ended; ``owner`` says
which task trained each weight (-1: free); ``masks[t]`` is task t's subnetwork. The masks are kept as
packed bits (``numpy.packbits``) in memory and on disk, so 20 masks of ResNet-18 take 28 MB instead of
224 MB; ``masks[t]`` unpacks one on demand (:class:`PackedMasks`).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from ..errors import DstclError
from ..files import atomic_torch_save
from ..safeload import DamagedFileError, load_torch

FORMAT = "dstcl-sparse-state/1"


class PackedMasks:
    """A list of boolean masks of one shape stored as packed bits; indexing and iteration unpack them."""

    def __init__(self, shape: tuple[int, ...], device: torch.device | str = "cpu", masks: Iterable = ()):
        self.shape, self.device = tuple(shape), torch.device(device)
        self._bits: list[np.ndarray] = []
        for mask in masks:
            self.append(mask)

    def append(self, mask: torch.Tensor) -> None:
        self._bits.append(pack_mask(mask))

    def append_bits(self, bits: np.ndarray) -> None:
        self._bits.append(np.asarray(bits, dtype=np.uint8).copy())

    def bits(self, index: int) -> np.ndarray:
        return self._bits[index]

    def __getitem__(self, index: int) -> torch.Tensor:
        return unpack_mask(self._bits[index], self.shape).to(self.device)

    def __len__(self) -> int:
        return len(self._bits)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


@dataclass
class LayerState:
    """State of one prunable tensor."""

    name: str
    values: torch.Tensor
    owner: torch.Tensor  # int16, -1 = free
    masks: PackedMasks = field(default=None)  # type: ignore[assignment]  # one per learned task

    def __post_init__(self) -> None:
        if self.masks is None:
            self.masks = PackedMasks(self.values.shape, self.values.device)
        elif not isinstance(self.masks, PackedMasks):
            self.masks = PackedMasks(self.values.shape, self.values.device, self.masks)

    @classmethod
    def fresh(cls, name: str, values: torch.Tensor) -> "LayerState":
        return cls(name, values.detach().clone(), torch.full(values.shape, -1, dtype=torch.int16, device=values.device))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    @property
    def numel(self) -> int:
        return self.values.numel()


class SparseState:
    """Ordered collection of :class:`LayerState`, with bit-packed save/load."""

    def __init__(self, layers: Iterable[LayerState]):
        self.layers: list[LayerState] = list(layers)
        self.by_name = {layer.name: layer for layer in self.layers}

    @property
    def num_tasks(self) -> int:
        return len(self.layers[0].masks) if self.layers else 0

    def add_layer(self, name: str, values: torch.Tensor) -> LayerState:
        """A layer that joins after some tasks were learned: free, with an empty mask for each of them."""
        layer = LayerState.fresh(name, values)
        for _ in range(self.num_tasks):
            layer.masks.append(torch.zeros(layer.shape, dtype=torch.bool))
        self.layers.append(layer)
        self.by_name[name] = layer
        return layer

    def follow(self, devices: Mapping[str, torch.device]) -> None:
        """Keep each layer's tensors on its parameter's device (the model may have moved)."""
        for layer in self.layers:
            device = devices.get(layer.name)
            if device is not None and layer.values.device != device:
                layer.values, layer.owner = layer.values.to(device), layer.owner.to(device)
                layer.masks.device = device

    def to_payload(self, compact: bool = False) -> dict:
        """A plain dict of numpy arrays and metadata (masks as packed bits).

        ``compact`` (checkpoints) stores only the values of owned weights and, where it can, no owner
        tensor: the owner of a weight is usually the first task whose mask holds it (the owner tensor
        is stored only for a layer where that is not so, such as a classifier whose rows belong to
        tasks), and free weights hold no value that is ever read again once task 0 has started.
        """
        payload: dict = {"format": FORMAT, "num_tasks": self.num_tasks, "compact": compact, "layers": []}
        for layer in self.layers:
            entry = {"name": layer.name, "shape": list(layer.shape),
                     "masks": [layer.masks.bits(t).copy() for t in range(len(layer.masks))]}
            if compact:
                entry["owned_values"] = layer.values[layer.owner >= 0].detach().cpu().numpy().copy()
                if not torch.equal(owner_from_masks(layer.masks, layer.owner), layer.owner):
                    entry["owner"] = layer.owner.cpu().numpy().copy()
            else:
                entry["values"] = layer.values.detach().cpu().numpy().copy()
                entry["owner"] = layer.owner.cpu().numpy().copy()
            payload["layers"].append(entry)
        return payload

    def save(self, path: str | Path) -> None:
        """Write the state with ``torch.save`` (atomic: temp file + rename)."""
        atomic_torch_save(path, self.to_payload())

    def load_payload(self, payload: dict) -> None:
        """Restore values, owners and masks in place; the architecture must match exactly."""
        check_payload(payload)
        saved = payload["layers"]
        for i, layer in enumerate(self.layers):
            if i >= len(saved):
                raise DstclError(
                    f"the saved state has {len(saved)} prunable tensors but this network has "
                    f"{len(self.layers)}; the first missing one is {layer.name!r}. Build the same "
                    "backbone (name, width, stem, classes) that produced the state."
                )
            entry = saved[i]
            if entry["name"] != layer.name or tuple(entry["shape"]) != layer.shape:
                raise DstclError(
                    f"the saved state does not fit this network: tensor {i} is {entry['name']!r} "
                    f"{tuple(entry['shape'])} in the file but {layer.name!r} {layer.shape} here. Build "
                    "the same backbone (name, width, stem, classes) that produced the state."
                )
        if len(saved) > len(self.layers):
            raise DstclError(
                f"the saved state has {len(saved)} prunable tensors but this network only "
                f"{len(self.layers)}; the first extra one is {saved[len(self.layers)]['name']!r}."
            )
        try:
            self._restore_layers(saved)
        except (RuntimeError, ValueError, IndexError, TypeError) as exc:  # sizes that do not add up
            raise DamagedFileError(f"this file is not a valid dstcl sparse state: {exc}. It is damaged, or another "
                                   "program wrote it.") from None

    def _restore_layers(self, saved: list) -> None:
        for layer, entry in zip(self.layers, saved):
            device = layer.values.device
            layer.masks = PackedMasks(layer.shape, device)
            for bits in entry["masks"]:
                layer.masks.append_bits(bits)
            if "values" in entry:
                layer.values.copy_(torch.from_numpy(entry["values"]).to(device))
                layer.owner.copy_(torch.from_numpy(entry["owner"]).to(device))
                continue
            if "owner" in entry:
                layer.owner.copy_(torch.from_numpy(entry["owner"]).to(device))
            else:
                layer.owner.copy_(owner_from_masks(layer.masks, layer.owner))
            layer.values.zero_()
            layer.values[layer.owner >= 0] = torch.from_numpy(entry["owned_values"]).to(device)

    def load(self, path: str | Path) -> None:
        """Restore from a file written by :meth:`save` (read without running code: :func:`dstcl.safeload.load_torch`)."""
        self.load_payload(load_torch(path, "sparse state"))


def check_payload(payload: object) -> None:
    """Refuse a sparse-state payload of the wrong shape, naming what is wrong (never a KeyError later)."""
    def bad(what: str) -> DamagedFileError:
        return DamagedFileError(f"this file is not a valid dstcl sparse state: {what}. It is damaged, or another "
                                "program wrote it.")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise bad("wrong or missing format tag")
    layers = payload.get("layers")
    if not isinstance(layers, list) or not layers:
        raise bad("no list of layers")
    tasks = None
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise bad(f"layer {i} is not a named entry")
        shape = entry.get("shape")
        if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and d > 0 for d in shape):
            raise bad(f"layer {entry['name']!r} has no valid shape")
        n = math.prod(shape)
        masks = entry.get("masks")
        if not isinstance(masks, list) or any(np.asarray(b).dtype != np.uint8 or np.asarray(b).size != -(-n // 8)
                                               for b in masks):
            raise bad(f"layer {entry['name']!r} has masks of the wrong size for {tuple(shape)}")
        tasks = len(masks) if tasks is None else tasks
        if len(masks) != tasks:
            raise bad(f"layer {entry['name']!r} has {len(masks)} task masks, the first layer {tasks}")
        values = entry.get("values", entry.get("owned_values"))
        if not isinstance(values, np.ndarray) or not np.issubdtype(values.dtype, np.floating):
            raise bad(f"layer {entry['name']!r} has no weight values")
        if "values" in entry and values.size != n:
            raise bad(f"layer {entry['name']!r} has {values.size} values for {n} weights")
        if not np.isfinite(values).all():
            raise bad(f"layer {entry['name']!r} holds NaN or infinite weights")
        owner = entry.get("owner")
        if owner is not None and (not isinstance(owner, np.ndarray) or owner.size != n):
            raise bad(f"layer {entry['name']!r} has an owner tensor of the wrong size")


def owner_from_masks(masks: Sequence[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """The owner tensor implied by ``masks``: the first task whose mask holds a weight, else -1."""
    owner = torch.full_like(like, -1)
    for task in reversed(range(len(masks))):
        owner[masks[task]] = task
    return owner


def pack_mask(mask: torch.Tensor) -> np.ndarray:
    """Boolean tensor -> uint8 array of packed bits (row-major over the flattened tensor)."""
    return np.packbits(mask.detach().cpu().numpy().reshape(-1).astype(np.bool_))


def unpack_mask(bits: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_mask`."""
    n = math.prod(shape)
    flat = np.unpackbits(np.asarray(bits, dtype=np.uint8), count=n).astype(np.bool_)
    return torch.from_numpy(flat).reshape(shape)


def subnetwork_digest(state: SparseState, task: int, heads: Mapping[str, Sequence[slice]] | None = None,
                      extra: bytes = b"") -> str:
    """A digest of everything learned task ``task``'s logits depend on: per layer, its mask and the stored
    values under it (in a head layer, only the task's own rows: the other rows score other tasks' classes).

    Equal digests before and after later tasks prove, bit for bit, that the task's outputs cannot have
    changed, so its accuracy need not be measured again (``dstcl.run.matrix``).
    """
    digest = hashlib.blake2b(digest_size=16)
    for layer in state.layers:
        mask = layer.masks[task]
        rows = (heads or {}).get(layer.name)
        if rows is not None:
            own = torch.zeros_like(mask)
            own[rows[task]] = True
            mask = mask & own
        digest.update(layer.name.encode())
        digest.update(pack_mask(mask).tobytes())
        digest.update(layer.values[mask].detach().cpu().numpy().tobytes())
    digest.update(extra)  # the task's own copies of state no mask covers (empty for dstcl's backbones)
    return digest.hexdigest()
