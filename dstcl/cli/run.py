"""``dstcl run``: train one configuration on a sequence of tasks.

Its flags are derived from the config's declared fields and from the options the registered
backbones and data sets declare, so a plugin's option or criterion shows up here by itself.
"""

from __future__ import annotations

import argparse
from typing import Any

from .output import error

EPILOG = """examples:
  dstcl run                                     offline default: split digits, 5 tasks
  dstcl run --preset cifar100-10 --growth gradient --sparsity 0.9
  dstcl run --dataset miniimagenet --data-dir ~/data/miniimagenet --tasks 10
  dstcl run --growth random@0-4,gradient        adaptive growth (random for tasks 0-4)
  dstcl run --run-dir runs/mine ...             the same command again continues it after a crash
"""

GROUPS = {"data": "data", "model": "backbone", "sparse": "dynamic sparse training", "train": "optimisation",
          "run": "run"}


def add_parser(sub) -> None:
    from ..config import PRESETS

    run = sub.add_parser(
        "run", help="train one configuration on a sequence of tasks", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.set_defaults(execute=execute)
    g = run.add_argument_group("configuration")
    g.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings (flags override it)")
    g.add_argument("--preset", metavar="NAME", help=f"a setting of the paper: {', '.join(PRESETS)}")
    from ..config.protocol import PROTOCOL_HELP

    g.add_argument("--protocol", metavar="NAME", help=PROTOCOL_HELP)
    groups = {section: run.add_argument_group(title) for section, title in GROUPS.items()}
    add_field_flags(groups)
    r = groups["run"]
    r.add_argument("--run-dir", metavar="DIR", help="write into exactly this folder; the same command again "
                   "continues an unfinished run there (other settings are refused)")
    r.add_argument("--fresh", action="store_true", help="with --run-dir: discard whatever run the folder holds")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or failed run from its last checkpoint")
    r.add_argument("--check", action="store_true",
                   help="validate the configuration and the data, print the resolved settings, train nothing")
    r.add_argument("--tensorboard", metavar="DIR",
                   help="also write TensorBoard events to DIR/<run directory name> (pip install 'dstcl[tensorboard]')")


def add_field_flags(groups: dict[str, Any]) -> None:
    """One flag per user-facing config field and per declared backbone / data-set option."""
    from ..config import FLAT, SPARSITY
    from ..config.fields import SPARSITY_HELP
    from ..data import DATASETS
    from ..models import MODELS
    from ..settings import choices_of

    for name, (section, field) in FLAT.items():
        group = groups[section]
        if section == "sparse" and name == "init":
            group.add_argument("--sparsity", dest=SPARSITY, metavar="S", help=SPARSITY_HELP.replace("%", "%%"))
        help_text = field.metadata["help"]
        registry = field.metadata.get("choices")
        if hasattr(registry, "help_text"):
            help_text += f": {registry.help_text()}"
        elif choices_of(field) is not None and not all(str(c) in help_text for c in choices_of(field)):
            help_text += f" ({', '.join(map(str, choices_of(field)))})"
        if name == "growth":
            from ..sparse import GROW

            help_text += f"; criteria: {GROW.help_text()}"
        if field.default is True:
            group.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_const", const=False,
                               help=help_text.replace("%", "%%"))
            continue
        if field.default is False:
            group.add_argument(f"--{name.replace('_', '-')}", dest=name, action="store_const", const=True,
                               help=help_text.replace("%", "%%"))
            continue
        default = _default_text(name, field.default)
        group.add_argument(f"--{name.replace('_', '-')}", dest=name, metavar=field.metadata.get("metavar") or name.upper(),
                           help=(help_text + default).replace("%", "%%"))
    seen: dict[str, list[str]] = {}
    for kind, registry in (("model", MODELS), ("data", DATASETS)):
        for entry in registry.entries():
            for option in entry.options:
                if option.name in FLAT:
                    continue
                seen.setdefault(option.name, []).append(f"{entry.name}: {option.describe()}")
                if len(seen[option.name]) == 1:
                    groups[kind].add_argument(f"--{option.name.replace('_', '-')}", dest=f"option:{option.name}",
                                              metavar=option.name.upper(), help="")
    for action_group in groups.values():
        for action in action_group._group_actions:
            if action.dest.startswith("option:"):
                action.help = "; ".join(seen[action.dest[len("option:"):]]).replace("%", "%%")


