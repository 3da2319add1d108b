"""What an output directory's spare tree lacks to become its new tree (read-only; used by
`write`).

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import manifest
from ..journal import TEMP_SUFFIX
from ..manifest import Entry
from ..write import all_parents, parents_of
from . import state as spare_state
from . import trees as spare
from . import view as spare_view

REPAIR_SHARE = 0.10  # at most this share of a directory's files is repaired, else: write in full
REPAIR_MIN = 64  # ... or this many, whichever is larger
SAMPLES = 4  # kept files per directory whose `lstat` must equal the manifest's identity


@dataclass(slots=True)
class SparePlan:
    """What one output directory's spare tree lacks to become the new tree, and the counts a
    full write of the same change reports."""

    unit: str
    known: Mapping[str, Entry]  # the live tree's hash manifest
    write: dict[str, bytes] = field(default_factory=dict)  # new and changed files
    link: list[str] = field(default_factory=list)  # kept files the spare lacks
    unlink: list[str] = field(default_factory=list)  # spare entries not in the new tree
    prune: list[str] = field(default_factory=list)  # spare directories not in the new tree
    mkdirs: dict[str, int] = field(default_factory=dict)
    chmods: dict[str, int] = field(default_factory=dict)  # "" is the directory itself
    present: set[str] = field(default_factory=set)  # names the spare has as a non-directory
    disturbed: set[str] = field(default_factory=set)  # live files whose link count changes
    # the new tree's manifest: `known` with `entries.changed` set and `entries.gone` dropped
    entries: manifest.Overlay = field(default_factory=lambda: manifest.Overlay({}))
    gone: set[str] = field(default_factory=set)
    live_dirs: dict[str, int] = field(default_factory=dict)  # the live directories' modes
    wanted: dict[str, int] = field(default_factory=dict)  # the new tree's directories
    new: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    @property
    def changes(self) -> bool:
        return bool(self.new or self.changed or self.removed)

    def has(self, rel: str) -> bool:
        """`rel` is a file of the new tree."""
        return rel in self.write or (rel in self.known and rel not in self.gone)

    @property
    def repairs(self) -> int:
        return (len(self.write) + len(self.link) + len(self.unlink) + len(self.prune)
                + len(self.mkdirs) + len(self.chmods))


def plan(root: Path, unit: str, change: Mapping[str, bytes | None],
         loaded: tuple[Mapping[str, Entry], str | None] | None = None) -> SparePlan | None:
    """The plan for `unit`, or None when its spare cannot be used (missing, on another
    filesystem, too far from the new tree) or the change is one the full writer must judge
    (a file mtlsc does not own, a file where a directory is)."""
    live = root / unit
    home = spare.path_of(root, unit)
    st_live, st_spare = os.lstat(live), os.lstat(home)
    if not (stat.S_ISDIR(st_live.st_mode) and stat.S_ISDIR(st_spare.st_mode)) or \
            st_live.st_dev != st_spare.st_dev:
        return None
    # the hash manifest and its `file_digest`, as the caller loaded them or read now (entries
    # are made for the few files looked at)
    known, digest = manifest.load_lazy(root, unit) if loaded is None else loaded
    if not known:
        return None
    p = SparePlan(unit, known)
    if not _apply_change(p, change):
        return None
    if not p.changes:
        return p
    record = spare_state.load(root, unit)
    if record is not None and (digest is None or record.manifest != digest):
        record = None  # made against another live manifest
    modes = spare_view.live_dirs(os.fspath(live), record.live_dirs if record is not None
                                 else all_parents(known))
    if modes is None or any(rel in modes or any(p.has(a) for a in parents_of(rel))
                            for rel in p.write):
        return None
    p.live_dirs = modes
    view = spare_view.from_record(os.fspath(home), record) if record is not None else None
    if view is None:
        view = spare_view.full_listing(os.fspath(home))
    look = [*change, *(record.differ if record is not None else ())]
    if record is not None and not view.complete and \
            (view.listed or any(d not in view.dirs for d in record.dirs)):
        # directories listed or gone: every live file in them must be looked at
        look += [rel for rel in known if view.covers(rel)
                 or rel.rpartition("/")[0] not in view.dirs]
    spare_view.look_at(view, os.fspath(home), look)
    p.wanted = _wanted_dirs(p, os.fspath(live), modes, record is not None)
    _diff(p, view, look, p.wanted)
    if stat.S_IMODE(st_spare.st_mode) != modes[""]:
        p.chmods[""] = modes[""]
    if p.repairs > max(REPAIR_MIN, int(len(known) * REPAIR_SHARE)):
        return None
    if any(rel not in known and os.path.lexists(live / rel) for rel in p.unlink):
        return None  # a live file the manifest does not name: not the tree it describes
    return p if _samples_agree(os.fspath(home), p, set(look)) else None


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
    owned = manifest.owned_count(p.known)  # files mtlsc owns
    p.unchanged = owned - len(p.gone) - p.changed
    return True


def valid_name(rel: str) -> bool:
    return bool(rel) and "\0" not in rel and not rel.endswith(TEMP_SUFFIX) and \
        all(part not in ("", ".", "..") for part in rel.split("/"))


def _wanted_dirs(p: SparePlan, live: str, modes: dict[str, int], quick: bool
                 ) -> dict[str, int]:
    """The new tree's directories and modes: the live ones, those the new files need (new
    ones get 0o777 less the umask, as the full writer makes them), less those the deleted
    files leave empty (a directory that was empty stays)."""
    umask = os.umask(0o022)
    os.umask(umask)
    default = 0o777 & ~umask
    if not quick:  # from every path, as the full writer does
        files = [rel for rel in p.known if rel not in p.gone] + list(p.write)
        empty = modes.keys() - all_parents(p.known) - {""}
        return {d: modes.get(d, default) for d in all_parents(files) | empty | all_parents(empty)}
    wanted = {d: mode for d, mode in modes.items() if d}
    for d in all_parents(p.write):
        wanted.setdefault(d, default)
    gone: set[str] = set()
    for d in sorted(all_parents(p.gone), key=lambda d: -d.count("/")):
        if any(w.startswith(d + "/") for w in p.write):
            continue
        with os.scandir(f"{live}/{d}") as it:
            left = [e.name for e in it if f"{d}/{e.name}" not in p.gone
                    and f"{d}/{e.name}" not in gone]
        if not left:
            gone.add(d)
    return {d: mode for d, mode in wanted.items() if d not in gone}


def _diff(p: SparePlan, view: spare_view.SpareView, look: list[str],
          wanted: dict[str, int]) -> None:
    """Which files to link, write and remove, and which directories to make, remove or chmod,
    from what `view` shows of the spare (`look`: the files looked at; every other file of the
    live manifest is the live inode in the spare)."""
    p.unlink = sorted(rel for rel in view.files if not p.has(rel))
    p.prune = sorted(d for d in view.dirs if d and d not in wanted)
    p.mkdirs = {d: mode for d, mode in sorted(wanted.items()) if d not in view.dirs}
    p.chmods = {d: mode for d, mode in sorted(wanted.items())
                if d in view.dirs and view.dirs[d] != mode}
    candidates = set(look) | view.files.keys() if not view.complete else \
        p.known.keys() | p.write.keys()
    for rel in sorted(candidates):
        if not p.has(rel):
            continue
        have = view.files.get(rel)
        old = p.known.get(rel)
        shared = have is not None and old is not None and have[1] and have[0] == old.key[1]
        if have is not None:
            p.present.add(rel)
        if rel in p.write:
            if shared:
                p.disturbed.add(rel)  # replacing the spare's link changes the live ctime
        elif not shared:
            p.link.append(rel)
            p.disturbed.add(rel)
    for rel in p.unlink:
        old = p.known.get(rel)
        if old is not None and view.files[rel][0] == old.key[1]:
            p.disturbed.add(rel)
    p.entries = manifest.Overlay(p.known)
    for rel in (*p.gone, *p.write, *p.link):
        p.entries.pop(rel, None)


def _samples_agree(home: str, p: SparePlan, looked: set[str]) -> bool:
    """A few files taken as the live inodes: the spare's `lstat` must be exactly the
    manifest's identity (the listing's and the record's inode numbers are what `lstat`
    reports, and the manifest is current)."""
    kept = [rel for rel in p.entries.sample(SAMPLES * 2) if rel not in looked][:SAMPLES]
    return all(manifest.stat_key(os.lstat(f"{home}/{rel}")) == p.known[rel].key
               for rel in kept)
