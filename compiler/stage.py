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
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import fsops, journal, manifest, tree_ops
from .journal import BACKUP_SUFFIX, TEMP_SUFFIX, Journal, UnitPaths
from .manifest import Entry, Written
from .write import PartialWriteError, UnitPlan, WritePlan, combine, plan_unit

DURABLE_LIMIT = 128  # above this many new entries: one syncfs(2) instead of one fsync each


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
    by `finish` (the compile's other diagnostics come first).

    A new output directory (nothing on disk at its path) can be staged by the compile's worker
    processes (`fanout.Stager`): `open` journals and creates its staging directory before
    any of its work is queued, the workers write their files into it (`unit_files`), and
    `add` gets those files as `Written` records and writes only the rest; `fail` keeps a
    worker's filesystem error like one of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.units: list[UnitPlan] = []
        self.staged: list[_Staged] = []
        self.journaled: list[UnitPaths] = []
        self.created: list[Path] = []
        self.names: list[str] = []  # every file handed over (root-relative)
        self.error: OSError | None = None
        self.loose: tuple[str, ...] = ()  # loose files staged (temporary names to remove)
        self.opened: dict[str, UnitPaths] = {}  # staging directories filled by workers
        self._lock: contextlib.ExitStack | None = None
        self._flusher: threading.Thread | None = None

    @property
    def started(self) -> bool:
        return self._lock is not None

    def _start(self) -> None:
        if self._lock is None:
            lock = contextlib.ExitStack()
            lock.enter_context(journal.exclusive(self.root))
            self._lock = lock
            journal.recover(self.root)

    def open(self, directory: str) -> str | None:
        """The staging directory of `directory`, journaled and created, for worker processes
        to fill; None when the output directory exists (its files are compared with the
        live ones in `add`), was handed over already, or staging failed (kept, as in `add`)."""
        if self.error is not None or directory in self.opened or \
                any(u.dir == directory for u in self.units):
            return None
        try:
            self._start()
            if os.path.lexists(self.root / directory):
                return None
            paths = self._journal(UnitPlan(directory, False))
            stage = self.root / paths.stage
            for stray in (stage, self.root / paths.old):  # as in `_stage`
                _remove(stray)
            _make_parents(stage.parent, self.created)
            os.mkdir(stage, 0o700)
        except OSError as exc:
            self.error = exc
            return None
        self.opened[directory] = paths
        return os.fspath(stage)

    def fail(self, error: OSError) -> None:
        if self.error is None:
            self.error = error

    def add(self, directory: str, files: Mapping[str, bytes | Written]) -> None:
        self.names += files
        if self.error is not None:
            return
        try:
            self._start()
            prefix = directory + "/"
            mine = {rel[len(prefix):]: data for rel, data in files.items()
                    if rel.startswith(prefix)}
            paths = self.opened.pop(directory, None)
            if paths is not None:
                self._add_opened(directory, paths, mine)
                self._flush_soon()
                return
            unit = plan_unit(self.root, directory, _bytes_only(mine))
            self.units.append(unit)
            if unit.changed and not unit.conflicts:
                paths = self._journal(unit)
                self.staged.append(_stage(self.root, unit, paths, False, self.created))
                self._flush_soon()
            unit.forget_data()
        except OSError as exc:
            self.error = exc

    def _flush_soon(self) -> None:
        """Start writing back what is staged so far (one `syncfs` in a thread, while the
        compile goes on), so that the `syncfs` before the swaps finds little left to do. Only
        an optimisation: its errors are ignored (that last `syncfs` reports its own)."""
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=_flush_quietly, args=(self.root,),
                                             name="mtlsc-flush", daemon=True)
            self._flusher.start()

    def _add_opened(self, directory: str, paths: UnitPaths,
                    files: Mapping[str, bytes | Written]) -> None:
        """An output directory that workers staged: write the rest of its files."""
        if os.path.lexists(self.root / directory):
            raise FileExistsError(errno.EEXIST, "appeared while mtlsc compiled it", directory)
        unit = UnitPlan(directory, False, create=dict.fromkeys(sorted(files), b""))
        self.units.append(unit)
        self.staged.append(_stage_opened(self.root, unit, paths, files))

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
        if self.opened:
            self.abort()
            raise AssertionError(f"mtlsc bug: staged by workers but never handed over: "
                                 f"{', '.join(sorted(self.opened))}")
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
    for rel in tree_ops.link_all(os.fspath(live), os.fspath(stage), unit.keep):
        tree_ops.link_or_copy(live / rel, stage / rel, durable)
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


def _flush_quietly(root: Path) -> None:
    with contextlib.suppress(OSError):
        fsops.sync_filesystem(root)


def _stage_opened(root: Path, unit: UnitPlan, paths: UnitPaths,
                  files: Mapping[str, bytes | Written]) -> _Staged:
    """Finish a staging directory that workers filled: write the files they did not, then
    give it the mode a new directory gets."""
    stage = root / paths.stage
    out = _Staged(unit, paths)
    for rel, data in sorted(files.items()):
        if isinstance(data, Written):
            key = data.key if data.key is not None else \
                manifest.stat_key(os.lstat(stage / rel))
            out.entries[rel] = Entry(key, data.digest, True)
        else:
            st = fsops.write_below(os.fspath(stage), rel, data)
            out.entries[rel] = Entry(manifest.stat_key(st), manifest.digest(data), True)
    os.chmod(stage, 0o777 & ~_umask())
    return out


def _bytes_only(files: Mapping[str, bytes | Written]) -> dict[str, bytes]:
    """The files of an output directory that no worker wrote: all of them (workers write
    only into directories `open` created)."""
    out = {rel: data for rel, data in files.items() if isinstance(data, bytes)}
    if len(out) != len(files):
        raise AssertionError("mtlsc bug: a worker wrote files of an output directory that "
                             "was not opened for it")
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
    leftovers = [n for item in staged for n in (item.paths.stage, item.paths.old)]
    leftovers += [rel + BACKUP_SUFFIX for rel in p.loose]
    try:
        tree_ops.remove_trees([os.fspath(root / rel) for rel in leftovers])
    except OSError:
        for rel in leftovers:  # again one by one, to name what cannot be removed
            try:
                _remove(root / rel)
            except OSError as exc:
                problems.append(f"{rel}: {exc.strerror or exc}")
    # Only now: removing the old tree changed the ctime of every file it shared with the new.
    for item in staged:
        try:
            if item.how == "drop":
                manifest.forget(root, item.unit.dir)
            else:
                manifest.save(root, item.unit.dir, _kept_entries(root, item))
        except OSError:
            manifest.forget(root, item.unit.dir)  # a missing manifest only costs a re-read
    if not problems:
        journal.finish(root)
    return problems


def _kept_entries(root: Path, item: _Staged) -> dict[str, Entry]:
    """The manifest of a swapped unit: the files written (as staged) and the kept files whose
    content was known, with their identity as it is now."""
    known = {rel: item.unit.known[rel] for rel in item.unit.keep if rel in item.unit.known}
    found = tree_ops.identities(os.fspath(root / item.unit.dir), known)
    kept = {rel: Entry(key, known[rel].digest, known[rel].owned) for rel, key in found.items()}
    return {**kept, **item.entries}


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
