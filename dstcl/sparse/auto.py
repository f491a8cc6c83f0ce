"""``--growth auto``: the growth criterion chosen at every topology update from what the run observes.

A discounted UCB1 bandit (Garivier & Moulines 2011) over the registered criteria. The reward of the
criterion used at an update is the relative decrease of the training loss it was followed by: the
mean loss of the steps after the update (until the next one) against the mean loss of the steps
before it, ``(before - after) / before``. Rewards are discounted by ``gamma`` at every update, so the
choice can change as the network fills up (the paper's intuition: random growth explores while it is
empty, gradient growth exploits once earlier tasks have filled it). Untried criteria are tried first, in
registry order; ties are broken by that order. Loss windows restart with every task (loss levels differ
between tasks); statistics carry over.

Deterministic for a seed (UCB has no randomness of its own, the losses are deterministic on the CPU),
and resumable: :meth:`AutoGrowth.state_dict` is part of the learner's checkpoint. The loss is
accumulated on the device; it is read once per update, not once per step.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .criteria import AUTO, criteria, is_policy  # noqa: F401 - re-exported: the policy is registered there


class AutoGrowth:
    def __init__(self, arms: Sequence[str], gamma: float = 0.9, exploration: float = 0.5):
        self.arms = list(arms)
        self.gamma, self.exploration = gamma, exploration
        self.counts = [0.0] * len(self.arms)  # discounted number of times each arm was used
        self.sums = [0.0] * len(self.arms)  # discounted sum of its rewards
        self.current: int | None = None  # the arm used at the last update (its reward is pending)
        self.before: float | None = None  # mean loss of the window before that update
        self.history: list[dict] = []  # every choice: {"arm", "reward credited now"}
        self._loss_sum: torch.Tensor | None = None
        self._loss_count = 0

    def observe(self, loss: torch.Tensor) -> None:
        """Add one step's loss to the current window (no device synchronisation)."""
        value = loss.detach().float()
        self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
        self._loss_count += 1

    def _window_mean(self) -> float | None:
        if self._loss_sum is None or self._loss_count == 0:
            return None
        mean = float(self._loss_sum) / self._loss_count
        self._loss_sum, self._loss_count = None, 0
        return mean if math.isfinite(mean) else None

    def close_window(self) -> float | None:
        """Credit the pending arm with the window just ended; returns the reward (or None)."""
        after = self._window_mean()
        reward = None
        if self.current is not None and self.before is not None and after is not None and self.before > 0:
            reward = (self.before - after) / self.before
            self.counts = [self.gamma * c for c in self.counts]
            self.sums = [self.gamma * s for s in self.sums]
            self.counts[self.current] += 1.0
            self.sums[self.current] += reward
        self.before = after
        return reward

    def choose(self, usable: Callable[[str], bool] = lambda name: True) -> tuple[str, float | None]:
        """At a topology update: credit the last arm, pick the next one (its name, the reward credited)."""
        reward = self.close_window()
        candidates = [i for i, name in enumerate(self.arms) if usable(name)]
        untried = [i for i in candidates if self.counts[i] == 0.0]
        if untried:
            pick = untried[0]
        else:
            total = sum(self.counts[i] for i in candidates)
            pick = max(candidates, key=lambda i: self.sums[i] / self.counts[i]
                       + self.exploration * math.sqrt(2.0 * math.log(max(total, 1.0)) / self.counts[i]))
        self.current = pick
        self.history.append({"arm": self.arms[pick], "reward": reward})
        return self.arms[pick], reward

    def end_task(self) -> None:
        """Credit the last update of the task, then start the next task's windows afresh."""
        self.close_window()
        self.current, self.before = None, None

    def state_dict(self) -> dict:
        pending = None if self._loss_sum is None else float(self._loss_sum)
        return {"arms": self.arms, "counts": self.counts, "sums": self.sums, "current": self.current,
                "before": self.before, "history": self.history, "loss_sum": pending, "loss_count": self._loss_count}

    def load_state_dict(self, saved: dict) -> None:
        self.arms, self.counts, self.sums = list(saved["arms"]), list(saved["counts"]), list(saved["sums"])
        self.current, self.before, self.history = saved["current"], saved["before"], list(saved["history"])
        self._loss_sum = None if saved["loss_sum"] is None else torch.tensor(saved["loss_sum"])
        self._loss_count = int(saved["loss_count"])
