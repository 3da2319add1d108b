"""The only stage that writes: each output directory on disk is entirely old or entirely new.

The compiler owns exactly the files that start with its generated-code header. `plan` compares
the compiled file map with the tree on disk (using the hash manifest to skip reading unchanged
files) and is read-only; `apply` carries the plan out (see `stage.py` and docs/output.md):

- every output directory is one unit: its complete new content is staged beside it — unchanged
  and foreign files hard-linked from the current directory, new and changed files written —
  and made durable, then swapped in with one atomic `renameat2(RENAME_EXCHANGE)`;
- all staging happens before the first visible change, so a filesystem error leaves the tree
  exactly as it was; a crash leaves each unit old or new, and the journal lets the next run
  remove what the crash left beside them;
- unchanged files are never rewritten and files without the header are never touched.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import manifest
from .emit import HEADER
from .journal import OLD_PREFIX, STAGE_PREFIX
from .manifest import Entry
from .write_report import describe as describe
from .write_report import unified_diff as unified_diff

_HEADER = HEADER.encode("utf-8")


class PartialWriteError(OSError):
    """A swap failed and swapping back failed too: some output directories are new, the others
    old (each one complete); the journal lets the next run clean up."""


@dataclass(slots=True)
class UnitPlan:
    """One output directory: what its new content is made of (paths relative to `dir`)."""

    dir: str
    exists: bool
    create: dict[str, bytes] = field(default_factory=dict)
    update: dict[str, bytes] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    carry: list[str] = field(default_factory=list)  # foreign entries kept as they are
    dirs: dict[str, int] = field(default_factory=dict)  # directories of the new tree → mode
    old_dirs: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    known: dict[str, Entry] = field(default_factory=dict)  # verified facts about live files
    misses: int = 0  # files that had to be read (the manifest did not vouch for them)

    @property
    def changed(self) -> bool:
        return bool(self.create or self.update or self.delete)

    @property
    def drop(self) -> bool:
        """Nothing is left: the directory is removed as a whole."""
        return self.exists and not (self.create or self.update or self.keep or self.dirs)

    @property
    def keep(self) -> list[str]:
        return sorted([*self.unchanged, *self.carry])

    def forget_data(self) -> None:
        """Once staged, only the names of new and changed files are needed (for the report):
        drop their bytes, so a streamed compile holds one cluster's output at a time."""
        self.create = dict.fromkeys(self.create, b"")
        self.update = dict.fromkeys(self.update, b"")


@dataclass(frozen=True, slots=True)
class WritePlan:
    """What a write will change, file by file and output directory by output directory
    (`plan` makes it without writing; `apply` carries it out)."""

    root: Path
    create: dict[str, bytes] = field(default_factory=dict)
    update: dict[str, bytes] = field(default_factory=dict)
    delete: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()  # paths in the way that mtlsc did not generate
    units: tuple[UnitPlan, ...] = ()
    loose: tuple[str, ...] = ()  # changed files outside every unit (mtlsc.lock)
    loose_delete: tuple[str, ...] = ()  # stale generated files outside every unit

    @property
    def changed(self) -> bool:
        return bool(self.create or self.update or self.delete)


def is_owned(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(_HEADER)) == _HEADER
    except OSError:
        return False


def _read(path: str, limit: int | None = None) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if limit is not None:
            return os.read(fd, limit)
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read()
    finally:
        os.close(fd)


def _inside(rel: str, directory: str) -> bool:
    return not directory or rel == directory or rel.startswith(directory + "/")


def _scan(base: Path, skip: Sequence[str] = ()) -> tuple[dict[str, os.stat_result],
                                                          dict[str, os.stat_result]]:
    """Files (any non-directory) and directories below `base`, by relative path."""
    files: dict[str, os.stat_result] = {}
    dirs: dict[str, os.stat_result] = {}
    todo = [""]
    top = os.fspath(base)
    while todo:
        rel_dir = todo.pop()
        with os.scandir(f"{top}/{rel_dir}" if rel_dir else top) as it:
            for entry in it:
                if entry.name.startswith((STAGE_PREFIX, OLD_PREFIX)):
                    continue  # an interrupted write's leftovers: the journal deals with them
                rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if rel not in skip:
                        dirs[rel] = st
                        todo.append(rel)
                else:
                    files[rel] = st
    return files, dirs


