"""``dstcl similarity DATASET``: class similarity measured from the data, as JSON and a heat-map.

A dense network learns all classes from part of each class's training images; the cosine similarity of
the class-mean features of the held-out rest is the class x class matrix (``dstcl.train.similarity``).
The file is what ``dstcl run --class-order clustered|interleaved --similarity FILE`` reads
(docs/similarity.md). Backbone and data-set options (``--width``, ``--image-size``) are the declared ones.
"""

from __future__ import annotations

import argparse
from typing import Any

EPILOG = """examples:
  dstcl similarity digits -o sim-digits.json --plot sim-digits.png
  dstcl similarity cifar100 --width 20 --epochs 10 -o sim-cifar100.json      (also compared with the 20 superclasses)
  dstcl similarity miniimagenet --data-dir ../shared/data/miniimagenet --tasks 10 --width 16 -o sim-mini.json
  dstcl run --dataset miniimagenet --tasks 10 --class-order clustered --similarity sim-mini.json
"""


def add_parser(sub) -> None:
    from ..data import DATASETS
    from ..models import MODELS

    p = sub.add_parser("similarity", help="measure class similarity from the data (JSON and a heat-map)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(execute=execute)
    p.add_argument("dataset", metavar="DATASET", help=f"data set: {', '.join(DATASETS.names())}")
    p.add_argument("--data-dir", metavar="DIR", help="where the data set lies (else $DSTCL_DATA, else the cache folder)")
    p.add_argument("-o", "--output", metavar="FILE.json", help="the similarity file [default similarity-DATASET.json]")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the heat-map (needs matplotlib: pip install "
                   "'dstcl[plots]')")
    p.add_argument("--backbone", help=f"dense network: {', '.join(MODELS.names())} [default: the data set's]")
    p.add_argument("--epochs", type=int, default=10, help="training epochs [default 10]")
    p.add_argument("--batch-size", type=int, help="training batch size [default: the data set's]")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate [default 0.001]")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of each class's training images held out for the features [default 0.2]")
    p.add_argument("--per-class", type=int, help="use at most N training images of each class (a quicker measure)")
    p.add_argument("--num-classes", type=int, help="use only the first N classes")
    p.add_argument("--tasks", type=int, default=5, help="the task count whose task x task similarity is reported "
                   "for each class order [default 5]")
    p.add_argument("--seed", type=int, default=0, help="random seed (split, initialisation, batches) [default 0]")
    p.add_argument("--threads", type=int, help="CPU threads (the file is byte-identical at the same count)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps [default auto]")
    p.add_argument("--no-download", dest="download", action="store_false", help="never download a missing data set")
    seen: dict[str, list[str]] = {}
    for kind, registry in (("backbone", MODELS), ("data set", DATASETS)):
        for entry in registry.entries():
            for option in entry.options:
                seen.setdefault(option.name, []).append(f"{kind} {entry.name}: {option.describe()}")
    for name, helps in seen.items():
        p.add_argument(f"--{name.replace('_', '-')}", dest=f"option:{name}", metavar=name.upper(),
                       help="; ".join(helps).replace("%", "%%"))


