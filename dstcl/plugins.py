"""User plugins: modules that register their own growth or drop criteria (or backbones, data sets).

``DSTCL_PLUGINS="mylab.criteria,mylab.nets"`` makes every ``dstcl`` command import those modules
first, so ``dstcl run --growth my_criterion`` finds a criterion registered there. An environment
variable rather than a flag, so sweep subprocesses, Ray workers and ``--resume`` see the same plugins.
"""

from __future__ import annotations

import importlib
import os
from typing import Mapping

from .errors import DstclError

ENV = "DSTCL_PLUGINS"


def load_plugins(env: Mapping[str, str] = os.environ) -> list[str]:
    """Import each module named in ``DSTCL_PLUGINS`` (comma-separated); returns their names."""
    names = [n.strip() for n in env.get(ENV, "").split(",") if n.strip()]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a plugin's own bug is still the user's to fix: say which and why
            raise DstclError(
                f"cannot import plugin module {name!r} named in {ENV} ({type(exc).__name__}: {exc}); "
                "check the name and that its folder is on PYTHONPATH, or unset the variable."
            ) from None
    return names