def _facts(base: str, rel: str, st: os.stat_result, wanted: bytes | None,
           known: Mapping[str, Entry], unit: UnitPlan) -> tuple[bool, bool]:
    """(owned, identical to `wanted`) for a regular file, via the manifest or by reading."""
    key = manifest.stat_key(st)
    entry = known.get(rel)
    if entry is not None and entry.key == key:
        unit.known[rel] = entry
        return entry.owned, wanted is not None and manifest.digest(wanted) == entry.digest
    if wanted is None:
        data = _read(f"{base}/{rel}", len(_HEADER))
        return data == _HEADER, False
    unit.misses += 1
    data = _read(f"{base}/{rel}")
    owned = data.startswith(_HEADER)
    unit.known[rel] = Entry(key, manifest.digest(data), owned)
    return owned, data == wanted


def plan_unit(root: Path, directory: str, wanted: Mapping[str, bytes],
              skip: Sequence[str] = ()) -> UnitPlan:
    """Compare one output directory with what it should hold (`wanted`, relative paths)."""
    base = root / directory
    exists = base.is_dir() and not base.is_symlink()
    unit = UnitPlan(directory, exists)
    if os.path.lexists(base) and not exists:
        unit.conflicts = [""]
        return unit
    files, dirs = _scan(base, skip) if exists else ({}, {})
    known = manifest.load(root, directory) if exists else {}
    unit.old_dirs = sorted(dirs)
    for rel, st in sorted(files.items()):
        data = wanted.get(rel)
        if not stat.S_ISREG(st.st_mode):
            (unit.conflicts if data is not None else unit.carry).append(rel)
            continue
        owned, same = _facts(os.fspath(base), rel, st, data, known, unit)
        if same:
            unit.unchanged.append(rel)
        elif data is not None and owned:
            unit.update[rel] = data
        elif data is not None:
            unit.conflicts.append(rel)
        elif owned:
            unit.delete.append(rel)
        else:
            unit.carry.append(rel)
    for rel in sorted(wanted):
        if rel in files:
            continue
        blocked = rel in dirs or any(parent in files and parent not in unit.delete
                                     for parent in parents_of(rel))
        if blocked:
            unit.conflicts.append(rel)
        else:
            unit.create[rel] = wanted[rel]
    needed = all_parents([*unit.keep, *unit.create, *unit.update])
    parents_of_entries = all_parents([*files, *dirs])
    was_empty = set(dirs) - parents_of_entries
    unit.dirs = {d: stat.S_IMODE(dirs[d].st_mode) if d in dirs else -1
                 for d in sorted(needed | was_empty)}
    return unit


def all_parents(rels: Iterable[str]) -> set[str]:
    """Every proper parent directory of the paths (each distinct directory expanded once)."""
    direct = {rel.rpartition("/")[0] for rel in rels}
    direct.discard("")
    return {p for d in direct for p in (*parents_of(d), d)}


def parents_of(rel: str) -> list[str]:
    """The proper parent directories of one path, outermost first."""
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def plan(root: Path, files: Mapping[str, bytes], units: Iterable[str],
         prune: Iterable[str] = ()) -> WritePlan:
    """What writing `files` would change. `units` are the output directories (each replaced
    as a whole); below the `prune` directories, generated files in directories that are no
    longer output directories are removed (with their directory when nothing else is left)."""
    unit_dirs = sorted(set(units))
    wanted = _by_unit(files, unit_dirs)
    plans = [plan_unit(root, d, wanted[d]) for d in unit_dirs]
    loose = {rel: data for rel, data in files.items()
             if not any(_inside(rel, d) for d in unit_dirs)}
    return combine(root, plans, loose, prune)


