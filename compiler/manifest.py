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
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
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


def _delta_path(root: Path, unit: str) -> Path:
    path = _path(root, unit)
    return path.with_name(path.stem + ".delta.json")


def load(root: Path, unit: str) -> dict[str, Entry]:
    """The entries recorded for the output directory `unit` (root-relative)."""
    return load_with_digest(root, unit)[0]


def load_with_digest(root: Path, unit: str) -> tuple[dict[str, Entry], str | None]:
    """`load`, and the manifest's `file_digest` (None: no manifest, or a damaged one)."""
    try:
        base = _path(root, unit).read_bytes()
        doc: Any = json.loads(base)
        if doc.get("dir") != unit:
            return {}, None
        if doc.get("version") == 2:
            entries = _decode(doc)
        elif doc.get("version") == 1:
            entries = {str(rel): Entry((int(e[0]), int(e[1]), int(e[2]), int(e[3]),
                                        int(e[4])), str(e[5]), bool(e[6]))
                       for rel, e in doc["files"].items()}
        else:
            return {}, None
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}, None
    delta, digest = _delta(root, unit, base)
    if delta is not None:
        entries.update(delta[0])
        for rel in delta[1]:
            entries.pop(rel, None)
    return entries, digest


def _delta(root: Path, unit: str, base: bytes
           ) -> tuple[tuple[dict[str, Entry], list[str]] | None, str | None]:
    """The delta file made on the manifest `base` (None: none, or made on another base) and
    the digest of both (`file_digest`; None when the delta file cannot be read)."""
    hashed = hashlib.sha256(base)
    base_sha = hashed.hexdigest()
    try:
        data = _delta_path(root, unit).read_bytes()
    except FileNotFoundError:
        return None, base_sha
    except OSError:
        return None, None
    return _parse_delta(unit, base_sha, data), _digest_with(hashed, data)


def _digest_with(hashed_base: Any, delta: bytes) -> str:
    """`file_digest` of a manifest and its delta file, from the base's running SHA-256 (the
    base, a megabyte for a large fleet, is hashed once)."""
    both = hashed_base.copy()
    both.update(b"\0" + delta)
    return str(both.hexdigest())


class Lazy(Mapping[str, Entry]):
    """A version-2 manifest whose entries are made when asked for: a delta write looks at a
    few of a directory's thousands of files (`load_lazy`). Iterating over it yields the
    names only; `owned` counts the files mtlsc owns without making any entry."""

    def __init__(self, doc: Any) -> None:
        names, digests = doc["names"], doc["digests"]
        flat = doc["keys"] if "keys" in doc else array("q", b64decode(doc["keys64"]))
        if not (isinstance(names, list) and isinstance(digests, list)
                and len(flat) == 5 * len(names) and len(digests) == len(names)
                and "".join(names) + "".join(digests) is not None):
            raise ValueError("damaged manifest")
        self.names, self.digests, self.flat = names, digests, flat
        self.foreign = set(doc["foreign"])
        self.index = dict(zip(names, range(len(names)), strict=True))

    def __getitem__(self, rel: str) -> Entry:
        i = self.index[rel]
        key = self.flat[5 * i:5 * i + 5]
        if not all(type(n) is int for n in key):
            raise KeyError(rel)  # a damaged entry: as if unknown
        return Entry((key[0], key[1], key[2], key[3], key[4]), str(self.digests[i]),
                     rel not in self.foreign)

    def __contains__(self, rel: object) -> bool:
        return rel in self.index

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def owned(self) -> int:
        return len(self.names) - len(self.foreign)


def load_lazy(root: Path, unit: str) -> tuple[Mapping[str, Entry], str | None]:
    """`load_with_digest`, with the entries of a version-2 manifest made on demand (`Lazy`;
    its delta file, if any, overlaid: `Overlay`)."""
    try:
        base = _path(root, unit).read_bytes()
        doc: Any = json.loads(base)
        if doc.get("dir") != unit or doc.get("version") != 2:
            return load_with_digest(root, unit)
        entries = Lazy(doc)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return {}, None
    delta, digest = _delta(root, unit, base)
    if delta is None:
        return entries, digest
    overlaid = Overlay(entries)
    overlaid.changed.update(delta[0])
    overlaid.gone.update(rel for rel in delta[1] if rel not in delta[0])
    return overlaid, digest


