"""A content-addressed cache of compile results under `.mtlsc/cache/` (git-ignored).

An entry is found by a key that digests everything its content depends on; a hit must give the
same bytes as computing afresh, so the cache never changes output, only time. Entries are
untrusted input: each file carries its key and a SHA-256 of its payload, and a file that is
truncated, corrupted, written by another mtlsc (the key includes mtlsc's version and a digest of
its own source files) or not an entry at all is ignored and recomputed. Payloads are JSON, never
pickle, so a planted file cannot run code. Writes go to a temporary file that is renamed into
place, so concurrent runs never see half an entry.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from datetime import timedelta
from typing import Any

from .cache_store import CACHE_DIR, MAGIC, EntryStore, code_salt
from .diagnostics import Location
from .model import Origin

__all__ = ["CACHE_DIR", "MAGIC", "EntryStore", "canonical", "code_salt", "digest"]

_FIELDS: dict[type, tuple[str, ...]] = {}
# The fast path for Origin below is only right while Origin and Location keep these fields.
_ORIGIN_SHAPE = ([f.name for f in dataclasses.fields(Origin)] == ["location", "layer"] and
                 [f.name for f in dataclasses.fields(Location)] == ["file", "line", "col"])


def canonical(value: Any) -> Any:
    """A deterministic plain-data picture of a model value (dataclasses, enums, tuples,
    frozensets, timedeltas) for digesting: equal pictures mean equal values. Unknown types
    raise TypeError rather than risk two different values looking alike."""
    kind = type(value)
    if kind is Origin and _ORIGIN_SHAPE:  # the most frequent leaves, spelled out
        loc = value.location
        return ("Origin", loc.file, loc.line, loc.col, value.layer)
    names = _FIELDS.get(kind)
    if names is not None:
        return (kind.__name__, *[canonical(getattr(value, name)) for name in names])
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is tuple or kind is list:
        return tuple([canonical(item) for item in value])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _FIELDS[kind] = tuple(f.name for f in dataclasses.fields(value))
        return canonical(value)
    if isinstance(value, enum.Enum):
        return (kind.__name__, value.value)
    if kind is frozenset or kind is set:
        return ("set", *sorted((canonical(item) for item in value), key=repr))
    if kind is dict:
        return ("dict", *sorted(((repr(k), canonical(v)) for k, v in value.items())))
    if kind is timedelta:
        return ("timedelta", value.days, value.seconds, value.microseconds)
    if kind is bytes:
        return ("bytes", hashlib.sha256(value).hexdigest())
    raise TypeError(f"no canonical form for {kind.__name__}")


def digest(*parts: Any) -> str:
    """The SHA-256 of the canonical forms of `parts`."""
    text = repr(tuple(canonical(p) for p in parts))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