def combine(root: Path, plans: Sequence[UnitPlan], loose: Mapping[str, bytes],
            prune: Iterable[str] = ()) -> WritePlan:
    """The whole plan from the output directories' plans (`plan_unit`, possibly made one at a
    time as the compile streams them), the files outside every output directory (`loose`) and
    the stale output directories below `prune`."""
    unit_dirs = sorted({u.dir for u in plans})
    plans = list(plans)
    loose_delete: list[str] = []
    for extra in stale_units(root, unit_dirs, prune, loose_delete):
        plans.append(extra)
    create: dict[str, bytes] = {}
    update: dict[str, bytes] = {}
    unchanged: list[str] = []
    conflicts: list[str] = []
    for rel, data in sorted(loose.items()):
        path = root / rel
        current = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        if current is None and not os.path.lexists(path):
            create[rel] = data
        elif current == data:
            unchanged.append(rel)
        elif current is not None and current.startswith(_HEADER):
            update[rel] = data
        else:
            conflicts.append(rel)
    changed_loose = tuple(sorted({*create, *update}))

    def full(u: UnitPlan, rel: str) -> str:
        return f"{u.dir}/{rel}" if rel else u.dir

    for u in plans:
        create.update({full(u, r): d for r, d in u.create.items()})
        update.update({full(u, r): d for r, d in u.update.items()})
        unchanged += [full(u, r) for r in u.unchanged]
        conflicts += [full(u, r) for r in u.conflicts]
    return WritePlan(root, dict(sorted(create.items())), dict(sorted(update.items())),
                     tuple(sorted([*(full(u, r) for u in plans for r in u.delete),
                                   *loose_delete])),
                     tuple(sorted(unchanged)), tuple(sorted(conflicts)), tuple(plans),
                     changed_loose, tuple(sorted(loose_delete)))


def _by_unit(files: Mapping[str, bytes], unit_dirs: Sequence[str]) -> dict[str, dict[str, bytes]]:
    """The files inside each unit, relative to it (a file inside nested units goes to each)."""
    out: dict[str, dict[str, bytes]] = {d: {} for d in unit_dirs}
    if "" in out:  # the root itself: every file, as the general rule has it
        return {d: {rel[len(d) + 1:]: data for rel, data in files.items()
                    if _inside(rel, d) and rel != d} for d in unit_dirs}
    for rel, data in files.items():
        cut = rel.rfind("/")
        while cut > 0:
            found = out.get(rel[:cut])
            if found is not None:
                found[rel[cut + 1:]] = data
            cut = rel.rfind("/", 0, cut)
    return out


def stale_units(root: Path, unit_dirs: Sequence[str], prune: Iterable[str],
                 loose_delete: list[str]) -> list[UnitPlan]:
    """Units for directories below `prune` that hold generated files no unit produces."""
    out: list[UnitPlan] = []
    for top in sorted(set(prune)):
        base = root / top
        if any(_inside(top, d) for d in unit_dirs) or not base.is_dir() or base.is_symlink():
            continue
        with os.scandir(base) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = f"{top}/{entry.name}" if top else entry.name
            if entry.name.startswith((STAGE_PREFIX, OLD_PREFIX)) or rel in unit_dirs:
                continue
            if entry.is_dir(follow_symlinks=False):
                nested = [d[len(rel) + 1:] for d in unit_dirs if _inside(d, rel)]
                unit = plan_unit(root, rel, {}, skip=nested)
                if nested:  # holds other output directories: remove files one by one
                    loose_delete += [f"{rel}/{r}" for r in unit.delete]
                elif unit.delete:
                    out.append(unit)
            elif entry.is_file(follow_symlinks=False) and is_owned(Path(entry.path)):
                loose_delete.append(rel)
    return out


def apply(p: WritePlan, *, keep_spare: bool = False) -> list[str]:
    """Carry out the plan (see `stage.commit`; `keep_spare`: keep spare trees, `spare/`);
    returns leftovers it could not remove."""
    from .stage import commit  # the writing half; `check` never imports it

    if p.conflicts:
        raise FileExistsError(f"not generated by mtlsc, refusing to overwrite: "
                              f"{', '.join(p.conflicts)}")
    return commit(p, keep_spare=keep_spare)
