"""``dstcl predict``: classify images with an exported model (or a run directory), the task given or inferred."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  dstcl predict model.dstcl photos/                  task inferred (entropy of each task's head)
  dstcl predict model.dstcl a.jpg b.jpg --task 3     task given
  dstcl predict runs/20261127-... batch.npy -o out.csv

With --bn batch models (the paper's BatchNorm) predictions depend on the batch: give many images at once.
"""


def add_parser(sub) -> None:
    from ..train.agnostic import TASK_CRITERIA

    parser = sub.add_parser("predict", help="classify images with a model file or a run directory", epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(execute=execute)
    parser.add_argument("model", metavar="MODEL_OR_RUN", help="a .dstcl file (dstcl export) or a completed run directory")
    parser.add_argument("images", nargs="+", metavar="IMAGES", help="image files, folders of images, or .npy batches")
    parser.add_argument("--task", type=int, help="the task of every image (default: inferred per image)")
    parser.add_argument("--criterion", default="entropy",
                        help=f"how the task is inferred: {', '.join(TASK_CRITERIA.names())}, or supsup (one task for "
                             "the whole batch)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the CSV to FILE instead of stdout")


def execute(args: argparse.Namespace) -> int:
    import csv
    import io
    import sys
    from pathlib import Path

    from ..deploy import load
    from ..deploy.images import read_images
    from ..errors import DstclError
    from ..files import FileWriteError, atomic_write_text
    from ..train.agnostic import TASK_CRITERIA
    from .output import warn

    if args.output and not Path(args.output).parent.is_dir():  # said before the work, not after it
        raise DstclError(f"folder {Path(args.output).parent} does not exist; create it first or choose another -o.")
    if args.criterion not in TASK_CRITERIA and args.criterion != "supsup":
        raise DstclError(TASK_CRITERIA.unknown(args.criterion).replace("; valid:", "; valid: supsup,"))
    model = load(args.model)
    images, names = read_images(args.images, model.package["preprocess"]["image_shape"])
    if model.package["backbone"]["bn"] == "batch" and len(names) < 16:
        warn(f"this model normalises with batch statistics (--bn batch), so a prediction depends on the other "
             f"images of the batch; {len(names)} image(s) make a small batch. Classify more images at once, or train "
             "with --bn task for predictions of single images.")
    prediction = model.predict(images, task=args.task, criterion=args.criterion)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["input", "class", "class_name", "task", "confidence"])
    for row in zip(names, prediction.classes, prediction.names, prediction.tasks, prediction.confidence):
        writer.writerow([*row[:4], f"{row[4]:.4f}"])
    if args.output:
        try:  # the CSV's folder is not created: a mistyped -o must not leave folders behind
            atomic_write_text(args.output, buffer.getvalue(), make_parents=False)
        except FileWriteError as exc:
            raise exc.for_option("-o") from None
        except OSError as exc:  # -o names a folder, a path through a file, ...
            raise DstclError(f"cannot write {args.output}: {exc.strerror or exc}; choose another -o.") from None
        print(f"{len(names)} predictions written to {args.output}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0
