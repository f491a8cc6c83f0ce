"""How a sequence of tasks is learned: DST (the method studied) and the baselines it is judged against.

``METHODS`` is the registry behind ``--method``:

* ``dst``: dynamic sparse training per task, then the task's weights are frozen (the paper);
* ``static``: the same sparse isolation without topology updates (each task keeps its initial random
  topology): what DST itself adds;
* ``finetune``: one dense network trained on each task in turn, no isolation (forgetting: the lower bound);
* ``joint``: one dense network trained on all tasks' data at once with task heads, for the same number
  of optimizer steps as the sequential runs (the usual upper bound; no sequence, so no BWT or FWT).
"""

from __future__ import annotations

from ..registry import Registry

METHODS: Registry[str] = Registry("method")
METHODS.register("dst", "dst", help="dynamic sparse training, each task's weights frozen (the paper)",
                 sparse=True, dynamic=True, sequential=True)
METHODS.register("static", "static", help="sparse and isolated, no topology updates", sparse=True, dynamic=False,
                 sequential=True)
METHODS.register("finetune", "finetune", help="dense, no isolation: forgets (lower bound)", sparse=False,
                 dynamic=False, sequential=True)
METHODS.register("joint", "joint", help="dense, all tasks' data at once (upper bound)", sparse=False,
                 dynamic=False, sequential=False)
