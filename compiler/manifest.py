"""A hash manifest per output directory, so that an unchanged file is recognised without reading it.

Kept in `.mtlsc/write/manifests/` (git-ignored, local to this checkout): for each file the writer
put into an output directory, its SHA-256, whether mtlsc owns it, and the file's identity as
`lstat` reports it (device, inode, size, mtime and ctime in nanoseconds).

The manifest is a hint, never trusted blindly: an entry is used only while every one of those
five values still matches the file on disk. Any change to a file — an edit in place, a
replacement, a `touch`, even `chmod` — changes its ctime, which no user can set back, so the
file is read again. An entry whose ctime is not strictly older than the moment the manifest was
written is dropped when saving (the "racy" case: an edit within the same clock tick would not
show). A missing, corrupt or foreign manifest is simply ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from array import array
from base64 import b64decode, b64encode
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple

from .journal import STATE_DIR, TEMP_SUFFIX, state_dir

StatKey = tuple[int, int, int, int, int]


class Entry(NamedTuple):  # a tuple: a manifest holds one per output file
    key: StatKey
    digest: str  # hex SHA-256 of the content
    owned: bool


class Written(NamedTuple):
    """A file that a worker process wrote into a staging directory (instead of handing its
    bytes back): the hex SHA-256 and size of its content, and its identity as written (None
    when another worker had written the same file, same bytes, first)."""

    digest: str
    size: int
    key: StatKey | None


def stat_key(st: os.stat_result) -> StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_shared: dict[int, tuple[bytes, str]] | None = None  # see `shared_digests`


def digest(data: bytes) -> str:
    """The hex SHA-256 of `data` (computed once per object inside `shared_digests`)."""
    if _shared is None:
        return hashlib.sha256(data).hexdigest()
    found = _shared.get(id(data))
    if found is not None and found[0] is data:
        return found[1]
    text = hashlib.sha256(data).hexdigest()
    _shared[id(data)] = (data, text)
    return text


@contextmanager
def shared_digests() -> Iterator[None]:
    """Within the block, `digest` remembers what it computed by object identity, so one
    cluster's files handed on by the compile are digested once for the run record, the write
    plan and the manifest, not once each. The memo holds every object it has seen until the
    block ends, so no id can be reused by another object meanwhile."""
    global _shared
    outer = _shared
    _shared = {} if outer is None else outer
    try:
        yield
    finally:
        _shared = outer


def _path(root: Path, unit: str) -> Path:
    name = hashlib.sha256(unit.encode("utf-8")).hexdigest()[:24]
    return root / STATE_DIR / "manifests" / f"{name}.json"


def load(root: Path, unit: str) -> dict[str, Entry]:
    """The entries recorded for the output directory `unit` (root-relative)."""
    try:
        doc: Any = json.loads(_path(root, unit).read_bytes())
        if doc.get("dir") != unit:
            return {}
        if doc.get("version") == 2:
            return _decode(doc)
        if doc.get("version") != 1:
            return {}
        return {str(rel): Entry((int(e[0]), int(e[1]), int(e[2]), int(e[3]), int(e[4])),
                                str(e[5]), bool(e[6]))
                for rel, e in doc["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


def _decode(doc: Any) -> dict[str, Entry]:
    """Version 2: parallel lists (names, their five identity numbers one after another, their
    digests) and the names of files mtlsc does not own; decoded without a Python-level loop
    per file, which is what a manifest of thousands of files costs (checked all the same).
    The numbers are 64-bit integers in this machine's byte order, base64 (`keys64`; JSON's
    decimal integers cost most of the time), or a JSON list (`keys`) if one does not fit."""
    names, digests = doc["names"], doc["digests"]
    flat = doc["keys"] if "keys" in doc else array("q", b64decode(doc["keys64"])).tolist()
    foreign = set(doc["foreign"])
    # types checked in C: join accepts only strings, an int sum stays int only over ints
    # (bools aside); a TypeError is a damaged manifest like any other
    if not (isinstance(names, list) and isinstance(flat, list) and isinstance(digests, list)
            and len(flat) == 5 * len(names) and len(digests) == len(names)
            and isinstance(sum(flat), int) and "".join(names) + "".join(digests) is not None):
        return {}
    numbers = iter(flat)
    keys = zip(numbers, numbers, numbers, numbers, numbers, strict=False)
    owned = [n not in foreign for n in names] if foreign else repeat(True)
    made = map(tuple.__new__, repeat(Entry), zip(keys, digests, owned, strict=False))
    return dict(zip(names, made, strict=False))


def save(root: Path, unit: str, entries: Mapping[str, Entry]) -> str:
    """Record `entries` (relative to `unit`); racy entries are left out. Returns the SHA-256
    of the manifest as saved (`file_digest`)."""
    from .fsops import write_file  # ctypes: `check` only loads manifests

    path = _path(root, unit)
    state_dir(root)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    try:
        # The temporary file's own timestamps tell the filesystem clock "now".
        now = write_file(tmp, b"", durable=False).st_mtime_ns
        ctimes = map(itemgetter(4), map(itemgetter(0), entries.values()))
        names = sorted(entries) if max(ctimes, default=0) < now else \
            sorted(rel for rel, e in entries.items() if e.key[4] < now)
        kept = [entries[rel] for rel in names]
        flat = list(chain.from_iterable(map(itemgetter(0), kept)))
        try:
            keys: tuple[str, Any] = ("keys64", b64encode(array("q", flat).tobytes()).decode())
        except OverflowError:
            keys = ("keys", flat)
        doc = {"dir": unit, "digests": list(map(itemgetter(1), kept)),
               "foreign": [rel for rel, e in zip(names, kept, strict=True) if not e.owned],
               keys[0]: keys[1], "names": names, "version": 2}
        data = json.dumps(doc, separators=(",", ":")).encode()
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def file_digest(root: Path, unit: str) -> str | None:
    """The SHA-256 of the manifest file of `unit` as it is now (None: there is none): what
    a record made relative to a saved manifest checks that it still is that manifest."""
    try:
        return hashlib.sha256(_path(root, unit).read_bytes()).hexdigest()
    except OSError:
        return None


def forget(root: Path, unit: str) -> None:
    _path(root, unit).unlink(missing_ok=True)
