"""Carry out a write plan: stage each changed output directory beside it, then swap it in.

Order of events (docs/output.md, "Crash safety"):
1. take the write lock, recover from an interrupted write, record the journal;
2. stage: for every changed unit build `.mtlsc-stage-<name>` next to it (hard links for kept
   files, new files written), check that the old tree can be removed later (no immutable or
   append-only entries), write loose files to temporary names, make it all durable;
3. swap: replace `mtlsc.lock` first (it records what the overlays were compiled against), then
   each unit with one `renameat2(RENAME_EXCHANGE)`; if a swap fails, the units already swapped
   are swapped back, so a filesystem error leaves the whole tree as it was;
4. remove stale loose files, save the hash manifests, remove the old trees, drop the journal.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from . import fsops, journal, manifest
from .journal import BACKUP_SUFFIX, TEMP_SUFFIX, Journal, UnitPaths
from .manifest import Entry
from .write import PartialWriteError, UnitPlan, WritePlan, combine, plan_unit

DURABLE_LIMIT = 128  # above this many new entries: one syncfs(2) instead of one fsync each
_COPY_INSTEAD = {errno.EPERM, errno.EMLINK, errno.EXDEV, errno.EOPNOTSUPP}


@dataclass(slots=True)
class _Staged:
    unit: UnitPlan
    paths: UnitPaths
    entries: dict[str, Entry] = field(default_factory=dict)
    how: str = ""  # how it was swapped in: exchange, fallback, new, drop


def commit(p: WritePlan) -> list[str]:
    """Write the plan; returns leftovers that could not be removed (the next run retries)."""
    units = [u for u in p.units if u.changed]
    if not units and not p.loose and not p.loose_delete:
        _refresh_manifests(p)
        return []
    root = p.root
    with journal.exclusive(root):
        journal.recover(root)
        paths = tuple(UnitPaths(u.dir, drop=u.drop) for u in units)
        journal.begin(root, Journal(paths, p.loose))
        created: list[Path] = []
        staged: list[_Staged] = []
        try:
            durable = _entries(units, p) <= DURABLE_LIMIT
            for unit, names in zip(units, paths, strict=True):
                staged.append(_stage(root, unit, names, durable, created))
            _stage_loose(p, durable, created)
            if not durable:
                fsops.sync_filesystem(root)
        except BaseException:
            _discard(root, paths, p.loose, created)
            raise
        _swap_all(p, staged, durable, created)
        return _finish(p, staged)


class StreamingWrite:
    """`commit`, with each output directory staged as soon as the compile hands it over
    (`add`, the pipeline's sink), while the compile goes on with the next clusters; `finish`
    then stages what is left (stale directories, `mtlsc.lock`), makes it all durable and
    swaps everything in exactly as `commit` does. Same guarantees (docs/output.md): the lock
    is taken and the journal lists every directory before anything is staged beside it, and
    nothing visible changes before the swap. After staging, a directory's bytes are dropped:
    memory holds about one cluster's output. `abort` (a failed compile) removes what was
    staged; it is a no-op after `finish`. A filesystem error while staging is kept and raised
    by `finish` (the compile's other diagnostics come first)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.units: list[UnitPlan] = []
        self.staged: list[_Staged] = []
        self.journaled: list[UnitPaths] = []
        self.created: list[Path] = []
        self.names: list[str] = []  # every file handed over (root-relative)
        self.error: OSError | None = None
        self.loose: tuple[str, ...] = ()  # loose files staged (temporary names to remove)
        self._lock: contextlib.ExitStack | None = None

    @property
    def started(self) -> bool:
        return self._lock is not None

    def add(self, directory: str, files: dict[str, bytes]) -> None:
        self.names += files
        if self.error is not None:
            return
        try:
            if self._lock is None:
                lock = contextlib.ExitStack()
                lock.enter_context(journal.exclusive(self.root))
                self._lock = lock
                journal.recover(self.root)
            prefix = directory + "/"
            unit = plan_unit(self.root, directory, {
                rel[len(prefix):]: data for rel, data in files.items()
                if rel.startswith(prefix)})
            self.units.append(unit)
            if unit.changed and not unit.conflicts:
                paths = self._journal(unit)
                self.staged.append(_stage(self.root, unit, paths, False, self.created))
            unit.forget_data()
        except OSError as exc:
            self.error = exc

    def _journal(self, unit: UnitPlan, loose: tuple[str, ...] = ()) -> UnitPaths:
        paths = UnitPaths(unit.dir, drop=unit.drop)
        self.journaled.append(paths)
        journal.begin(self.root, Journal(tuple(self.journaled), loose))
        return paths

    def finish(self, loose: dict[str, bytes], prune: tuple[str, ...]) -> tuple[WritePlan,
                                                                              list[str]]:
        """Write everything; returns the plan (for the report) and the leftovers that could
        not be removed. With conflicts in the plan nothing is written (the caller reports
        them)."""
        if self.error is not None:
            self.abort()
            raise self.error
        try:
            p = combine(self.root, self.units, loose, prune)
            if p.conflicts:
                self.abort()
                return p, []
            rest = [u for u in p.units[len(self.units):] if u.changed]
            if not self.staged and not rest and not p.loose and not p.loose_delete:
                _refresh_manifests(p)
                self._release()
                return p, []
            for unit in rest:
                self.staged.append(_stage(self.root, unit, self._journal(unit, p.loose), False,
                                          self.created))
            journal.begin(self.root, Journal(tuple(self.journaled), p.loose))
            self.loose = p.loose
            _stage_loose(p, False, self.created)
            fsops.sync_filesystem(self.root)
        except BaseException:
            self.abort()
            raise
        try:
            _swap_all(p, self.staged, False, self.created)  # undoes itself on failure
            return p, _finish(p, self.staged)
        finally:
            self._release()

    def abort(self) -> None:
        if self._lock is None:
            return
        try:
            _discard(self.root, tuple(self.journaled), self.loose, self.created)
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _entries(units: list[UnitPlan], p: WritePlan) -> int:
    return sum(len(u.create) + len(u.update) + len(u.dirs) for u in units) + len(p.loose)


def _make_parents(path: Path, created: list[Path]) -> None:
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        created.append(directory)


def _stage(root: Path, unit: UnitPlan, names: UnitPaths, durable: bool,
           created: list[Path]) -> _Staged:
    live, stage = root / unit.dir, root / names.stage
    out = _Staged(unit, names)
    for stray in (stage, root / names.old):  # mtlsc's own names: a lost journal's leftovers
        _remove(stray)
    if unit.exists:
        _check_removable(live, unit)
    if unit.drop:
        return out
    _make_parents(live.parent, created)
    os.mkdir(stage, 0o700)
    for rel, mode in unit.dirs.items():
        os.mkdir(stage / rel, 0o777 if mode < 0 else mode)
        if mode >= 0:
            os.chmod(stage / rel, mode)
    for rel in unit.keep:
        _link(live / rel, stage / rel, durable)
        known = unit.known.get(rel)
        if known is not None:
            st = os.stat(stage / rel, follow_symlinks=False)
            out.entries[rel] = Entry(manifest.stat_key(st), known.digest, known.owned)
    for rel, data in sorted({**unit.create, **unit.update}.items()):
        st = fsops.write_file(stage / rel, data, durable=durable)
        out.entries[rel] = Entry(manifest.stat_key(st), manifest.digest(data), True)
    os.chmod(stage, stat.S_IMODE(live.stat().st_mode) if unit.exists else
             0o777 & ~_umask())
    if durable:
        for rel in sorted(unit.dirs, reverse=True):
            fsops.fsync_dir(stage / rel)
        fsops.fsync_dir(stage)
    return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _check_removable(live: Path, unit: UnitPlan) -> None:
    """The old tree is removed after the swap: refuse now if an attribute would forbid it."""
    doomed = [live, *(live / d for d in unit.old_dirs),
              *(live / r for r in (*unit.update, *unit.delete))]
    for path in doomed:
        if fsops.undeletable(path):
            raise OSError(errno.EPERM, "has the immutable or append-only attribute "
                          "(chattr +i/+a), so mtlsc cannot replace it", str(path))


def _link(src: Path, dst: Path, durable: bool) -> None:
    """Hard-link `src` at `dst`; copy when the filesystem refuses links."""
    try:
        os.link(src, dst, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno == errno.EPERM and fsops.undeletable(src):
            raise OSError(errno.EPERM, "has the immutable or append-only attribute "
                          "(chattr +i/+a), so mtlsc cannot replace its directory",
                          str(src)) from None
        if exc.errno not in _COPY_INSTEAD:
            raise
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        fsops.write_file(dst, src.read_bytes(), durable=durable, mode=stat.S_IMODE(st.st_mode))
    else:
        raise OSError(errno.EPERM, "cannot carry this special file into the new directory",
                      str(src))


def _stage_loose(p: WritePlan, durable: bool, created: list[Path]) -> None:
    for rel in p.loose:
        path = p.root / (rel + TEMP_SUFFIX)
        _make_parents(path.parent, created)
        data = p.create.get(rel, p.update.get(rel, b""))
        path.unlink(missing_ok=True)
        fsops.write_file(path, data, durable=durable)


def _discard(root: Path, paths: tuple[UnitPaths, ...], loose: tuple[str, ...],
             created: list[Path]) -> None:
    """Remove everything staging created; the tree is left exactly as it was."""
    for names in paths:
        shutil.rmtree(root / names.stage, ignore_errors=True)
    for rel in loose:
        (root / (rel + TEMP_SUFFIX)).unlink(missing_ok=True)
    for directory in reversed(created):
        with contextlib.suppress(OSError):
            directory.rmdir()
    journal.finish(root)


def _swap_all(p: WritePlan, staged: list[_Staged], durable: bool, created: list[Path]) -> None:
    root = p.root
    replaced: list[str] = []
    done: list[_Staged] = []
    try:
        for rel in p.loose:
            live, backup = root / rel, root / (rel + BACKUP_SUFFIX)
            if os.path.lexists(live):
                _remove(backup)
                os.link(live, backup, follow_symlinks=False)
            os.replace(root / (rel + TEMP_SUFFIX), live)
            replaced.append(rel)
            fsops.fsync_dir(live.parent)
        exchange = True
        for item in staged:
            exchange = _swap(root, item, exchange)
            done.append(item)
            fsops.fsync_dir((root / item.unit.dir).parent)
    except BaseException as exc:
        try:
            _roll_back(root, done, replaced)
        except OSError as again:
            swapped = ", ".join(s.unit.dir for s in done) or "none"
            raise PartialWriteError(again.errno, f"{exc}; swapping back failed too "
                                    f"({again.strerror or again}): these directories hold the "
                                    f"new overlays, the others the old ones: {swapped}",
                                    again.filename) from exc
        _discard(root, tuple(s.paths for s in staged), p.loose, created)
        raise


def _swap(root: Path, item: _Staged, exchange: bool) -> bool:
    """Swap one unit in; returns whether RENAME_EXCHANGE is still worth trying."""
    live, stage, old = root / item.unit.dir, root / item.paths.stage, root / item.paths.old
    if item.unit.drop:
        item.how = "drop"
        os.rename(live, old)
        return exchange
    if not item.unit.exists:
        item.how = "new"
        os.rename(stage, live)
        return exchange
    if exchange:
        try:
            fsops.exchange(stage, live)
            item.how = "exchange"
            return True
        except fsops.ExchangeUnsupported:
            pass
    os.rename(live, old)  # fallback: a reader briefly finds no directory, never a mix
    try:
        os.rename(stage, live)
    except BaseException:
        os.rename(old, live)
        raise
    item.how = "fallback"
    return False


def _roll_back(root: Path, done: list[_Staged], replaced: list[str]) -> None:
    for item in reversed(done):
        live, stage, old = root / item.unit.dir, root / item.paths.stage, root / item.paths.old
        if item.how == "exchange":
            fsops.exchange(stage, live)
        elif item.how == "fallback":
            os.rename(live, stage)
            os.rename(old, live)
        elif item.how == "new":
            os.rename(live, stage)
        elif item.how == "drop":
            os.rename(old, live)
    for rel in reversed(replaced):
        backup = root / (rel + BACKUP_SUFFIX)
        if os.path.lexists(backup):
            os.replace(backup, root / rel)
        else:
            (root / rel).unlink(missing_ok=True)


def _finish(p: WritePlan, staged: list[_Staged]) -> list[str]:
    root = p.root
    problems: list[str] = []
    for rel in p.loose_delete:
        try:
            (root / rel).unlink(missing_ok=True)
            _prune_empty_dirs((root / rel).parent, root)
        except OSError as exc:
            problems.append(f"{rel}: {exc.strerror or exc}")
    for item in staged:
        try:
            if item.how == "drop":
                manifest.forget(root, item.unit.dir)
            else:
                manifest.save(root, item.unit.dir, item.entries)
        except OSError:
            manifest.forget(root, item.unit.dir)  # a missing manifest only costs a re-read
    leftovers = [n for item in staged for n in (item.paths.stage, item.paths.old)]
    leftovers += [rel + BACKUP_SUFFIX for rel in p.loose]
    for rel in leftovers:
        try:
            _remove(root / rel)
        except OSError as exc:
            problems.append(f"{rel}: {exc.strerror or exc}")
    if not problems:
        journal.finish(root)
    return problems


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _prune_empty_dirs(directory: Path, stop: Path) -> None:
    while directory != stop and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def _refresh_manifests(p: WritePlan) -> None:
    """Nothing to write: remember what was read so the next run need not read it again."""
    for unit in p.units:
        if unit.exists and unit.misses:
            try:
                manifest.save(p.root, unit.dir, unit.known)
            except OSError:
                return  # a read-only checkout: the manifest is only an optimisation
