"""dstcl: continual learning with dynamic sparse training.

Each task trains a sparse subnetwork found by DST; its weights are then frozen (parameter
isolation), and later tasks may reuse them read-only.
"""

__version__ = "0.2.0"


def load(path):
    """A trained model from a ``.dstcl`` file or a run directory (:class:`dstcl.deploy.DstclModel`)."""
    from .deploy import load as _load

    return _load(path)
