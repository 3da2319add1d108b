"""A delta write: a few changed files per output directory, written in time proportional to
the change, with the full writer's guarantee (docs/output.md, "Crash safety").

Each output directory in the change set must have a spare tree (`trees`). Under the write
lock and with a journal entry naming the spares, for every output directory:

1. plan (`spare_plan.plan`): what the new tree is (the live tree as the hash manifest
   describes it, with the changes applied) and what the spare lacks: every spare file that
   is not the *same inode* as the live file it should equal is replaced, every file to
   write is written, foreign entries are removed, directories are created, removed or
   given the live modes;
2. bring the spare there: new files written to a temporary name and renamed over, kept files
   hard-linked from the live tree, then made durable (fsync of the written files and of
   every directory changed);
3. swap every spare with its live directory (`renameat2(RENAME_EXCHANGE)`; a failed swap
   swaps the ones done back, so a filesystem error leaves everything as it was);
4. the old live tree is now the spare; save the new hash manifest once the filesystem clock
   has passed the few files just written or linked, so it vouches for every file.

`write_changes` returns None, having changed nothing visible, whenever the fast way is not
possible (no spare, another filesystem, too many repairs, an interrupted write pending,
RENAME_EXCHANGE unsupported, any filesystem error before the first swap): the caller then
compiles and writes in full.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import fsops, journal, manifest
from ..journal import TEMP_SUFFIX, Journal
from ..manifest import Entry
from ..write import PartialWriteError
from . import plan as spare_plan
from . import state as spare_state
from . import trees as spare
from .plan import SparePlan

Changes = Mapping[str, Mapping[str, bytes | None]]


@dataclass(frozen=True, slots=True)
class UnitWritten:
    """One output directory after `write_changes`: its new hash manifest (every file, with
    its identity now) and the numbers a full write of the same change reports."""

    entries: Mapping[str, Entry]  # a `manifest.Overlay` after a write
    new: int
    changed: int
    removed: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class ChangesWritten:
    """What `write_changes` did, per output directory."""

    units: dict[str, UnitWritten]

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(new, changed, removed, unchanged) over every output directory, as
        `cli.common.report_written` prints them for a full write."""
        return (sum(u.new for u in self.units.values()),
                sum(u.changed for u in self.units.values()),
                sum(u.removed for u in self.units.values()),
                sum(u.unchanged for u in self.units.values()))


class _Fallback(Exception):
    """The fast way is not possible: return None."""


def write_changes(root: Path, changes: Changes, *, durable: bool = True,
                  live: Mapping[str, tuple[Mapping[str, Entry], str | None]] | None = None,
                  ) -> ChangesWritten | None:
    """Write `changes` (output directory -> {path in it: new bytes, or None to delete}) into
    the live output directories through their spares; None when it cannot be done that way
    (nothing visible changed; write in full). `live`: the hash manifests of the output
    directories with their digests (`manifest.load_lazy`), when the caller has them already.
    Raises OSError when a swap fails (the swaps made are undone: nothing was changed) and
    PartialWriteError when undoing failed too."""
    units = sorted(changes)
    if not units or not _independent(units):
        return None
    with contextlib.ExitStack() as lock:
        try:
            lock.enter_context(journal.exclusive(root))
        except OSError:
            return None  # a read-only checkout: the full writer reports it
        return _locked(root, changes, units, durable, live)


def _locked(root: Path, changes: Changes, units: list[str], durable: bool,
            live: Mapping[str, tuple[Mapping[str, Entry], str | None]] | None,
            ) -> ChangesWritten | None:
    """`write_changes`, under the write lock."""
    if journal.pending(root) is not None:
        return None  # an interrupted write: the full writer recovers first
    plans: list[SparePlan] = []
    try:
        for unit in units:
            found = spare_plan.plan(root, unit, changes[unit],
                                    live.get(unit) if live is not None else None)
            if found is None:
                return None
            plans.append(found)
    except OSError:
        return None
    moving = [p for p in plans if p.changes]
    if moving:
        try:
            journal.begin(root, Journal((), (), tuple(p.unit for p in moving)))
        except OSError:
            return None
        try:
            for p in moving:  # from now on the spare is not what its record says
                spare_state.drop(root, p.unit)
            _update_spares(root, moving, durable)
        except (OSError, _Fallback):
            _give_up(root, moving)
            return None
        try:
            _swap_all(root, moving, durable)
        except _Fallback:
            _give_up(root, moving)
            return None
        except PartialWriteError:
            raise  # the journal stays: `check` reports it, the next compile recovers
        except BaseException:
            _give_up(root, moving)
            raise
    out = {p.unit: UnitWritten(p.entries if p.changes else p.known, p.new, p.changed,
                               p.removed, p.unchanged) for p in plans}
    for p, digest in zip(moving, _save_manifests(root, moving), strict=True):
        if digest is not None:  # the swapped-out tree is the spare: record it
            spare_state.record(root, p.unit, digest, p.live_dirs, {*p.write, *p.gone},
                               p.wanted)
    if moving:  # written: a journal left behind only makes `check` ask for a compile
        with contextlib.suppress(OSError):
            journal.finish(root)
    return ChangesWritten(out)


def _give_up(root: Path, plans: list[SparePlan]) -> None:
    """Nothing visible changed: re-record the live identities the attempt disturbed and drop
    the journal (if that fails, the next writing command's recovery drops it)."""
    _refresh_live(root, plans)
    with contextlib.suppress(OSError):
        journal.finish(root)


