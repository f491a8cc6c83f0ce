"""``dstcl run``: train one configuration on a sequence of tasks."""

from __future__ import annotations

import argparse

from .output import error

EPILOG = """examples:
  dstcl run                                     offline default: split digits, 5 tasks
  dstcl run --preset cifar100-10 --growth gradient --sparsity 0.9
  dstcl run --dataset miniimagenet --data-dir ~/data/miniimagenet --tasks 10
  dstcl run --growth random@0-4,gradient        adaptive growth (random for tasks 0-4)
"""


def add_parser(sub) -> None:
    from ..config import PRESETS

    run = sub.add_parser(
        "run", help="train one configuration on a sequence of tasks", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.set_defaults(execute=execute)
    g = run.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", help="YAML file of settings (flags override it)")
    g.add_argument("--preset", metavar="NAME", help=f"a setting of the paper: {', '.join(PRESETS)}")
    d = run.add_argument_group("data")
    d.add_argument("--dataset", help="digits (offline default), cifar10, cifar100, miniimagenet")
    d.add_argument("--data-dir", help="where the data set lies (else $DSTCL_DATA, else the cache folder)")
    d.add_argument("--tasks", type=int, help="number of tasks (must divide the number of classes)")
    d.add_argument("--class-order", help="sequential (0..C-1, the reference) or random (seeded)")
    d.add_argument("--num-classes", type=int, help="use only the first N classes")
    d.add_argument("--image-size", type=int, help="miniImageNet resolution: 32 (the reference) or 84")
    d.add_argument("--split", help="miniImageNet train/test per class: first500 (first 500 sorted files train, "
                   "last 100 test) or random (a seeded 100 test)")
    d.add_argument("--no-download", dest="download", action="store_const", const=False, help="never download")
    b = run.add_argument_group("backbone")
    b.add_argument("--backbone", help="resnet18, mobilenetv2, cnn, mlp")
    b.add_argument("--width", type=int, help="resnet18 base channels (64; 20 = reduced ResNet-18)")
    b.add_argument("--stem", help="resnet18 stem: imagenet (7x7 stride 2, the reference) or cifar (3x3)")
    b.add_argument("--bn", help="BatchNorm statistics: batch (the paper) or task (per-task running stats)")
    s = run.add_argument_group("dynamic sparse training")
    s.add_argument("--init", help="layer-wise density: erk or uniform")
    s.add_argument("--growth", help="random, unfired, gradient, momentum, or a schedule like random@0-4,gradient")
    s.add_argument("--sparsity", type=float, help="fraction of inactive weights per task (0.8 = 80 %%)")
    s.add_argument("--drop-rate", type=float, help="initial drop fraction (cosine decay to 0.005)")
    s.add_argument("--drop-schedule", help="cosine or constant")
    s.add_argument("--update-frequency", type=int, help="optimizer steps between topology updates")
    s.add_argument("--free-init", help="start of free weights after the first task: zero or kaiming")
    o = run.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, help="epochs per task")
    o.add_argument("--batch-size", type=int)
    o.add_argument("--lr", type=float, help="learning rate (x0.1 at 50 %% and 75 %% of the epochs)")
    o.add_argument("--optimizer", help="adam or sgd")
    o.add_argument("--momentum", type=float, help="SGD momentum")
    o.add_argument("--weight-decay", type=float, help="L2 weight decay on trainable weights only")
    r = run.add_argument_group("run")
    r.add_argument("--seed", type=int)
    r.add_argument("--device", help="auto (CUDA when present), cpu, cuda, cuda:N")
    r.add_argument("--out", help="folder for run directories (default runs/)")
    r.add_argument("--run-dir", help="write into exactly this folder (must not hold a completed run)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or failed run from its last checkpoint")
    r.add_argument("--check", action="store_true",
                   help="validate the configuration and the data, print the resolved settings, train nothing")
    r.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bars")
    r.add_argument("--checkpoint-budget", type=float,
                   help="max share of time spent on epoch checkpoints (default 0.02; 1 = after every epoch)")
    r.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard events to DIR/<run directory name> (pip install 'dstcl[tensorboard]')")