def _settings(args: argparse.Namespace) -> tuple[Any, str]:
    """The measurement's settings from the flags, each checked (a ConfigError says what is accepted)."""
    from ..config.fields import route_options
    from ..data import DATASETS, dataset_defaults
    from ..errors import ConfigError
    from ..models import MODELS
    from ..train.similarity import SimilaritySettings

    if args.dataset not in DATASETS:
        raise ConfigError(DATASETS.unknown(args.dataset))
    backbone = args.backbone or dataset_defaults(args.dataset).get("backbone")
    if backbone is None:
        raise ConfigError(f"data set {args.dataset} names no default backbone; choose one with --backbone.")
    if backbone not in MODELS:
        raise ConfigError(MODELS.unknown(backbone))
    checks = (("--epochs", args.epochs, 1), ("--batch-size", args.batch_size, 2), ("--per-class", args.per_class, 2),
              ("--num-classes", args.num_classes, 1), ("--tasks", args.tasks, 1), ("--seed", args.seed, 0))
    for flag, value, low in checks:
        if value is not None and value < low:
            raise ConfigError(f"{flag} must be an integer >= {low}, got {value}.")
    if not 0.0 < args.holdout < 1.0:
        raise ConfigError(f"--holdout must be in (0, 1) (the share of each class held out), got {args.holdout}.")
    if not args.lr > 0:
        raise ConfigError(f"--lr must be positive, got {args.lr}.")
    given = {k[len("option:"):]: v for k, v in vars(args).items() if k.startswith("option:") and v is not None}
    model, data, unknown = route_options(given, args.dataset, backbone)
    if unknown:
        raise ConfigError(f"--{unknown[0].replace('_', '-')} is not an option of backbone {backbone} or data set "
                          f"{args.dataset}; drop it.")
    model = {k: v for k, v in model.items() if k in given}
    data = {k: v for k, v in data.items() if k in given}
    settings = SimilaritySettings(backbone=backbone, model_options=model, data_options=data, epochs=args.epochs,
                                  batch_size=args.batch_size, lr=args.lr, holdout=args.holdout, per_class=args.per_class,
                                  num_classes=args.num_classes, tasks=args.tasks, seed=args.seed)
    return settings, args.output or f"similarity-{args.dataset}.json"


def execute(args: argparse.Namespace) -> int:
    import time

    import torch

    from ..data.similarity import similarity_json
    from ..files import atomic_write_text
    from ..run.environment import capped_threads, resolve_device, use_threads
    from ..train.similarity import measure_similarity

    settings, output = _settings(args)
    if args.plot:
        from ..report.similarity import check_plotting

        check_plotting()  # a missing matplotlib is reported before the training, not after
    threads = use_threads(capped_threads(args.threads, print))
    device = resolve_device(args.device)
    started = time.perf_counter()
    doc = measure_similarity(args.dataset, args.data_dir, settings, device=device, download=args.download,
                             progress=False)
    doc["environment"] = {"device": str(device), "threads": threads, "torch": torch.__version__}
    atomic_write_text(output, similarity_json(doc) + "\n")
    print(f"similarity of {len(doc['class_names'])} classes written to {output} (digest {doc['digest']}, "
          f"{time.perf_counter() - started:.0f} s)")
    print(summary_text(doc))
    if args.plot:
        from ..report.similarity import plot_similarity

        plot_similarity(doc, args.plot)
        print(f"heat-map: {args.plot}")
    return 0


def summary_text(doc: dict) -> str:
    """The findings in a few lines: top pairs, the splits' within / between similarity, the hierarchy."""
    lines = ["most similar pairs: " + "; ".join(f"{a} ~ {b} ({s:.2f})" for a, b, s in doc["most_similar_pairs"][:5])]
    tasks = doc.get("tasks", {})
    for order, split in tasks.get("orders", {}).items():
        within, between = split["within"], split["between"]
        shown = lambda v: "-" if v is None else f"{v:+.3f}"  # noqa: E731
        lines.append(f"{tasks['count']} tasks, {order:<11} within a task {shown(within)}, between tasks "
                     f"{shown(between)}")
    hierarchy = doc.get("hierarchy", {})
    if "auc" in hierarchy:
        h = hierarchy
        lines.append(f"superclasses: pairs within {h['mean_within']:+.3f} vs between {h['mean_between']:+.3f}; "
                     f"AUC {h['auc']:.3f}; nearest-neighbour precision {h.get('neighbour_precision', 0):.3f} "
                     f"(chance {h.get('neighbour_precision_chance', 0):.3f}); grouping vs superclasses ARI "
                     f"{h.get('grouping_adjusted_rand', float('nan')):.3f}")
    elif "none" in hierarchy:
        lines.append(f"hierarchy: {hierarchy['none']}")
    return "\n".join(lines)
