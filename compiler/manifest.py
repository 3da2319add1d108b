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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
        if doc.get("version") != 1 or doc.get("dir") != unit:
            return {}
        return {str(rel): Entry((int(e[0]), int(e[1]), int(e[2]), int(e[3]), int(e[4])),
                                str(e[5]), bool(e[6]))
                for rel, e in doc["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}


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
        files = {rel: [*e.key, e.digest, e.owned] for rel, e in sorted(entries.items())
                 if e.key[4] < now}
        doc = {"dir": unit, "files": files, "version": 1}  # keys in order: no sort_keys
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
