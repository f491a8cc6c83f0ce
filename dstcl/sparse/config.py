"""``SparseConfig``: everything that defines the DST algorithm of a run (not the data, not the backbone).

Each field is declared once (:func:`dstcl.settings.setting`): the run configuration composes this
class, so the command line, config files, grid checks and the run hash all read these declarations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError
from ..settings import check_fields, setting
from .criteria import DROP, grow_needs, grow_reads
from .density import DENSITY_RULES, check_density
from .growth_plan import GrowthPlan, parse_growth
from .schedules import DROP_SCHEDULES
from .structure import STRUCTURES

FREE_INITS = ("zero", "kaiming")
COUNTS = ("exact", "bernoulli")
REUSED_VALUES = ("stored", "zero")
HEAD_OWNERSHIP = ("rows", "mask")
REUSE = ("on", "off")


@dataclass(frozen=True)
class SparseConfig:
    """The DST algorithm: density, initial topology, drop and growth, when to update, free-weight start."""

    density: float = setting(0.2, "fraction of weights active per task (the user-facing flag is --sparsity)",
                             user=False)
    init: str = setting("erk", "layer-wise density", choices=DENSITY_RULES)
    erk_power_scale: float = setting(1.0, "ERK exponent on (sum of dims / number of weights)", above=0.0,
                                     maximum=1e3)
    drop: str = setting("magnitude", "drop criterion", choices=DROP)
    growth: str = setting("random", "growth criterion, or a per-task schedule like random@0-4,gradient",
                          metavar="CRITERION")
    drop_rate: float = setting(0.5, "drop fraction at the first update of a task", minimum=0.0, maximum=1.0)
    final_drop_rate: float = setting(0.005, "drop fraction the cosine schedule decays to (the reference: 0.005)",
                                     minimum=0.0, maximum=1.0)
    drop_schedule: str = setting("cosine", "how the drop fraction changes over a task", choices=DROP_SCHEDULES)
    update_frequency: int = setting(100, "optimizer steps between topology updates (0: none, static sparse "
                                    "training)", minimum=0)
    free_init: str = setting("zero", "start of free weights after the first task", choices=FREE_INITS)
    structure: str = setting("unstructured", "what a task's subnetwork is made of: single weights, or whole output "
                             "channels (filters) of every hidden layer", choices=STRUCTURES)
    reuse: str = setting("on", "whether a task's subnetwork may include earlier tasks' weights (read-only): on (the "
                         "paper), or off (only free weights, at task start and in growth: PackNet without sharing; needs "
                         "T x a layer's count <= its size, e.g. 90 % sparsity for 10 tasks with --init uniform)",
                         choices=REUSE, added=True)
    # protocol switches (docs/algorithm.md, "Two protocols"): dstcl's choice by default, the reference code's
    counts: str = setting("exact", "active weights per layer: exact integer counts, or bernoulli (each position drawn "
                          "with the layer's density at a task's start, and random growth drawn per position: the "
                          "reference code)", choices=COUNTS, added=True, reference="bernoulli")
    reused_value: str = setting("stored", "a weight of an earlier task that a topology update grows into this task's "
                                "mask trains with its stored value, or at zero (the reference code: its stored value "
                                "is restored after the task, so the evaluated network is not the trained one)",
                                choices=REUSED_VALUES, added=True, reference="zero")
    head_ownership: str = setting("rows", "classifier weights a task owns: the free weights of its mask in its own "
                                  "classes' rows, or every free weight of its mask (the reference code: task 0 "
                                  "freezes the untrained rows of later tasks' classes)", choices=HEAD_OWNERSHIP,
                                  added=True, reference="mask")

    def validate(self, num_tasks: int | None = None) -> GrowthPlan:
        """Check every field (the one place these rules live); returns the parsed growth plan."""
        check_density(self.density)
        check_fields(self)
        if self.structure == "channel" and self.counts != "exact":
            raise ConfigError("structure 'channel' needs counts 'exact' (a channel budget is a number of whole "
                              "channels); use --counts exact or --structure unstructured.")
        if self.structure == "channel" and self.free_init != "kaiming":
            raise ConfigError(
                "structure 'channel' needs free_init 'kaiming': a whole channel starting at zero has no magnitude, so "
                "magnitude drop removes it before it can compete with reused channels (measured on digits: 62 % vs "
                "85 % ACC). Use --free-init kaiming (the default with --structure channel)."
            )
        if self.reuse == "off" and self.free_init != "kaiming":
            raise ConfigError(
                "reuse 'off' needs free_init 'kaiming': after the first task every weight of a task's subnetwork is "
                "free, and at zero they pass no signal and get no gradient (measured on digits: tasks 1-4 stay at "
                "chance, 50 %). Use --free-init kaiming (the default with --reuse off)."
            )
        if self.reuse == "off" and self.counts != "exact":
            raise ConfigError("reuse 'off' needs counts 'exact' (every task's count must fit in the weights left free "
                              "by earlier tasks, which Bernoulli draws cannot promise); use --counts exact or --reuse on.")
        plan = parse_growth(self.growth)
        return plan.validate(num_tasks) if num_tasks is not None else plan

    @property
    def dynamic(self) -> bool:
        """Whether the topology changes during a task (False: static sparse training)."""
        return self.update_frequency > 0

    def needs(self, what: str, num_tasks: int | None = None) -> bool:
        """Whether a growth criterion of the plan declares it needs ``what`` (e.g. "momentum")."""
        plan = parse_growth(self.growth)
        names = plan.describe(num_tasks) if num_tasks is not None else plan.criteria()
        return self.dynamic and any(grow_needs(n) == what for n in names)

    def reads(self, what: str, num_tasks: int | None = None) -> bool:
        """Whether a growth criterion or policy of the plan may read ``what`` (``auto`` may read momentum)."""
        plan = parse_growth(self.growth)
        names = plan.describe(num_tasks) if num_tasks is not None else plan.criteria()
        return self.dynamic and any(grow_reads(n) == what for n in names)

    def as_dict(self) -> dict:
        return asdict(self)
