"""One layer's topology update applied to the live network: select, then set values and optimizer state.

:func:`~dstcl.sparse.selection.select_topology` decides *which* positions stay and grow (a pure
function); this module applies that decision to a layer while its task trains:

* newly grown free weights start at 0 (a fresh Kaiming draw for channel-structured layers) with their
  optimizer state reset; a weight dropped and grown again in the same update keeps value and state;
* newly grown owned weights (of earlier tasks) join frozen, with their stored value
  (``reused_value="stored"``) or at zero (``"zero"``, the reference code: its stored value is what
  the task's evaluation uses, so the evaluated network is not the trained one);
* under ``counts="bernoulli"`` a criterion registered ``bernoulli=True`` (random growth) grows a
  binomial number of positions: each candidate with probability ``dropped / candidates``, as the
  reference's Bernoulli masks; the layer's active count then changes from update to update;
* under ``reuse="off"`` growth chooses among free positions only (owned ones are not candidates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .auto import AutoGrowth, criteria, is_policy
from .criteria import DROP, GROW, grow_scores
from .growth_plan import GrowthPlan
from .optim import optimizer_momentum, reset_optimizer_state
from .schedules import UpdateEvery, make_drop_schedule
from .structure import select_units
from .task import TaskLayer, UpdateReport, kaiming_draw, layer_view


@dataclass(frozen=True)
class LayerUpdate:
    """What one layer's update did: weights dropped, of those grown again, grown positions owned earlier."""

    dropped: int
    regrown: int
    grown_reused: int


def bernoulli_growth(layer: TaskLayer, n_drop: int, generator: torch.Generator) -> int:
    """How many positions a Bernoulli growth step grows after dropping ``n_drop``: each of the
    ``numel - kept`` candidates with probability ``n_drop / candidates`` (a binomial draw)."""
    candidates = layer.state.numel - (layer.count - n_drop)
    if candidates <= 0 or n_drop <= 0:
        return 0
    draw = torch.binomial(torch.tensor(float(candidates)), torch.tensor(n_drop / candidates), generator=generator)
    return int(draw)


@torch.no_grad()
def update_layer(layer: TaskLayer, drop_scores: torch.Tensor, grow_scores: torch.Tensor, drop_fraction: float, *,
                 channel: bool, generator: torch.Generator, optimizer: torch.optim.Optimizer | None,
                 reused_value: str = "stored", bernoulli: bool = False, free_only: bool = False) -> LayerUpdate | None:
    """Drop and grow in one layer (see the module doc); None when nothing is dropped. ``free_only``
    (``reuse="off"``): growth chooses among free positions only."""
    grow = (lambda n_drop: bernoulli_growth(layer, n_drop, generator)) if bernoulli else None
    eligible = ~layer.frozen if free_only else None
    picked = select_units(layer.mask, drop_scores, grow_scores, drop_fraction, channel, generator, grow, eligible)
    if picked is None:
        return None
    chosen, n_drop = picked
    new_mask = chosen.mask
    count = int(new_mask.sum())
    if count != layer.count and not bernoulli:  # an invariant, checked even under python -O
        raise RuntimeError(f"{layer.state.name}: active count changed")
    newly = chosen.grown & ~layer.mask  # regrown positions keep their value and optimizer state
    grown_free = newly & ~layer.frozen
    grown_owned = newly & layer.frozen
    param = layer.param
    param.masked_fill_(~new_mask | grown_free, 0.0)
    if channel and bool(grown_free.any()):  # a fresh channel needs a magnitude
        param.copy_(torch.where(grown_free, kaiming_draw(param, generator), param))
    if reused_value == "stored":
        param.copy_(torch.where(grown_owned, layer.state.values, param))
    if optimizer is not None:
        reset_optimizer_state(optimizer, param, grown_free)
    layer.set_mask(new_mask)
    layer.count = count
    layer.fired |= new_mask
    return LayerUpdate(n_drop, int(chosen.grown.sum()) - int(newly.sum()), int(grown_owned.sum()))