def _default_text(name: str, default: Any) -> str:
    """``[default 5]``, or the values the data sets bring (the defaults a run really uses)."""
    from ..data import DATASETS

    by_value: dict[Any, list[str]] = {}
    for entry in DATASETS.entries():
        value = entry.meta.get("defaults", {}).get(name)
        if value is not None:
            by_value.setdefault(value, []).append(entry.name)
    if not by_value:
        return "" if default is None else f" [default {default}]"
    own = "; ".join(f"{', '.join(names)}: {value}" for value, names in by_value.items())
    every = sum(len(names) for names in by_value.values()) == len(DATASETS.names())
    return f" [default: the data set's ({own})]" if every else f" [default {default}; {own}]"


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line (fields and options), by their flat names."""
    from ..config import FLAT, SPARSITY

    out = {name: getattr(args, name, None) for name in (*FLAT, SPARSITY, "protocol")}
    for key, value in vars(args).items():
        if key.startswith("option:"):
            out[key[len("option:"):]] = value
    return {k: v for k, v in out.items() if v is not None}


RESUME_OVERRIDES = ("device", "progress")


def execute(args: argparse.Namespace) -> int:
    from ..config import resolve
    from ..errors import ConfigError
    from ..run.environment import stop_on_sigterm
    from ..run.experiment import resume_experiment, run_experiment
    from ..run.rundir import RunDir
    from ..run.summary import console_table
    from ..run.tensorboard import loggers_for_run, summary_writer_class
    from ..train.trainer import NumericalError

    flags = flags_of(args)
    try:
        if args.tensorboard is not None:
            _check_log_dir(args.tensorboard)
        if args.resume:
            given = [f"--{k.replace('_', '-')}" for k in flags if k not in RESUME_OVERRIDES]
            given += [flag for flag, value in (("--config", args.config), ("--preset", args.preset),
                                               ("--run-dir", args.run_dir), ("--fresh", args.fresh)) if value]
            if given:
                raise ConfigError(
                    f"--resume continues a run with the configuration saved in it (its thread count included); drop "
                    f"{', '.join(given)} (only --device and --no-progress may change)."
                )
            with stop_on_sigterm():
                result = resume_experiment(args.resume, overrides={k: flags.get(k) for k in RESUME_OVERRIDES},
                                           loggers=loggers_for_run(args.tensorboard, args.resume))
        else:
            if args.fresh and not args.run_dir:
                raise ConfigError("--fresh discards the run in the folder given by --run-dir; without --run-dir every "
                                  "run gets a new folder anyway. Add --run-dir DIR or drop --fresh.")
            cfg = resolve(flags, preset=args.preset, config_file=args.config)
            _say_what_auto_chose(flags, args.config, cfg)
            if args.check:
                return _check(cfg)
            run_dir = args.run_dir
            if args.tensorboard and run_dir is None:  # the TensorBoard logger needs the run's folder
                summary_writer_class()  # a missing tensorboard is reported before any folder is made
                run_dir = RunDir.reserve(cfg.run.out, cfg.data.dataset)
            try:
                with stop_on_sigterm():
                    result = run_experiment(cfg, run_dir=run_dir, fresh=args.fresh,
                                            loggers=loggers_for_run(args.tensorboard, run_dir))
            except BaseException:
                if run_dir is not None and args.run_dir is None:
                    RunDir.release_if_unused(run_dir)
                raise
    except NumericalError as exc:
        error(str(exc))
        return 1
    print(console_table(result.metrics))
    print(f"run directory: {result.run_dir}")
    return 0


def _say_what_auto_chose(flags: dict, config_file: str | None, cfg) -> None:
    """``--precision auto`` is resolved before the run starts: say to what, once."""
    from ..config import load_config_file

    asked = flags.get("precision") or (load_config_file(config_file).get("precision") if config_file else None)
    if asked == "auto":
        print(f"--precision auto: {cfg.train.precision} (the fastest arithmetic this machine computes natively; "
              "docs/performance.md)")


def _check_log_dir(path: str) -> None:
    """Create the TensorBoard folder now: a bad path is a mistake to report before training, not after."""
    from pathlib import Path

    from ..errors import ConfigError

    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--tensorboard {path}: cannot use it as a folder ({exc.strerror}); give a folder path.") from None


def _check(cfg) -> int:
    """Everything a run does before training (data, task split, backbone, masks, update count), then stop."""
    import json

    from ..run.experiment import Experiment

    experiment = Experiment(cfg, echo=print)
    learner = experiment.learner
    total = sum(learner.counts.values()) if not experiment.method.sparse else sum(
        layer.numel for layer in learner.state.layers)
    print(json.dumps({**experiment.resolved_config()}, indent=2))
    updates = experiment.updates_per_task
    shown = str(updates[0]) if len(set(updates)) == 1 else f"{min(updates)}-{max(updates)}"
    network = (f"{cfg.model.backbone} with {total:,} prunable weights, {sum(learner.counts.values()):,} active per "
               f"task, {shown} topology update(s) per task" if experiment.method.sparse else
               f"{cfg.model.backbone} with {total:,} trainable weights, all of them trained in every "
               f"{'task' if experiment.method.sequential else 'step'} ({cfg.train.method}: dense)")
    print(f"configuration OK: {cfg.data.tasks} tasks of {experiment.per_task} classes, "
          f"{len(experiment.tasks[0].train_y)} training images in task 0, {network}, {experiment.threads} CPU "
          "thread(s).")
    return 0
