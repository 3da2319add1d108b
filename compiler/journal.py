"""The write journal: what an interrupted write left behind, and how the next run cleans it up.

Before the writer creates anything beside the output directories it records, durably, in
`.mtlsc/write/journal.json` every path it may create: the staging directory and the
swapped-out old directory of each output directory, and the temporary and backup names of
loose files such as `mtlsc.lock`. `recover` (run first by every writing command) reads the
journal and undoes an interrupted write: an output directory that the two-rename fallback left
missing gets its old tree back, then every recorded leftover is removed. Stray staging names
next to output directories (for example after `.mtlsc/` was deleted) are swept as well.

A delta write (`spare.write`) journals the output directories whose spare trees it updates
(`spares`); their spares are never trusted without checking, so recovery only removes spares
left half-built or half-removed.

`.mtlsc/` is git-ignored (it also carries its own `.gitignore`); `.mtlsc/write/lock` is held
with flock(2) for the whole write so that two mtlsc processes never write the same tree at once.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_DIR = ".mtlsc/write"
JOURNAL = f"{STATE_DIR}/journal.json"
STAGE_PREFIX = ".mtlsc-stage-"
OLD_PREFIX = ".mtlsc-old-"
TEMP_SUFFIX = ".mtlsc-tmp"
BACKUP_SUFFIX = ".mtlsc-bak"


@dataclass(frozen=True, slots=True)
class UnitPaths:
    """An output directory and the two names the writer uses beside it."""

    live: str  # relative to the repository root
    drop: bool = False  # the directory is removed as a whole (a deleted cluster)

    @property
    def stage(self) -> str:
        parent, _, name = self.live.rpartition("/")
        return f"{parent}/{STAGE_PREFIX}{name}" if parent else f"{STAGE_PREFIX}{name}"

    @property
    def old(self) -> str:
        parent, _, name = self.live.rpartition("/")
        return f"{parent}/{OLD_PREFIX}{name}" if parent else f"{OLD_PREFIX}{name}"


@dataclass(frozen=True, slots=True)
class Journal:
    """What the journal records: every path an interrupted write may have left behind."""

    units: tuple[UnitPaths, ...]
    loose: tuple[str, ...]  # loose files written by temp + rename (mtlsc.lock)
    spares: tuple[str, ...] = ()  # output directories whose spare tree is being updated

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"version": 1, "loose": list(self.loose),
                               "units": [{"dir": u.live, "drop": u.drop} for u in self.units]}
        if self.spares:
            doc["spares"] = list(self.spares)
        return json.dumps(doc, sort_keys=True, indent=1).encode("utf-8") + b"\n"

    @staticmethod
    def from_json(data: bytes) -> Journal:
        doc: Any = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("unknown journal format")
        units = tuple(UnitPaths(str(u["dir"]), bool(u.get("drop", False))) for u in doc["units"])
        return Journal(units, tuple(str(p) for p in doc.get("loose", [])),
                       tuple(str(p) for p in doc.get("spares", [])))


def state_dir(root: Path) -> Path:
    """`.mtlsc/write`, created on first use, with a `.gitignore` that keeps `.mtlsc/` out of Git."""
    path = root / STATE_DIR
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        ignore = path.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# mtlsc's local state: never commit\n*\n", encoding="utf-8")
    return path


@contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """Hold the repository's write lock (waits for another mtlsc that is writing)."""
    fd = os.open(state_dir(root) / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def begin(root: Path, journal: Journal) -> None:
    """Record durably what this write may create, before it creates anything."""
    from .fsops import fsync_dir, write_file  # ctypes: only writing commands need it

    path = state_dir(root) / "journal.json"
    tmp = path.with_name(path.name + TEMP_SUFFIX)
    tmp.unlink(missing_ok=True)
    try:
        write_file(tmp, journal.to_json(), durable=True)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def finish(root: Path) -> None:
    (root / JOURNAL).unlink(missing_ok=True)


def pending(root: Path) -> Journal | None:
    """The journal an interrupted write left, if any (an unreadable one counts as empty)."""
    path = root / JOURNAL
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Journal.from_json(data)
    except (ValueError, KeyError, TypeError):
        return Journal((), ())


def _remove(path: Path) -> bool:
    """Remove a file or a whole tree; True if something was there."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True


def recover(root: Path, extra_parents: Iterable[str] = ()) -> list[str]:
    """Undo what an interrupted write left; returns the leftovers removed (root-relative)."""
    from .fsops import fsync_dir

    journal = pending(root)
    removed: list[str] = []
    if journal is not None:
        for unit in journal.units:
            live, old = root / unit.live, root / unit.old
            if not unit.drop and not os.path.lexists(live) and old.is_dir():
                os.rename(old, live)  # the two-rename fallback stopped halfway: roll back
                fsync_dir(live.parent)
                removed.append(unit.old)
            for leftover in (unit.stage, unit.old):
                if _remove(root / leftover):
                    removed.append(leftover)
        for loose in journal.loose:
            for name in (loose + TEMP_SUFFIX, loose + BACKUP_SUFFIX):
                if _remove(root / name):
                    removed.append(name)
        # Spare trees (spare/) are never trusted, so a half-updated one needs nothing; a
        # spare being built or thrown away when the write stopped is removed.
        removed += _spare_leftovers(root)
    for rel in leftovers(root, extra_parents):
        if _remove(root / rel):
            removed.append(rel)
    if journal is not None:
        finish(root)
    return sorted(set(removed))


def _spare_leftovers(root: Path) -> list[str]:
    home = root / STATE_DIR / "spare"
    try:
        names = [e.name for e in os.scandir(home)]
    except OSError:
        return []
    out = []
    for name in names:
        try:  # mtlsc's own state, never seen by readers: what cannot go stays
            if name.endswith((TEMP_SUFFIX, ".trash")) and _remove(home / name):
                out.append(f"{STATE_DIR}/spare/{name}")
        except OSError:
            continue
    return out


def leftovers(root: Path, parents: Iterable[str]) -> list[str]:
    """Staging names of mtlsc directly inside `parents` (root-relative directories)."""
    found: list[str] = []
    for parent in sorted(set(parents)):
        try:
            entries = list(os.scandir(root / parent if parent else root))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            if exc.errno == errno.EACCES:
                continue
            raise
        for entry in entries:
            if entry.name.startswith((STAGE_PREFIX, OLD_PREFIX)):
                found.append(f"{parent}/{entry.name}" if parent else entry.name)
    return sorted(found)