class Overlay(MutableMapping[str, Entry]):
    """A manifest as changed by a write (or by its delta file): `base` (not copied: it may be
    `Lazy`) with the entries set in `changed` and those in `gone` dropped."""

    def __init__(self, base: Mapping[str, Entry]) -> None:
        self.base = base
        self.changed: dict[str, Entry] = {}
        self.gone: set[str] = set()

    def __getitem__(self, rel: str) -> Entry:
        found = self.changed.get(rel)
        if found is not None:
            return found
        if rel in self.gone:
            raise KeyError(rel)
        return self.base[rel]

    def __setitem__(self, rel: str, entry: Entry) -> None:
        self.changed[rel] = entry
        self.gone.discard(rel)

    def __delitem__(self, rel: str) -> None:
        if rel not in self:
            raise KeyError(rel)
        self.changed.pop(rel, None)
        self.gone.add(rel)

    def __contains__(self, rel: object) -> bool:
        return rel in self.changed or (rel in self.base and rel not in self.gone)

    def __iter__(self) -> Iterator[str]:
        yield from (rel for rel in self.base if rel not in self.gone
                    and rel not in self.changed)
        yield from self.changed

    def __len__(self) -> int:
        return len(self.base) - sum(1 for rel in self.gone if rel in self.base) + \
            sum(1 for rel in self.changed if rel not in self.base)

    def owned(self) -> int:
        replaced = sum(1 for rel in self.gone | self.changed.keys() if _owns(self.base, rel))
        return owned_count(self.base) - replaced + \
            sum(1 for e in self.changed.values() if e.owned)

    def sample(self, count: int) -> list[str]:
        """Up to `count` names of unchanged entries, spread over the manifest."""
        names = _names(self.base)
        step = max(1, len(names) // max(count, 1))
        return [rel for rel in names[::step] if rel in self.base and rel not in self.gone
                and rel not in self.changed][:count]


def _names(entries: Mapping[str, Entry]) -> list[str]:
    """The names of a manifest's own entries, without listing a lazy one anew."""
    if isinstance(entries, Lazy):
        return entries.names
    if isinstance(entries, Overlay):
        return _names(entries.base)
    return list(entries)


def _owns(entries: Mapping[str, Entry], rel: str) -> bool:
    """Whether `rel` is an entry mtlsc owns (a lazy manifest answers without making it)."""
    if isinstance(entries, Lazy):
        return rel in entries.index and rel not in entries.foreign
    found = entries.get(rel)
    return found is not None and found.owned


def owned_count(entries: Mapping[str, Entry]) -> int:
    """How many of the entries mtlsc owns."""
    if isinstance(entries, (Lazy, Overlay)):
        return entries.owned()
    return sum(map(itemgetter(2), entries.values()))


def _decode(doc: Any) -> dict[str, Entry]:
    """Version 2: parallel lists (names, their five identity numbers one after another, their
    digests) and the names of files mtlsc does not own; decoded without a Python-level loop
    per file, which is what a manifest of thousands of files costs (checked all the same:
    ValueError or TypeError when damaged). The numbers are 64-bit integers in this machine's
    byte order, base64 (`keys64`; JSON's decimal integers cost most of the time), or a JSON
    list (`keys`) if one does not fit."""
    names, digests = doc["names"], doc["digests"]
    flat = doc["keys"] if "keys" in doc else array("q", b64decode(doc["keys64"])).tolist()
    foreign = set(doc["foreign"])
    # types checked in C: join accepts only strings, an int sum stays int only over ints
    # (bools aside)
    if not (isinstance(names, list) and isinstance(flat, list) and isinstance(digests, list)
            and len(flat) == 5 * len(names) and len(digests) == len(names)
            and isinstance(sum(flat), int) and "".join(names) + "".join(digests) is not None):
        raise ValueError("damaged manifest")
    numbers = iter(flat)
    keys = zip(numbers, numbers, numbers, numbers, numbers, strict=False)
    owned = [n not in foreign for n in names] if foreign else repeat(True)
    made = map(tuple.__new__, repeat(Entry), zip(keys, digests, owned, strict=False))
    return dict(zip(names, made, strict=False))


def _encode(entries: Mapping[str, Entry], names: list[str]) -> dict[str, Any]:
    kept = [entries[rel] for rel in names]
    flat = list(chain.from_iterable(map(itemgetter(0), kept)))
    try:
        keys: tuple[str, Any] = ("keys64", b64encode(array("q", flat).tobytes()).decode())
    except OverflowError:
        keys = ("keys", flat)
    return {"digests": list(map(itemgetter(1), kept)),
            "foreign": [rel for rel, e in zip(names, kept, strict=True) if not e.owned],
            keys[0]: keys[1], "names": names}


def _parse_delta(unit: str, base_sha: str, data: bytes
                 ) -> tuple[dict[str, Entry], list[str]] | None:
    """The changes a delta file (`data`) records on top of the manifest whose SHA-256 is
    `base_sha`: (entries set, names dropped). A delta made on another base is ignored."""
    try:
        doc: Any = json.loads(data)
        if doc.get("version") != 2 or doc.get("dir") != unit or doc.get("base") != base_sha:
            return None
        drop = doc["drop"]
        if not isinstance(drop, list) or "".join(drop) is None:
            return None
        return _decode(doc), drop
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def _clock(path: Path) -> int:
    """The filesystem clock now: the mtime of the (empty) temporary file `path` it creates."""
    from .fsops import write_file  # ctypes: `check` only loads manifests

    path.unlink(missing_ok=True)
    return write_file(path, b"", durable=False).st_mtime_ns


def save(root: Path, unit: str, entries: Mapping[str, Entry]) -> str:
    """Record `entries` (relative to `unit`); racy entries are left out. Returns the SHA-256
    of the manifest as saved (`file_digest`)."""
    path = _path(root, unit)
    state_dir(root)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    try:
        now = _clock(tmp)
        ctimes = map(itemgetter(4), map(itemgetter(0), entries.values()))
        names = sorted(entries) if max(ctimes, default=0) < now else \
            sorted(rel for rel, e in entries.items() if e.key[4] < now)
        doc = {"dir": unit, **_encode(entries, names), "version": 2}
        data = json.dumps(doc, separators=(",", ":")).encode()
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _delta_path(root, unit).unlink(missing_ok=True)  # made on the old base: void anyway
    return hashlib.sha256(data).hexdigest()


DELTA_SHARE = 8  # a delta touching more than 1/8 of the entries: save the whole manifest


def save_changes(root: Path, unit: str, changed: Mapping[str, Entry], removed: Iterable[str],
                 total: int) -> str | None:
    """Record that the manifest of `unit` (as `load` gives it now) changed by `changed`
    (new or changed entries) and lost `removed`, in a small delta file beside it instead of
    rewriting it (racy entries are dropped, as `save` does); the delta is valid only on top
    of the very manifest file it was made for. Returns the SHA-256 as `file_digest` gives
    it, or None when the whole manifest must be saved instead (no manifest, or a delta larger
    than `total` entries / DELTA_SHARE)."""
    path = _path(root, unit)
    try:
        base = path.read_bytes()
    except OSError:
        return None
    hashed = hashlib.sha256(base)
    base_sha = hashed.hexdigest()
    target = _delta_path(root, unit)
    try:
        old = _parse_delta(unit, base_sha, target.read_bytes())
    except OSError:
        old = None
    tmp = target.with_name(target.name + TEMP_SUFFIX)
    try:
        now = _clock(tmp)
        put = dict(old[0]) if old is not None else {}
        drop = set(old[1]) if old is not None else set()
        for rel in removed:
            put.pop(rel, None)
            drop.add(rel)
        for rel, entry in changed.items():
            if entry.key[4] < now:
                put[rel] = entry
                drop.discard(rel)
            else:
                put.pop(rel, None)
                drop.add(rel)
        if (len(put) + len(drop)) * DELTA_SHARE > total:
            tmp.unlink(missing_ok=True)
            return None
        doc = {"base": base_sha, "dir": unit, "drop": sorted(drop),
               **_encode(put, sorted(put)), "version": 2}
        data = json.dumps(doc, separators=(",", ":")).encode()
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _digest_with(hashed, data)


def file_digest(root: Path, unit: str) -> str | None:
    """The SHA-256 of the manifest of `unit` as it is now, its delta included (None: there is
    none): what a record made relative to a saved manifest checks that it still is that one."""
    try:
        base = _path(root, unit).read_bytes()
    except OSError:
        return None
    try:
        delta = _delta_path(root, unit).read_bytes()
    except FileNotFoundError:
        return hashlib.sha256(base).hexdigest()
    except OSError:
        return None
    return _digest_with(hashlib.sha256(base), delta)


def forget(root: Path, unit: str) -> None:
    _delta_path(root, unit).unlink(missing_ok=True)
    _path(root, unit).unlink(missing_ok=True)
