"""Spare trees: a second complete copy of each large output directory, kept in mtlsc's local
state (`.mtlsc/write/spare/`), so that an edit can be written in time proportional to the edit
(`write.write_changes`, docs/output.md "Crash safety").

A spare is nothing but a directory tree on the same filesystem as its output directory. It is
never trusted for its content: before it is used, every file in it must be *the same inode*
as the live file at the same path (whose identity the hash manifest vouches for), or it is
replaced. So a spare edited by hand, left half-updated by a crash, or stale after other
writes costs repairs, never wrong output. Unchanged files are hard links shared with the live
tree, so a spare costs the disk only the old versions of the files that differ.

Where spares come from (`keep_spare=True` of the full writer):
- a full write that swaps an output directory in keeps the old tree as its spare
  (`keep_old`) instead of removing it, which also saves the removal;
- an output directory with at least `SPARE_MIN` files and no spare gets one by hard-linking
  the live tree (`link_missing`). Linking changes the ctime of every live file, so the
  writer saves the hash manifest only afterwards, with the identities re-read (and `settle`
  waits until the filesystem clock has passed them, so the manifest keeps every entry).

Any failure (another filesystem: EXDEV, no permission, no space) means no spare, never an
error: spares are only a speed-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .. import fsops, tree_ops
from ..journal import STATE_DIR, TEMP_SUFFIX, state_dir
from ..manifest import Entry

SPARE_DIR = f"{STATE_DIR}/spare"
SPARE_MIN = 1024  # output directories with fewer files get no spare (MTLSC_SPARE_MIN)
SETTLE_LIMIT = 0.05  # seconds `settle` waits at most for the filesystem clock
_TRASH = ".trash"


def spare_min() -> int:
    value = os.environ.get("MTLSC_SPARE_MIN", "")
    return int(value) if value.isdigit() else SPARE_MIN


def path_of(root: Path, unit: str) -> Path:
    """Where the spare of the output directory `unit` (root-relative) lives."""
    name = hashlib.sha256(unit.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return root / SPARE_DIR / name


def exists(root: Path, unit: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path_of(root, unit)).st_mode)
    except OSError:
        return False


def usable(root: Path, unit: str, samples: int = 16) -> bool:
    """`unit` has a spare that shares files with its live tree: one of the first `samples`
    live files is the same inode in the spare. A spare left from a tree removed since (`rm
    -rf overlays`, a new checkout) shares none, and would need more repairs than a delta
    write allows; a spare that is merely out of date is repaired by the next delta write."""
    if not exists(root, unit):
        return False
    live, home = os.fspath(root / unit), os.fspath(path_of(root, unit))
    seen = 0
    try:
        for rel, st in walk(live):
            if stat.S_ISDIR(st.st_mode):
                continue
            with contextlib.suppress(OSError):
                if os.lstat(f"{home}/{rel}").st_ino == st.st_ino:
                    return True
            seen += 1
            if seen >= samples:
                return False
    except OSError:
        return False
    return seen == 0


def _home(root: Path) -> Path:
    state_dir(root)
    home = root / SPARE_DIR
    home.mkdir(exist_ok=True)
    return home


def discard(root: Path, unit: str) -> None:
    """Remove the spare of `unit`, if any (errors ignored: a stale spare is never trusted)."""
    with contextlib.suppress(OSError):
        _remove_aside(path_of(root, unit))


def _remove_aside(spare: Path) -> None:
    """Rename the tree at `spare` to a trash name first (so it is gone at once), then remove it."""
    if not os.path.lexists(spare):
        return
    trash = spare.with_name(spare.name + _TRASH)
    tree_ops.remove_trees([os.fspath(trash)])
    os.rename(spare, trash)
    tree_ops.remove_trees([os.fspath(trash)])


def keep_old(root: Path, unit: str, old_tree: Path) -> bool:
    """Make `old_tree` (a swapped-out output directory) the spare of `unit`; False when it
    cannot be (the caller removes the old tree as usual)."""
    try:
        spare = path_of(root, unit)
        home = _home(root)
        _remove_aside(spare)
        os.rename(old_tree, spare)
        fsops.fsync_dir(home)
        return True
    except OSError:
        return False


def link_missing(root: Path, units: Iterable[tuple[str, int]]) -> dict[str, list[str]]:
    """Give each output directory of `units` (name, number of files) that has no usable spare
    (`usable`) and at least `spare_min()` files one, by hard-linking its live tree; returns
    the units that got one (their live files' ctimes changed), each with its directories.
    Made durable with one `syncfs`."""
    made: dict[str, list[str]] = {}
    least = spare_min()
    for unit, count in units:
        if count < least or usable(root, unit):
            continue
        discard(root, unit)  # a stale one (made against another tree) would cost a full write
        live = root / unit
        spare = path_of(root, unit)
        building = spare.with_name(spare.name + TEMP_SUFFIX)
        try:
            _home(root)
            tree_ops.remove_trees([os.fspath(building)])
            made[unit] = _link_tree(os.fspath(live), os.fspath(building))
        except OSError:
            with contextlib.suppress(OSError):
                tree_ops.remove_trees([os.fspath(building)])
    if not made:
        return {}
    done: dict[str, list[str]] = {}
    try:
        fsops.sync_filesystem(root / SPARE_DIR)
    except OSError:
        made = {}
    for unit, dirs in made.items():
        spare = path_of(root, unit)
        building = spare.with_name(spare.name + TEMP_SUFFIX)
        try:
            os.rename(building, spare)
            done[unit] = dirs
        except OSError:
            with contextlib.suppress(OSError):
                tree_ops.remove_trees([os.fspath(building)])
    return done


def _link_tree(source: str, target: str) -> list[str]:
    """A copy of the directory tree `source` at `target`: directories with their modes, every
    other entry hard-linked; returns the directories ("" the top)."""
    os.mkdir(target, 0o700)
    names: list[str] = []
    for rel, st in walk(source):
        if stat.S_ISDIR(st.st_mode):
            os.mkdir(f"{target}/{rel}", 0o700)
            names.append(rel)
        else:
            os.link(f"{source}/{rel}", f"{target}/{rel}", follow_symlinks=False)
    for rel in names:
        os.chmod(f"{target}/{rel}", stat.S_IMODE(os.lstat(f"{source}/{rel}").st_mode))
    os.chmod(target, stat.S_IMODE(os.lstat(source).st_mode))
    return ["", *names]


def walk(base: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below `base` (relative name, `lstat`), parents before their contents."""
    todo = [""]
    while todo:
        rel_dir = todo.pop()
        with os.scandir(f"{base}/{rel_dir}" if rel_dir else base) as it:
            entries = list(it)
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            yield rel, st
            if stat.S_ISDIR(st.st_mode):
                todo.append(rel)


def clock(root: Path) -> int:
    """The filesystem's time now (ns): the ctime of a file created in mtlsc's state dir."""
    name = state_dir(root) / f".clock-{os.getpid()}{TEMP_SUFFIX}"
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        return os.fstat(fd).st_ctime_ns
    finally:
        os.close(fd)
        os.unlink(name)


def settle(root: Path, newest: int) -> bool:
    """Wait (at most `SETTLE_LIMIT`) until the filesystem clock is past `newest` (a ctime in
    ns), so that a hash manifest saved now keeps entries changed up to then (manifest.py's
    racy rule); False when it did not move in time."""
    deadline = time.monotonic() + SETTLE_LIMIT
    while True:
        try:
            if clock(root) > newest:
                return True
        except OSError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)


def restat(root: Path, unit: str, entries: Mapping[str, Entry]) -> dict[str, Entry]:
    """`entries` (a hash manifest of `unit`) with each file's identity as it is now, for files
    that are still the same inode with the same size and mtime (hard-linking a file into a
    spare changes only its ctime); waits until the filesystem clock has passed them."""
    found = tree_ops.identities(os.fspath(root / unit), entries)
    out = {rel: Entry(key, entries[rel].digest, entries[rel].owned)
           for rel, key in found.items() if key[:4] == entries[rel].key[:4]}
    settle(root, max((e.key[4] for e in out.values()), default=0))
    return out
