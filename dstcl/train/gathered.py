"""Channel-structured training on the live channels only (``--channel-training gathered``).

With ``--structure channel`` a task's subnetwork is whole output channels; the masked network still
computes every channel and multiplies the inactive ones by zero. The gathered network computes only the
live channels (:func:`dstcl.models.gather.gather_channels` with ``live=True``): it shares the model's
parameters and gathers their live rows at every step, so gradients, the optimizer, masks and isolation
stay exactly as in masked training. What differs: (1) floating-point summation order (the skipped terms
are exact zeros), so results are close to, not bit-identical with, masked training; (2) inactive
channels get a zero gradient instead of a dense one, so a topology update whose growth criterion reads
the gradient runs its step on the masked network (dense gradients), and criteria that read optimizer
momentum of inactive weights (``momentum``, ``auto``) are refused.
"""

from __future__ import annotations

from torch import nn

from ..models.gather import gather_channels

CHANNEL_TRAINING = ("masked", "gathered")


class GatheredTraining:
    """The network one training step runs: gathered, rebuilt whenever the topology changed."""

    def __init__(self, model: nn.Module, learner, input_shape: tuple[int, ...], needs_gradient: bool):
        self.model, self.learner, self.input_shape = model, learner, input_shape
        self.needs_gradient = needs_gradient  # the task's growth criterion scores inactive weights by gradient
        self._version: tuple | None = None
        self._network: nn.Module | None = None

    def network(self) -> nn.Module:
        """The network for the next step (the masked model when the step ends in a gradient-scored update)."""
        if self.needs_gradient and self.learner.update_due_next_step():
            return self.model
        version = self.learner.topology_version
        if version != self._version:
            self._network, self._version = gather_channels(self.model, self.input_shape, live=True), version
        return self._network
