"""Writing a large compile while it compiles: each output directory is staged as soon as the
compile hands it over, and everything is swapped in at the end exactly as `stage.commit`
does (docs/output.md, "Crash safety")."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Mapping
from pathlib import Path

from . import fsops, journal, manifest, stage
from .journal import Journal, UnitPaths
from .manifest import Entry, Written
from .write import UnitPlan, WritePlan, combine, plan_unit


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
        self.staged: list[stage.Staged] = []
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
            staging = self.root / paths.stage
            for stray in (staging, self.root / paths.old):  # as in `stage.stage_unit`
                stage.remove_path(stray)
            stage.make_parents(staging.parent, self.created)
            os.mkdir(staging, 0o700)
        except OSError as exc:
            self.error = exc
            return None
        self.opened[directory] = paths
        return os.fspath(staging)

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
                self.staged.append(stage.stage_unit(self.root, unit, paths, False, self.created))
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

    def finish(self, loose: dict[str, bytes], prune: tuple[str, ...], *,
               keep_spare: bool = False) -> tuple[WritePlan, list[str]]:
        """Write everything; returns the plan (for the report) and the leftovers that could
        not be removed. With conflicts in the plan nothing is written (the caller reports
        them). `keep_spare`: as `stage.commit`."""
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
                stage.refresh_manifests(p, keep_spare=keep_spare)
                self._release()
                return p, []
            for unit in rest:
                self.staged.append(stage.stage_unit(self.root, unit,
                                                    self._journal(unit, p.loose), False,
                                                    self.created))
            journal.begin(self.root, Journal(tuple(self.journaled), p.loose))
            self.loose = p.loose
            stage.stage_loose(p, False, self.created)
            fsops.sync_filesystem(self.root)
        except BaseException:
            self.abort()
            raise
        try:
            stage.swap_all(p, self.staged, False, self.created)  # undoes itself on failure
            return p, stage.finish_swap(p, self.staged, keep_spare=keep_spare)
        finally:
            self._release()

    def abort(self) -> None:
        if self._lock is None:
            return
        try:
            stage.discard(self.root, tuple(self.journaled), self.loose, self.created)
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _flush_quietly(root: Path) -> None:
    with contextlib.suppress(OSError):
        fsops.sync_filesystem(root)


def _stage_opened(root: Path, unit: UnitPlan, paths: UnitPaths,
                  files: Mapping[str, bytes | Written]) -> stage.Staged:
    """Finish a staging directory that workers filled: write the files they did not, then
    give it the mode a new directory gets."""
    staging = root / paths.stage
    out = stage.Staged(unit, paths)
    for rel, data in sorted(files.items()):
        if isinstance(data, Written):
            key = data.key if data.key is not None else \
                manifest.stat_key(os.lstat(staging / rel))
            out.entries[rel] = Entry(key, data.digest, True)
        else:
            st = fsops.write_below(os.fspath(staging), rel, data)
            out.entries[rel] = Entry(manifest.stat_key(st), manifest.digest(data), True)
    os.chmod(staging, 0o777 & ~stage.umask())
    return out


def _bytes_only(files: Mapping[str, bytes | Written]) -> dict[str, bytes]:
    """The files of an output directory that no worker wrote: all of them (workers write
    only into directories `open` created)."""
    out = {rel: data for rel, data in files.items() if isinstance(data, bytes)}
    if len(out) != len(files):
        raise AssertionError("mtlsc bug: a worker wrote files of an output directory that "
                             "was not opened for it")
    return out
