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
import json
import os
import sys
import tempfile
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

from .diagnostics import Location
from .model import Origin

MAGIC = b"mtlsc-cache-1\n"
CACHE_DIR = Path(".mtlsc") / "cache"


@cache
def code_salt() -> str:
    """mtlsc's version plus a digest of its own files (code, templates, implementation
    profiles), and the versions of Python and
    of the libraries whose messages end up in diagnostics: a development edit or an upgrade
    makes every old entry unreachable."""
    from importlib.metadata import PackageNotFoundError, version

    found = [sys.version]
    for package_name in ("mtlsc", "jsonschema", "cryptography"):
        try:
            found.append(f"{package_name}=={version(package_name)}")
        except PackageNotFoundError:
            found.append(f"{package_name}==unknown")
    digest = hashlib.sha256("\n".join(found).encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.suffix != ".pyc" and path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


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


class EntryStore:
    """Entries as files `<dir>/<kind>/<key[:2]>/<key>`; a failing disk only costs speed."""

    def __init__(self, directory: Path, *, writable: bool = True) -> None:
        self.directory = directory
        self.writable = writable

    def _path(self, kind: str, key: str) -> Path:
        return self.directory / kind / key[:2] / key

    def get(self, kind: str, key: str) -> Any | None:
        """The payload stored under `key`, or None when absent or not trustworthy."""
        # A plain string path: a warm compile reads one entry per unit, and pathlib's joins
        # cost more than the read.
        name = os.path.join(os.fspath(self.directory), kind, key[:2], key)
        try:
            with open(name, "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        head = MAGIC + key.encode("ascii") + b"\n"
        if not raw.startswith(head):
            return None
        checksum, _, payload = raw[len(head):].partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode("ascii") != checksum:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return None

    def put(self, kind: str, key: str, value: Any) -> None:
        if not self.writable:
            return
        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        data = (MAGIC + key.encode("ascii") + b"\n"
                + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload)
        path = self._path(kind, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return  # a read-only or full disk makes the next run slower, never wrong
