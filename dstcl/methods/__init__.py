"""The mask-based continual learners dstcl is judged against: PackNet, WSN and SupSup.

Each implements the Learner contract (:mod:`dstcl.train.contract`) and keeps its per-task masks and
owned values in a :class:`~dstcl.sparse.SparseState`, as DST does, so runs, checkpoints, the accuracy
matrix's isolation proofs, capacity reports and the model file treat them like DST. ``--method`` finds
them through the factories in :mod:`.build` (``dstcl.train.methods.METHODS``).
"""

from .base import MaskLearner
from .build import build_packnet, build_supsup, build_wsn
from .packnet import PackNetLearner
from .supsup import WEIGHT_INITS, SupSupLearner
from .wsn import WSNLearner

__all__ = ["MaskLearner", "PackNetLearner", "SupSupLearner", "WEIGHT_INITS", "WSNLearner", "build_packnet",
           "build_supsup", "build_wsn"]
