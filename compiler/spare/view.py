"""What is in a spare tree and in the live directories, read as cheaply as it can be trusted
(for `plan`).

`view` gives the spare's directories (with modes) and, for the files it had to look at,
(inode number, regular file); `covers` says which files those are. With a valid record
(`state`) only the spare's directories are `lstat`ed: a directory whose identity is
unchanged holds what the record says (every live file not in `differ`, as the very inode the
live manifest names); directories that changed are listed. Without one, the whole spare is
listed (directory reads only, `DirEntry.inode()`: no `lstat` per file).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import state as spare_state
from . import trees as spare
from .state import SpareState


@dataclass(slots=True)
class SpareView:
    """What was read of a spare tree: its directories, and the files it had to look at."""

    files: dict[str, tuple[int, bool]] = field(default_factory=dict)  # looked-at files
    dirs: dict[str, int] = field(default_factory=dict)  # every directory -> mode
    listed: set[str] = field(default_factory=set)  # directories whose files are all in `files`
    complete: bool = False  # everything was listed

    def covers(self, rel: str) -> bool:
        return self.complete or rel.rpartition("/")[0] in self.listed


def full_listing(base: str) -> SpareView:
    """Every entry below `base`: directory reads alone, but one `lstat` per directory."""
    view = SpareView(complete=True)
    _list_into(view, base, "", recursive=True)
    return view


def _list_into(view: SpareView, base: str, top: str, *, recursive: bool,
               known_dirs: Iterable[str] = ()) -> None:
    skip = set(known_dirs)
    todo = [top]
    while todo:
        rel_dir = todo.pop()
        view.listed.add(rel_dir)
        prefix = rel_dir + "/" if rel_dir else ""
        with os.scandir(f"{base}/{rel_dir}" if rel_dir else base) as it:
            for entry in it:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    view.dirs[rel] = stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode)
                    if recursive or rel not in skip:
                        todo.append(rel)  # a directory the record does not know: all of it
                else:
                    view.files[rel] = (entry.inode(), entry.is_file(follow_symlinks=False))


def from_record(base: str, record: SpareState) -> SpareView | None:
    """The spare as its record describes it, every directory whose identity changed listed
    (None: the top itself changed kind)."""
    view = SpareView()
    dirty: list[str] = []
    for rel, known in record.dirs.items():
        try:
            st = os.lstat(f"{base}/{rel}" if rel else base)
        except FileNotFoundError:
            continue  # its parent changed too, and is listed
        if not stat.S_ISDIR(st.st_mode):
            if not rel:
                return None
            continue
        view.dirs[rel] = stat.S_IMODE(st.st_mode)
        if known is None or spare_state.identity(st)[:3] != known[:3]:
            dirty.append(rel)
    if "" not in view.dirs:
        return None
    for rel in dirty:
        if rel in view.listed or rel not in view.dirs:
            continue
        _list_into(view, base, rel, recursive=False, known_dirs=record.dirs)
    return view


def look_at(view: SpareView, base: str, rels: Iterable[str]) -> None:
    """Add the files `rels` (in directories the view did not list) by `lstat`."""
    for rel in rels:
        if view.covers(rel) or rel in view.files:
            continue
        try:
            st = os.lstat(f"{base}/{rel}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        if not stat.S_ISDIR(st.st_mode):
            view.files[rel] = (st.st_ino, stat.S_ISREG(st.st_mode))


def live_dirs(live: str, dirs: Iterable[str]) -> dict[str, int] | None:
    """The live tree's directories ("" itself) and their modes: `dirs` (its files' parents),
    and directories holding no file, found where a directory's link count shows more
    subdirectories than `dirs` has. None: not a directory, or a file below one of those."""
    parents = set(dirs)
    parents.discard("")
    kids: dict[str, int] = {}
    for d in parents:
        up = d.rpartition("/")[0]
        kids[up] = kids.get(up, 0) + 1
    modes: dict[str, int] = {}
    look: list[str] = []
    for d in ["", *sorted(parents)]:
        try:
            st = os.lstat(f"{live}/{d}" if d else live)
        except (FileNotFoundError, NotADirectoryError):
            return None
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
