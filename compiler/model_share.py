"""One object for equal resolved values across clusters (memory of large fleets).

An intent placed on several clusters resolves to equal gateways wherever no override and no
cluster setting changes it, yet each cluster's resolve builds its own objects: a fleet of N
intents x C clusters held C copies of most of its model. `Sharing` keeps the first of equal
gateways (and, for gateways that differ, the first of equal parts) and drops the copies,
as `incremental.resolve_all` resolves. The model's values are frozen, so an equal object is
the same value: nothing that reads the model can tell, and the output does not change. The
posture follows: it is computed once per gateway object (`posture.compute_posture`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .model import FrontendTLS, Gateway, PerPort, PortValidation, Validation

# The parts of a gateway worth sharing when the whole gateway differs (tuples: per item).
_PARTS = ("listeners", "frontend", "ports", "routes", "listener_sets")


class Sharing:
    """Called with each resolved gateway in turn (every cluster's); returns an equal
    gateway seen before where there is one (compared with the earlier variants of the same
    gateway only), so the copy is garbage at once, before the next cluster resolves."""

    def __init__(self) -> None:
        self.variants: dict[str, list[Gateway]] = {}

    def __call__(self, gw: Gateway) -> Gateway:
        known = self.variants.setdefault(gw.key, [])
        same = next((v for v in known if _same(v, gw)), None)
        if same is None:
            same = _share_parts(gw, known[0]) if known else gw
            known.append(same)
        return same


def _share_parts(gw: Gateway, base: Gateway) -> Gateway:
    """`gw` with the parts (and tuple items) equal to those of `base` taken from `base`."""
    changes: dict[str, Any] = {}
    for name in _PARTS:
        mine, theirs = getattr(gw, name), getattr(base, name)
        if _same(mine, theirs):
            changes[name] = theirs
        elif isinstance(mine, tuple) and isinstance(theirs, tuple) and len(mine) == len(theirs):
            changes[name] = tuple(b if _same(a, b) else a
                                  for a, b in zip(mine, theirs, strict=True))
    return dataclasses.replace(gw, **changes)


def _same(a: Any, b: Any) -> bool:
    """Equal, and equal in what `==` leaves out: where each clientRestrictions was written
    (`ClientRestrictions.origin`, compare=False), which guardrail violations and the
    ClientTrafficPolicy's sources point at. Equal restrictions from different files (a
    cluster override repeating the base) stay apart. The same object is the same value (the
    spec memo of `resolve` hands one gateway to every cluster that resolves it alike)."""
    return a is b or (a == b and _hidden(a) == _hidden(b))


def _hidden(value: Any) -> tuple[Any, ...]:
    if isinstance(value, Gateway):
        return _hidden(value.frontend) + _hidden(value.ports)
    if isinstance(value, FrontendTLS):
        return _hidden(value.default) + _hidden(value.per_port)
    if isinstance(value, PerPort | PortValidation):
        return _hidden(value.validation)
    if isinstance(value, Validation):
        return (value.restrictions.origin,)
    if isinstance(value, tuple):
        return tuple(h for item in value for h in _hidden(item))
    return ()
