"""A run's learner for ``--method packnet | wsn | supsup``: the factories the ``METHODS`` entries carry.

A factory takes the run's configuration (``dstcl.config.RunConfig``; read by attribute, this layer
cannot import it), the model and the classifier rows of each task, and refuses the settings the method
cannot honour, before any run folder exists.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from ..errors import ConfigError
from .base import MaskLearner
from .packnet import PackNetLearner
from .supsup import SupSupLearner
from .wsn import WSNLearner

Heads = Mapping[str, Sequence[slice]]


def _common(cfg: Any) -> dict:
    return {"seed": cfg.run.seed, "num_tasks": cfg.data.tasks}


def build_packnet(cfg: Any, model: nn.Module, heads: Heads) -> MaskLearner:
    """PackNet with the run's epochs as the main phase and ``retrain_epochs`` after the pruning."""
    if cfg.train.kept_epoch != "last":
        raise ConfigError(
            f"--method packnet prunes at the end of its main phase and retrains after it, so --kept-epoch "
            f"{cfg.train.kept_epoch} could go back to an epoch before the pruning, whose network is not the task's "
            "subnetwork. Use --kept-epoch last (with --protocol reference, add --kept-epoch last)."
        )
    return PackNetLearner(model, cfg.sparse, heads=heads, epochs=cfg.train.epochs,
                          retrain_epochs=cfg.train.retrain_epochs, **_common(cfg))


def build_wsn(cfg: Any, model: nn.Module, heads: Heads) -> MaskLearner:
    """WSN at the run's density (the top-c % of every layer under its ``--init`` rule)."""
    return WSNLearner(model, cfg.sparse, heads=heads, **_common(cfg))


def build_supsup(cfg: Any, model: nn.Module, heads: Heads) -> MaskLearner:
    """SupSup over fixed weights drawn by ``--supsup-init``."""
    return SupSupLearner(model, cfg.sparse, heads=heads, weight_init=cfg.train.supsup_init, **_common(cfg))