class TopologyUpdater:
    """When and how the topology of the task in progress changes; the learner owns the masks it edits.

    Per task: the growth criterion of the plan (a registered one, or ``auto``: the bandit picks one at
    every update), the drop schedule over the task's steps and the update schedule. :meth:`after_step`
    counts optimizer steps and runs :meth:`update` when one is due. ``version`` changes with every
    update, so a caller caching something derived from the masks (the gathered network) knows when to
    rebuild it.
    """

    def __init__(self, config, plan: GrowthPlan, generator: torch.Generator, channels: dict[str, int]):
        self.config, self.plan, self.generator, self.channels = config, plan, generator, channels
        self.auto = AutoGrowth(criteria()) if any(is_policy(n) for n in plan.criteria()) else None
        self.task: int | None = None
        self.steps = 0
        self.updates: list[UpdateReport] = []  # every update of the run so far
        self.criterion = ""

    def start_task(self, task: int, total_steps: int) -> None:
        config = self.config
        self.task, self.steps, self.criterion = task, 0, self.plan.for_task(task)
        self.drop = DROP.get(config.drop)
        self.drop_schedule = make_drop_schedule(config.drop_schedule, config.drop_rate, total_steps,
                                                config.final_drop_rate)
        self.schedule = UpdateEvery(config.update_frequency)

    @property
    def total_steps(self) -> int:
        return getattr(self.drop_schedule, "total_steps", 1)

    @property
    def version(self) -> tuple:
        return (self.task, len(self.updates))

    def due_next_step(self) -> bool:
        """Whether the next optimizer step ends with a topology update."""
        return self.schedule.due(self.steps + 1)

    def observe(self, loss: torch.Tensor) -> None:
        """A step's training loss (what ``--growth auto`` learns from)."""
        if is_policy(self.criterion):
            self.auto.observe(loss)

    def after_step(self, layers: list[TaskLayer], optimizer: torch.optim.Optimizer | None) -> UpdateReport | None:
        """Count one optimizer step; the update's report when one was due, else None."""
        self.steps += 1
        if self.schedule.due(self.steps):
            return self.update(layers, optimizer, self.drop_schedule(self.steps))
        return None

    @torch.no_grad()
    def update(self, layers: list[TaskLayer], optimizer: torch.optim.Optimizer | None,
               drop_fraction: float) -> UpdateReport:
        """Drop the lowest-scoring ``ceil(drop_fraction * k)`` active weights per layer, grow as many."""
        criterion, reward = self.criterion, None
        if is_policy(criterion):  # the bandit credits the last choice and picks this update's criterion
            criterion, reward = self.auto.choose(lambda name: GROW.entry(name).meta.get("needs") != "momentum"
                                                 or optimizer is None or optimizer_momentum(
                                                     optimizer, layers[0].param) is not None)
        report = UpdateReport(self.steps, float(drop_fraction), criterion, auto_reward=reward)
        bernoulli = self.config.counts == "bernoulli" and bool(GROW.entry(criterion).meta.get("bernoulli"))
        for layer in layers:
            if layer.count >= layer.state.numel:
                continue
            view = layer_view(layer, optimizer, self.generator, int(self.task))
            done = update_layer(layer, self.drop(view), grow_scores(criterion, view), drop_fraction,
                                channel=layer.state.name in self.channels, generator=self.generator,
                                optimizer=optimizer, reused_value=self.config.reused_value, bernoulli=bernoulli,
                                free_only=self.config.reuse == "off")
            if done is not None:
                name = layer.state.name
                report.dropped[name], report.regrown[name], report.grown_reused[name] = \
                    done.dropped, done.regrown, done.grown_reused
        self.updates.append(report)
        return report

    def end_task(self) -> None:
        if self.auto is not None and is_policy(self.criterion):
            self.auto.end_task()
        self.task = None

    def state_dict(self) -> dict | None:
        return self.auto.state_dict() if self.auto is not None else None

    def load_state_dict(self, saved: dict | None) -> None:
        if self.auto is not None and saved is not None:
            self.auto.load_state_dict(saved)
