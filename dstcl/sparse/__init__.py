"""The sparse continual-learning core: densities, criteria, selection, schedules, state and the learner.

It knows nothing of data sets, backbones or the command line.
"""

from .capacity import CapacityWarning, LayerCapacity, layer_capacity
from .config import FREE_INITS, SparseConfig
from .criteria import DROP, GROW, LayerView, grow_scores, register_drop, register_grow
from .density import DENSITY_RULES, erk_densities, layer_counts, layer_densities, uniform_densities
from .growth_plan import GrowthPlan, parse_growth
from .learner import SparseLearner
from .optim import OPTIMIZERS
from .params import prunable_parameters
from .schedules import DROP_SCHEDULES, ConstantRate, CosineDecay, UpdateEvery
from .selection import Selection, select_topology, top_positions
from .state import LayerState, SparseState, pack_mask, unpack_mask
from .task import UpdateReport

__all__ = [
    "CapacityWarning", "ConstantRate", "CosineDecay", "DENSITY_RULES", "DROP", "DROP_SCHEDULES", "FREE_INITS",
    "GROW", "GrowthPlan", "LayerCapacity", "LayerState", "LayerView", "OPTIMIZERS", "Selection", "SparseConfig",
    "SparseLearner", "SparseState", "UpdateEvery", "UpdateReport", "erk_densities", "grow_scores",
    "layer_capacity", "layer_counts", "layer_densities", "pack_mask", "parse_growth", "prunable_parameters",
    "register_drop", "register_grow", "select_topology", "top_positions", "uniform_densities", "unpack_mask",
]
