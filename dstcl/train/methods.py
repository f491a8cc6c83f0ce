"""How a sequence of tasks is learned: DST (the method studied) and the baselines it is judged against.

``METHODS`` is the registry behind ``--method``; each entry is a :class:`Method`, which says what the
harness must do for it (a sparse, isolated learner or one dense network; topology updates or not; one
training phase per task or one over all tasks):

* ``dst``: dynamic sparse training per task, then the task's weights are frozen (the paper);
* ``static``: the same sparse isolation without topology updates (each task keeps its initial random
  topology): what DST itself adds;
* ``finetune``: one dense network trained on each task in turn, no isolation (forgetting: the lower bound);
* ``joint``: one dense network trained on all tasks' data at once with task heads, for the same number
  of optimizer steps as the sequential runs (the usual upper bound; no sequence, so no BWT or FWT);
* ``packnet``, ``wsn``, ``supsup``: the mask-based continual learners (:mod:`dstcl.methods`), isolated
  as DST is, at matched capacity; their entries carry the factory of their learner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from ..methods import build_packnet, build_supsup, build_wsn
from ..registry import Registry
from .separate import build_separate


@dataclass(frozen=True)
class Method:
    name: str
    sparse: bool  # per-task masks with frozen ownership (else one dense network)
    dynamic: bool  # topology updates during a task
    sequential: bool  # one training phase per task (else one phase over every task's data)
    # (run config, model, classifier rows per task) -> its learner; None: the harness's own (DST or dense)
    learner: Callable[[Any, Any, Any], Any] | None = field(default=None, compare=False)
    exportable: bool = True  # its tasks run through one network a model file can hold (dstcl export)


METHODS: Registry[Method] = Registry("method")
METHODS.register("dst", Method("dst", sparse=True, dynamic=True, sequential=True),
                 help="dynamic sparse training, each task's weights frozen (the paper)")
METHODS.register("static", Method("static", sparse=True, dynamic=False, sequential=True),
                 help="sparse and isolated, no topology updates")
METHODS.register("finetune", Method("finetune", sparse=False, dynamic=False, sequential=True),
                 help="dense, no isolation: forgets (lower bound)")
METHODS.register("joint", Method("joint", sparse=False, dynamic=False, sequential=False),
                 help="dense, all tasks' data at once (upper bound)")
METHODS.register("packnet", Method("packnet", sparse=True, dynamic=False, sequential=True, learner=build_packnet),
                 help="PackNet: train the free weights, prune by magnitude, retrain, freeze (Mallya & Lazebnik 2018)")
METHODS.register("wsn", Method("wsn", sparse=True, dynamic=False, sequential=True, learner=build_wsn),
                 help="Winning SubNetworks: learned top-k masks over shared weights (Kang et al. 2022)")
METHODS.register("supsup", Method("supsup", sparse=True, dynamic=False, sequential=True, learner=build_supsup),
                 help="SupSup: a learned mask per task over fixed random weights (Wortsman et al. 2020)")
METHODS.register("separate", Method("separate", sparse=False, dynamic=False, sequential=True, learner=build_separate,
                                    exportable=False),
                 help="a fresh dense network per task, trained on it alone: the within-task difficulty reference")