def _independent(units: list[str]) -> bool:
    """No output directory is the root or inside another one."""
    if any(not u or u.startswith("/") or u.endswith("/") for u in units):
        return False
    return not any(b.startswith(a + "/") for a in units for b in units if a != b)


def _update_spares(root: Path, plans: list[SparePlan], durable: bool) -> None:
    for p in plans:
        _bring_up(root, p, durable)
    for p in plans:
        base = os.fspath(spare.path_of(root, p.unit))
        for rel in p.link:
            st = os.lstat(f"{base}/{rel}")
            old = p.known[rel]
            key = manifest.stat_key(st)
            if key[:4] != old.key[:4]:
                raise _Fallback(rel)  # the live file changed meanwhile: not the vouched one
            p.entries[rel] = Entry(key, old.digest, old.owned)
        for rel, data in p.write.items():
            st = os.lstat(f"{base}/{rel}")
            p.entries[rel] = Entry(manifest.stat_key(st), manifest.digest(data), True)


def _bring_up(root: Path, p: SparePlan, durable: bool) -> None:
    """Make the spare of `p.unit` hold exactly the new tree (see the module docstring)."""
    base = os.fspath(spare.path_of(root, p.unit))
    live = os.fspath(root / p.unit)
    touched: set[str] = set()
    for rel in p.unlink:
        os.unlink(f"{base}/{rel}")
        touched.add(_parent(rel))
    for rel in sorted(p.prune, reverse=True):
        os.rmdir(f"{base}/{rel}")
        touched.add(_parent(rel))
    for rel, mode in sorted(p.mkdirs.items()):
        os.mkdir(f"{base}/{rel}", mode)
        os.chmod(f"{base}/{rel}", mode)
        touched.update((_parent(rel), rel))
    for rel, mode in p.chmods.items():
        os.chmod(f"{base}/{rel}" if rel else base, mode)
        touched.add(rel)
    for rel in p.link:
        target = f"{base}/{rel}"
        if rel in p.present:
            os.link(f"{live}/{rel}", target + TEMP_SUFFIX, follow_symlinks=False)
            os.replace(target + TEMP_SUFFIX, target)
        else:
            os.link(f"{live}/{rel}", target, follow_symlinks=False)
        touched.add(_parent(rel))
    for rel, data in p.write.items():
        target = f"{base}/{rel}"
        if rel in p.present:
            fsops.write_file(target + TEMP_SUFFIX, data, durable=durable)
            os.replace(target + TEMP_SUFFIX, target)
        else:
            fsops.write_file(target, data, durable=durable)
        touched.add(_parent(rel))
    if durable:
        for rel in sorted(touched - set(p.prune), key=lambda d: (-d.count("/"), d)):
            fsops.fsync_dir(Path(f"{base}/{rel}" if rel else base))


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


def _swap_all(root: Path, plans: list[SparePlan], durable: bool) -> None:
    """Exchange every spare with its live directory; undo the exchanges made when one fails."""
    done: list[SparePlan] = []
    try:
        for p in plans:
            try:
                fsops.exchange(spare.path_of(root, p.unit), root / p.unit)
            except fsops.ExchangeUnsupported as exc:
                raise _Fallback(str(exc)) from None  # the full writer has a fallback
            done.append(p)
        if durable:
            for parent in sorted({(root / p.unit).parent for p in plans}):
                fsops.fsync_dir(parent)
            fsops.fsync_dir(root / spare.SPARE_DIR)
    except BaseException as exc:
        try:
            for p in reversed(done):
                fsops.exchange(spare.path_of(root, p.unit), root / p.unit)
        except OSError as again:
            swapped = ", ".join(p.unit for p in done)
            raise PartialWriteError(again.errno, f"{exc}; swapping back failed too "
                                    f"({again.strerror or again}): these directories hold the "
                                    f"new overlays, the others the old ones: {swapped}",
                                    again.filename) from exc
        raise


def _save_manifests(root: Path, plans: list[SparePlan]) -> list[str | None]:
    """The new live manifests, once the filesystem clock is past every file just changed;
    returns each one's SHA-256 (None: not saved)."""
    newest = max((p.entries[rel].key[4] for p in plans for rel in (*p.write, *p.link)),
                 default=0)
    if newest:
        spare.settle(root, newest)
    digests: list[str | None] = []
    for p in plans:
        try:
            changed = {rel: p.entries[rel] for rel in (*p.write, *p.link)}
            found = manifest.save_changes(root, p.unit, changed, p.gone, len(p.entries))
            digests.append(found if found is not None else
                           manifest.save(root, p.unit, p.entries))
        except OSError:
            digests.append(None)
            with contextlib.suppress(OSError):
                manifest.forget(root, p.unit)  # a missing manifest only costs a re-read
    return digests


def _refresh_live(root: Path, plans: list[SparePlan]) -> None:
    """After a failed attempt: the live files whose link count changed have a new ctime;
    re-record their identities so the full write that follows need not read them."""
    for p in plans:
        if not p.disturbed:
            continue
        entries = dict(p.known)
        base = os.fspath(root / p.unit)
        for rel in p.disturbed:
            old = entries.get(rel)
            try:
                key = manifest.stat_key(os.lstat(f"{base}/{rel}"))
            except OSError:
                key = None
            if old is not None and key is not None and key[:4] == old.key[:4]:
                entries[rel] = Entry(key, old.digest, old.owned)
            else:
                entries.pop(rel, None)
        with contextlib.suppress(OSError):
            spare.settle(root, max((e.key[4] for e in entries.values()), default=0))
            manifest.save(root, p.unit, entries)
