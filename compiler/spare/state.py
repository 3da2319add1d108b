"""What is known about a spare tree without reading it: the record that lets a delta write
skip listing the spare's files (`plan`).

Kept beside the spare (`.mtlsc/write/spare/<name>.json`), written when the spare was last
made or brought up to date, and relative to one live hash manifest (its SHA-256, `manifest`):

- `dirs`: the identity of every directory of the spare (inode, mtime and ctime in ns, and
  mode). Creating, removing or renaming an entry in a directory changes its mtime and ctime,
  so a directory whose identity is unchanged still holds exactly the entries it held, each
  the same inode;
- `differ`: the paths where the spare is not the live file's inode (a file written or deleted
  since, present on one side only); every other file of the live manifest is, in the spare,
  the very inode the manifest names;
- `live_dirs`: the live tree's directories then (so their list need not be rebuilt from the
  manifest's paths).

The record is a hint checked before use, never trusted blindly: used only while the live
manifest is byte for byte the one it was made against, and only for directories whose
identity is unchanged (the others are listed). Directories whose ctime was not older than the
filesystem clock when the record was made are recorded as unknown (an edit in the same clock
tick would not show). A missing or damaged record means listing the whole spare.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..journal import TEMP_SUFFIX
from . import trees as spare

DirIdentity = tuple[int, int, int, int]  # inode, mtime ns, ctime ns, mode


@dataclass(frozen=True, slots=True)
class SpareState:
    """What is recorded of one spare tree, so a delta write need not list it (see the module)."""

    manifest: str  # SHA-256 of the live manifest file this record is relative to
    dirs: dict[str, DirIdentity | None]  # None: changed too recently to be vouched for
    differ: frozenset[str]
    live_dirs: tuple[str, ...]


def _path(root: Path, unit: str) -> Path:
    home = spare.path_of(root, unit)
    return home.with_name(home.name + ".json")


def identity(st: os.stat_result) -> DirIdentity:
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, stat.S_IMODE(st.st_mode))


def load(root: Path, unit: str) -> SpareState | None:
    try:
        doc: Any = json.loads(_path(root, unit).read_bytes())
        if doc.get("version") != 1 or doc.get("dir") != unit:
            return None
        dirs: dict[str, DirIdentity | None] = {
            str(rel): None if d is None else (int(d[0]), int(d[1]), int(d[2]), int(d[3]))
            for rel, d in doc["dirs"].items()}
        return SpareState(str(doc["manifest"]), dirs, frozenset(map(str, doc["differ"])),
                          tuple(map(str, doc["liveDirs"])))
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def forget(root: Path, unit: str) -> None:
    with contextlib.suppress(OSError):
        drop(root, unit)


def drop(root: Path, unit: str) -> None:
    """Remove the record (before the spare is changed: raises when it cannot)."""
    _path(root, unit).unlink(missing_ok=True)


def record(root: Path, unit: str, manifest_digest: str, dirs: Iterable[str],
           differ: Iterable[str], live_dirs: Iterable[str]) -> None:
    """Record the spare of `unit` (its directories `dirs`, "" the top, are `lstat`ed now)
    relative to the live manifest with SHA-256 `manifest_digest`. Errors only lose the record."""
    home = os.fspath(spare.path_of(root, unit))
    found: dict[str, DirIdentity | None] = {}
    try:
        for rel in sorted(set(dirs) | {""}):
            found[rel] = identity(os.lstat(f"{home}/{rel}" if rel else home))
        now = spare.clock(root)
        if max((d[2] for d in found.values() if d is not None), default=0) >= now:
            spare.settle(root, max(d[2] for d in found.values() if d is not None))
            now = spare.clock(root)
        found = {rel: d if d is not None and d[2] < now else None for rel, d in found.items()}
        doc = {"version": 1, "dir": unit, "manifest": manifest_digest, "dirs": found,
               "differ": sorted(set(differ)), "liveDirs": sorted(set(live_dirs))}
        path = _path(root, unit)
        tmp = path.with_name(path.name + TEMP_SUFFIX)
        tmp.write_bytes(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
        os.replace(tmp, path)
    except OSError:
        forget(root, unit)
