"""Fault injection for the reliability tests: kill this process, or poison the loss, at a named point.

``DSTCL_KILL_AT="topology_update:3"`` sends SIGKILL to the process the 3rd time execution reaches
``faults.point("topology_update")``. Named points: training_step, topology_update, evaluation,
checkpoint_write, task_end.

``DSTCL_FAIL_AT="checkpoint_write:2"`` raises ``OSError(ENOSPC)`` there instead (a full disk).

``DSTCL_NAN_AT="loss:40"`` makes ``faults.poisoned("loss")`` true the 40th time a training loss is
computed (counted over the whole run), so the NaN handling can be tested after completed tasks.

Unset (always, outside tests), both are a string comparison.
"""

from __future__ import annotations

import errno
import os
import signal


def _parse(variable: str) -> tuple[str, int]:
    target, _, count = os.environ.get(variable, "").partition(":")
    return target, (int(count or 1) if target else 0)


_kill_target, _kill_remaining = _parse("DSTCL_KILL_AT")
_nan_target, _nan_remaining = _parse("DSTCL_NAN_AT")
_fail_target, _fail_remaining = _parse("DSTCL_FAIL_AT")


def point(name: str) -> None:
    """Die (or fail as on a full disk) here if the environment asks for it (a no-op otherwise)."""
    global _kill_remaining, _fail_remaining
    if name == _fail_target:
        _fail_remaining -= 1
        if _fail_remaining == 0:
            raise OSError(errno.ENOSPC, "No space left on device (injected by DSTCL_FAIL_AT)")
    if name != _kill_target:
        return
    _kill_remaining -= 1
    if _kill_remaining == 0:
        os.kill(os.getpid(), signal.SIGKILL)


def poisoned(name: str) -> bool:
    """Whether the value computed at ``name`` should be replaced by NaN this time."""
    global _nan_remaining
    if name != _nan_target:
        return False
    _nan_remaining -= 1
    return _nan_remaining == 0
