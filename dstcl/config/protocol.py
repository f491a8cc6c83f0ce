"""Two protocols, dstcl's and the reference code's, as one shorthand over the protocol switches.

dstcl differs from the reference implementation of the paper in a few deliberate ways
(docs/algorithm.md, "Two protocols"). Each difference is a *protocol switch*: a config field declared
with ``reference=`` (its value in the reference code) beside its default (dstcl's choice). This module
owns nothing else: the list of switches and both value sets are read from those declarations.

``protocol: reference`` (``--protocol reference``) sets every switch to the reference code's value,
``protocol: dstcl`` to dstcl's; a switch given explicitly beside it wins, so a one-at-a-time ablation is
``--protocol reference --counts exact``. The protocol is not itself a setting: a run is identified by
its switches, so two spellings of the same run have one id, and :func:`protocol_label` names it.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError

PROTOCOL = "protocol"
PROTOCOLS = ("dstcl", "reference")
PROTOCOL_HELP = ("dstcl (default) or reference: set every protocol switch to dstcl's choice or to the reference "
                 "code's (a switch given explicitly wins); docs/algorithm.md, 'Two protocols'")


def switches() -> dict[str, tuple[Any, Any]]:
    """Every protocol switch by flat name: (dstcl's value, the reference code's value), in field order."""
    from .fields import FLAT

    return {name: (field.default, field.metadata["reference"]) for name, (_, field) in FLAT.items()
            if field.metadata.get("reference") is not None}


def protocol_values(protocol: Any) -> dict[str, Any]:
    """The switch values of protocol ``protocol`` (``dstcl`` or ``reference``)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}.")
    side = PROTOCOLS.index(protocol)
    return {name: pair[side] for name, pair in switches().items()}


def expand_protocol(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with a ``protocol`` key replaced by its switch values (explicit switches win)."""
    if PROTOCOL not in values:
        return dict(values)
    rest = {k: v for k, v in values.items() if k != PROTOCOL}
    return {**protocol_values(values[PROTOCOL]), **rest}


def protocol_label(flat: Mapping[str, Any]) -> str:
    """``dstcl``, ``reference``, or the nearer of the two with its exceptions: ``reference except counts=exact``."""
    pairs = switches()
    away = [{n: flat.get(n, pair[0]) for n, pair in pairs.items() if flat.get(n, pair[0]) != pair[side]}
            for side in (0, 1)]
    if not away[0]:
        return PROTOCOLS[0]
    if not away[1]:
        return PROTOCOLS[1]
    side = 0 if len(away[0]) <= len(away[1]) else 1
    changes = ", ".join(f"{n}={v}" for n, v in away[side].items())
    return f"{PROTOCOLS[side]} {'with' if side == 0 else 'except'} {changes}"
