"""The data-set registry: a name, a loader, the class count and the settings that suit the data set.

A data set carries its own defaults (as in Mammoth): ``register_dataset("cifar100", loader, classes=100,
defaults={"backbone": "resnet18", "epochs": 100, "batch_size": 64, "update_frequency": 100})``; a run
on it starts from those, below any preset, config file or flag. Its own options (``split``,
``image_size`` for miniImageNet) are declared as :class:`~dstcl.registry.Option` and pass through the
config generically. Adding a data set is one file with a loader and one registration
(``docs/extending.md``).

A loader is ``loader(data_dir, *, download, progress, num_classes, seed, **its_options) ->
ImageDataset``; it receives only the common arguments its signature names.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import DataError
from ..registry import Option, Registry, options_from_signature
from .base import ImageDataset

Loader = Callable[..., ImageDataset]
COMMON = ("data_dir", "cache_dir", "download", "progress", "num_classes", "seed")
DATASETS: Registry[Loader] = Registry("dataset", "Add your own with dstcl.data.register_dataset (docs/extending.md).")


def register_dataset(name: str, loader: Loader | None = None, *, classes: int | None = None,
                     defaults: Mapping[str, Any] | None = None, options: Sequence[Option] | None = None,
                     help: str | None = None, override: bool = False) -> Any:
    """Register ``loader`` as data set ``name`` (or use as a decorator).

    ``classes``: how many classes it has (so ``--tasks`` is checked before any data is read; None
    when only the files can tell). ``defaults``: run settings that suit it (backbone, epochs,
    batch_size, update_frequency, ...). ``options``: its own settings; without them, the loader's
    keyword parameters with a scalar default (other than the common ones) are its options.
    """
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        raise DataError(f"classes of data set {name!r} must be a positive integer or None, got {classes!r}.")

    def add(fn: Loader) -> Loader:
        declared = tuple(options) if options is not None else options_from_signature(fn, COMMON)
        return DATASETS.register(name, fn, options=declared, help=help, override=override,
                                 classes=classes, defaults=dict(defaults or {}))

    return add if loader is None else add(loader)


def dataset_classes(name: str) -> int | None:
    return DATASETS.entry(name).meta.get("classes")


def dataset_defaults(name: str) -> dict[str, Any]:
    return dict(DATASETS.entry(name).meta.get("defaults", {}))


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    cache_dir: str | Path | None = None,
    download: bool = True,
    progress: bool = True,
    num_classes: int | None = None,
    seed: int = 0,
    **options: Any,
) -> ImageDataset:
    """Read data set ``name`` into memory.

    ``data_dir`` is searched first (then ``$DSTCL_DATA``, then the cache folder; see
    :mod:`dstcl.data.locate`); ``num_classes`` keeps the first N classes; ``options`` go to the loader
    (its declared options, e.g. ``split="random"`` for miniimagenet, or any keyword it takes, such as
    ``base_url=`` for CIFAR).
    """
    if name not in DATASETS:
        raise DataError(DATASETS.unknown(name))
    entry = DATASETS.entry(name)
    params = inspect.signature(entry.obj).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = {p.name for p in params.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    declared = {o.name for o in entry.options}
    unknown = sorted(k for k in options if k not in declared and k not in accepted)
    if unknown:
        raise DataError(f"dataset {name} has no option(s) {', '.join(unknown)}; its options: "
                        f"{', '.join(sorted(declared)) or 'none'}.")
    checked = {k: (entry.option(k).check(v, name) if k in declared else v) for k, v in options.items()}
    common = {"cache_dir": cache_dir, "download": download, "progress": progress, "num_classes": num_classes,
              "seed": seed}
    common = {k: v for k, v in common.items() if takes_any or k in accepted}
    return entry.obj(data_dir, **common, **checked)
