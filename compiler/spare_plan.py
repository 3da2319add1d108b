"""What an output directory's spare tree lacks to become its new tree (read-only; used by
`spare_write`).

The new tree is the live tree as its hash manifest describes it (the caller has checked that
the manifest vouches for every file, with nothing else in the directory) with the changes
applied. The spare is trusted for nothing: one `scandir` walk lists it, and a file is kept
only when it is the same inode as the live file it must equal (`DirEntry.inode()`, no
`lstat` per file; a few are `lstat`ed to check that the directory listing and `lstat`
agree). Everything else is repaired: replaced by a hard link to the live file, written,
removed; directories are created, removed or given the live tree's modes (new ones get
0o777 less the umask, as the full writer makes them).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import manifest, spare
from .journal import TEMP_SUFFIX
from .manifest import Entry

REPAIR_SHARE = 0.10  # at most this share of a directory's files is repaired, else: write in full
REPAIR_MIN = 64  # ... or this many, whichever is larger
SAMPLES = 4  # kept files per directory whose `lstat` must equal the manifest's identity


@dataclass(slots=True)
class SparePlan:
    unit: str
    known: dict[str, Entry]  # the live tree's hash manifest
    write: dict[str, bytes] = field(default_factory=dict)  # new and changed files
    link: list[str] = field(default_factory=list)  # kept files the spare lacks
    unlink: list[str] = field(default_factory=list)  # spare entries not in the new tree
    prune: list[str] = field(default_factory=list)  # spare directories not in the new tree
    mkdirs: dict[str, int] = field(default_factory=dict)
    chmods: dict[str, int] = field(default_factory=dict)  # "" is the directory itself
    present: set[str] = field(default_factory=set)  # names the spare has as a non-directory
    disturbed: set[str] = field(default_factory=set)  # live files whose link count changes
    entries: dict[str, Entry] = field(default_factory=dict)  # the new tree's manifest
    gone: set[str] = field(default_factory=set)
    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def changes(self) -> bool:
        return bool(self.new or self.changed or self.removed)

    @property
    def repairs(self) -> int:
        return (len(self.write) + len(self.link) + len(self.unlink) + len(self.prune)
                + len(self.mkdirs) + len(self.chmods))


def plan(root: Path, unit: str, change: Mapping[str, bytes | None],
         known: dict[str, Entry] | None = None) -> SparePlan | None:
    """The plan for `unit`, or None when its spare cannot be used (missing, on another
    filesystem, too far from the new tree) or the change is one the full writer must judge
    (a file mtlsc does not own, a file where a directory is)."""
    live = root / unit
    home = spare.path_of(root, unit)
    st_live, st_spare = os.lstat(live), os.lstat(home)
    if not (stat.S_ISDIR(st_live.st_mode) and stat.S_ISDIR(st_spare.st_mode)) or \
            st_live.st_dev != st_spare.st_dev:
        return None
    if known is None:
        known = manifest.load(root, unit)
    if not known or any(e.key[0] != st_live.st_dev for e in known.values()):
        return None
    p = SparePlan(unit, known)
    if not _apply_change(p, change):
        return None
    if not p.changes:
        return p
    files = (known.keys() - p.gone) | p.write.keys()
    live_modes = _live_dirs(os.fspath(live), known)
    if live_modes is None or any(rel in live_modes or any(a in files for a in _ancestors(rel))
                                 for rel in p.write):
        return None
    empty = live_modes.keys() - ancestors(known) - {""}  # directories with no file below
    umask = os.umask(0o022)
    os.umask(umask)
    default = 0o777 & ~umask
    wanted = {d: live_modes.get(d, default)
              for d in ancestors(files) | empty | ancestors(empty)}
    sfiles, sdirs = _listing(os.fspath(home))
    _diff(p, files, wanted, sfiles, sdirs)
    if stat.S_IMODE(st_spare.st_mode) != live_modes[""]:
        p.chmods[""] = live_modes[""]
    if p.repairs > max(REPAIR_MIN, int(len(known) * REPAIR_SHARE)):
        return None
    return p if _samples_agree(os.fspath(home), p) else None


def _apply_change(p: SparePlan, change: Mapping[str, bytes | None]) -> bool:
    for rel, data in change.items():
        if not valid_name(rel):
            return False
        old = p.known.get(rel)
        if data is None:
            if old is None:
                continue
            if not old.owned:
                return False  # mtlsc never deletes a file it does not own
            p.gone.add(rel)
            p.removed += 1
        elif old is None:
            p.write[rel] = data
            p.new += 1
        elif not old.owned:
            return False  # a file in the way: the full writer reports it
        elif old.digest != manifest.digest(data):
            p.write[rel] = data
            p.changed += 1
    p.unchanged = sum(1 for rel, e in p.known.items()
                      if e.owned and rel not in p.gone and rel not in p.write)
    return True


def valid_name(rel: str) -> bool:
    return bool(rel) and "\0" not in rel and not rel.endswith(TEMP_SUFFIX) and \
        all(part not in ("", ".", "..") for part in rel.split("/"))


def _diff(p: SparePlan, files: set[str], wanted: dict[str, int],
          sfiles: dict[str, tuple[int, bool]], sdirs: dict[str, int]) -> None:
    p.unlink = sorted(rel for rel in sfiles if rel not in files)
    p.prune = sorted(d for d in sdirs if d not in wanted)
    p.mkdirs = {d: mode for d, mode in sorted(wanted.items()) if d not in sdirs}
    p.chmods = {d: mode for d, mode in sorted(wanted.items())
                if d in sdirs and sdirs[d] != mode}
    p.present = {rel for rel in files if rel in sfiles}
    for rel in sorted(files):
        have = sfiles.get(rel)
        old = p.known.get(rel)
        shared = have is not None and old is not None and have[1] and have[0] == old.key[1]
        if shared and rel in p.write:
            p.disturbed.add(rel)  # replacing the spare's link changes the live file's ctime
        if rel in p.write:
            continue
        if shared:
            p.entries[rel] = p.known[rel]
        else:
            p.link.append(rel)
            p.disturbed.add(rel)
    for rel in p.unlink:
        old = p.known.get(rel)
        if old is not None and sfiles[rel][0] == old.key[1]:
            p.disturbed.add(rel)


def _samples_agree(home: str, p: SparePlan) -> bool:
    """A few kept files: the spare's `lstat` must be exactly the manifest's identity (the
    directory listing's inode numbers are what `lstat` reports, and the manifest is current)."""
    kept = sorted(p.entries)
    step = max(1, len(kept) // SAMPLES)
    for rel in kept[::step][:SAMPLES]:
        if manifest.stat_key(os.lstat(f"{home}/{rel}")) != p.known[rel].key:
            return False
    return True


def _listing(base: str) -> tuple[dict[str, tuple[int, bool]], dict[str, int]]:
    """Every entry below `base`: non-directories (inode number, regular file) and directories
    (mode), from directory reads alone but one `lstat` per directory."""
    files: dict[str, tuple[int, bool]] = {}
    dirs: dict[str, int] = {}
    todo = [""]
    while todo:
        rel_dir = todo.pop()
        prefix = rel_dir + "/" if rel_dir else ""
        with os.scandir(f"{base}/{rel_dir}" if rel_dir else base) as it:
            for entry in it:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    dirs[rel] = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                    todo.append(rel)
                else:
                    files[rel] = (entry.inode(), entry.is_file(follow_symlinks=False))
    return files, dirs


def _live_dirs(live: str, known: Mapping[str, Entry]) -> dict[str, int] | None:
    """The live tree's directories ("" itself) and their modes: the parents of its files, and
    directories holding no file, found where a directory's link count shows more
    subdirectories than the files explain. None: a non-directory the manifest lacks."""
    parents = ancestors(known)
    kids: dict[str, int] = {}
    for d in parents:
        kids[d.rpartition("/")[0]] = kids.get(d.rpartition("/")[0], 0) + 1
    modes: dict[str, int] = {}
    look: list[str] = []
    for d in ["", *sorted(parents)]:
        st = os.lstat(f"{live}/{d}" if d else live)
        if not stat.S_ISDIR(st.st_mode):
            return None
        modes[d] = stat.S_IMODE(st.st_mode)
        if st.st_nlink != 2 + kids.get(d, 0):
            look.append(d)
    for d in look:
        with os.scandir(f"{live}/{d}" if d else live) as it:
            extra = [e for e in it if e.is_dir(follow_symlinks=False)
                     and (f"{d}/{e.name}" if d else e.name) not in modes]
        for entry in extra:
            rel = f"{d}/{entry.name}" if d else entry.name
            modes[rel] = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
            for sub, st in spare.walk(entry.path):
                if not stat.S_ISDIR(st.st_mode):
                    return None
                modes[f"{rel}/{sub}"] = stat.S_IMODE(st.st_mode)
    return modes


def ancestors(rels: Iterable[str]) -> set[str]:
    """Every proper parent directory of the paths."""
    direct = {rel.rpartition("/")[0] for rel in rels}
    direct.discard("")
    return {a for d in direct for a in (*_ancestors(d), d)}


def _ancestors(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