FLAG_FIELDS = (
    "dataset", "data_dir", "tasks", "class_order", "num_classes", "image_size", "split", "download", "backbone",
    "width", "stem", "bn", "init", "growth", "sparsity", "drop_rate", "drop_schedule", "update_frequency",
    "free_init", "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "seed", "device",
    "out", "progress", "checkpoint_budget",
)



def execute(args: argparse.Namespace) -> int:
    from ..config import resolve
    from ..errors import ConfigError
    from ..experiment import resume_experiment, run_experiment
    from ..tensorboard import loggers_for_run, release_if_unused, reserve_run_dir
    from ..train.trainer import NumericalError

    flags = {name: getattr(args, name) for name in FLAG_FIELDS}
    try:
        if args.tensorboard is not None:
            _check_log_dir(args.tensorboard)
        if args.resume:
            given = [f"--{k.replace('_', '-')}" for k, v in flags.items() if v is not None and k not in RESUME_OVERRIDES]
            given += [f"--{k}" for k in ("config", "preset", "run_dir") if getattr(args, k)]
            if given:
                raise ConfigError(
                    f"--resume continues a run with the configuration saved in it; drop {', '.join(given)} "
                    "(only --device and --no-progress may change)."
                )
            result = resume_experiment(args.resume, overrides={k: flags[k] for k in RESUME_OVERRIDES if flags[k] is not None},
                                       loggers=loggers_for_run(args.tensorboard, args.resume))
        else:
            cfg = resolve(flags, preset=args.preset, config_file=args.config)
            if args.check:
                return _check(cfg)
            run_dir = args.run_dir
            if args.tensorboard and run_dir is None:  # the TensorBoard logger needs the run's folder
                run_dir = reserve_run_dir(cfg.out, cfg.dataset)
            try:
                result = run_experiment(cfg, run_dir=run_dir, loggers=loggers_for_run(args.tensorboard, run_dir))
            except BaseException:
                if run_dir is not None and args.run_dir is None:
                    release_if_unused(run_dir)
                raise
    except NumericalError as exc:
        error(str(exc))
        return 1
    print(_table(result.metrics))
    print(f"run directory: {result.run_dir}")
    return 0


RESUME_OVERRIDES = ("device", "progress")


def _check_log_dir(path: str) -> None:
    """Create the TensorBoard folder now: a bad path is a mistake to report before training, not after."""
    from pathlib import Path

    from ..errors import ConfigError

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--tensorboard {path}: cannot use it as a folder ({exc.strerror}); give a folder path.") from None


def _check(cfg) -> int:
    """Everything a run does before training (data, task split, backbone, masks), then stop."""
    import json

    from ..experiment import Experiment

    experiment = Experiment(cfg, echo=lambda message: None)
    learner = experiment.learner
    total = sum(layer.numel for layer in learner.state.layers)
    active = sum(learner.counts.values())
    print(json.dumps({**cfg.as_dict(), "density": cfg.density}, indent=2))
    print(f"configuration OK: {cfg.tasks} tasks of {experiment.per_task} classes, {len(experiment.tasks[0].train_y)} "
          f"training images in task 0, {cfg.backbone} with {total:,} prunable weights, {active:,} active per task.")
    return 0


def _table(m: dict) -> str:
    R = m["accuracy_matrix"]
    T = len(R)
    final = R[-1]
    diag = [R[j][j] for j in range(T)]
    lines = ["task  just learned  at the end"]
    for j in range(T):
        lines.append(f"{j:>4}  {_pct(diag[j]):>12}  {_pct(final[j]):>10}")
    lines.append(
        f"ACC {_pct(m['acc'])}  BWT {_num(m['bwt'])}  FWT {_num(m['fwt'])}  FWT(reference) {_pct(m['fwt_reference'])}"
    )
    return "\n".join(lines)


def _pct(v) -> str:
    return "-" if v is None else f"{v:.2f} %"


def _num(v) -> str:
    return "-" if v is None else f"{v:+.2f}"


