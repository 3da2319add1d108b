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

from . import fsops, journal, manifest, tree_ops
from .journal import BACKUP_SUFFIX, TEMP_SUFFIX, Journal, UnitPaths
from .manifest import Entry
from .spare import keep as spare_keep
from .write import PartialWriteError, UnitPlan, WritePlan

DURABLE_LIMIT = 128  # above this many new entries: one syncfs(2) instead of one fsync each


@dataclass(slots=True)
class Staged:
    """One output directory staged beside the live one: what was written there and how it was
    swapped in."""

    unit: UnitPlan
    paths: UnitPaths
    entries: dict[str, Entry] = field(default_factory=dict)
    how: str = ""  # how it was swapped in: exchange, fallback, new, drop
    copied: list[str] = field(default_factory=list)  # kept files copied, not linked


def commit(p: WritePlan, *, keep_spare: bool = False) -> list[str]:
    """Write the plan; returns leftovers that could not be removed (the next run retries).
    `keep_spare`: keep each swapped-out tree as its output directory's spare, and give large
    output directories without one a spare (`spare/trees.py`)."""
    units = [u for u in p.units if u.changed]
    if not units and not p.loose and not p.loose_delete:
        if keep_spare:  # a read-only checkout: no lock, no spare, no manifest
            with contextlib.suppress(OSError), journal.exclusive(p.root):
                refresh_manifests(p, keep_spare=True)
        else:
            refresh_manifests(p)
        return []
    root = p.root
    with journal.exclusive(root):
        journal.recover(root)
        paths = tuple(UnitPaths(u.dir, drop=u.drop) for u in units)
        journal.begin(root, Journal(paths, p.loose))
        created: list[Path] = []
        staged: list[Staged] = []
        try:
            durable = entry_count(units, p) <= DURABLE_LIMIT
            for unit, names in zip(units, paths, strict=True):
                staged.append(stage_unit(root, unit, names, durable, created))
            stage_loose(p, durable, created)
            if not durable:
                fsops.sync_filesystem(root)
        except BaseException:
            discard(root, paths, p.loose, created)
            raise
        swap_all(p, staged, durable, created)
        return finish_swap(p, staged, keep_spare=keep_spare)


def entry_count(units: list[UnitPlan], p: WritePlan) -> int:
    return sum(len(u.create) + len(u.update) + len(u.dirs) for u in units) + len(p.loose)


def make_parents(path: Path, created: list[Path]) -> None:
    missing = []
    while not os.path.lexists(path):
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir()
        created.append(directory)


def stage_unit(root: Path, unit: UnitPlan, names: UnitPaths, durable: bool,
           created: list[Path]) -> Staged:
    live, stage = root / unit.dir, root / names.stage
    out = Staged(unit, names)
    for stray in (stage, root / names.old):  # mtlsc's own names: a lost journal's leftovers
        remove_path(stray)
    if unit.exists:
        _check_removable(live, unit)
    if unit.drop:
        return out
    make_parents(live.parent, created)
    os.mkdir(stage, 0o700)
    for rel, mode in unit.dirs.items():
        os.mkdir(stage / rel, 0o777 if mode < 0 else mode)
        if mode >= 0:
            os.chmod(stage / rel, mode)
    for rel in tree_ops.link_all(os.fspath(live), os.fspath(stage), unit.keep):
        tree_ops.link_or_copy(live / rel, stage / rel, durable)
        out.copied.append(rel)  # (a link after all, perhaps: the spare's record lists it)
    for rel, data in sorted({**unit.create, **unit.update}.items()):
        st = fsops.write_file(stage / rel, data, durable=durable)
        out.entries[rel] = Entry(manifest.stat_key(st), manifest.digest(data), True)
    os.chmod(stage, stat.S_IMODE(live.stat().st_mode) if unit.exists else
             0o777 & ~umask())
    if durable:
        for rel in sorted(unit.dirs, reverse=True):
            fsops.fsync_dir(stage / rel)
        fsops.fsync_dir(stage)
    return out


def umask() -> int:
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


def stage_loose(p: WritePlan, durable: bool, created: list[Path]) -> None:
    for rel in p.loose:
        path = p.root / (rel + TEMP_SUFFIX)
        make_parents(path.parent, created)
        data = p.create.get(rel, p.update.get(rel, b""))
        path.unlink(missing_ok=True)
        fsops.write_file(path, data, durable=durable)


def discard(root: Path, paths: tuple[UnitPaths, ...], loose: tuple[str, ...],
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


def swap_all(p: WritePlan, staged: list[Staged], durable: bool, created: list[Path]) -> None:
    root = p.root
    replaced: list[str] = []
    done: list[Staged] = []
    try:
        for rel in p.loose:
            live, backup = root / rel, root / (rel + BACKUP_SUFFIX)
            if os.path.lexists(live):
                remove_path(backup)
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
        discard(root, tuple(s.paths for s in staged), p.loose, created)
        raise


def _swap(root: Path, item: Staged, exchange: bool) -> bool:
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


def _roll_back(root: Path, done: list[Staged], replaced: list[str]) -> None:
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


def finish_swap(p: WritePlan, staged: list[Staged], *, keep_spare: bool = False) -> list[str]:
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
    kept = spare_keep.keep_old_trees(root, [
        (item.unit.dir, item.how, item.paths.stage if item.how == "exchange" else
         item.paths.old) for item in staged], keep_spare)
    leftovers = [rel for rel in leftovers if rel not in kept]
    kept_units = {item.unit.dir for item in staged if item.how in ("exchange", "fallback")
                  and (item.paths.stage if item.how == "exchange" else item.paths.old) in kept}
    try:
        tree_ops.remove_trees([os.fspath(root / rel) for rel in leftovers])
    except OSError:
        for rel in leftovers:  # again one by one, to name what cannot be removed
            try:
                remove_path(root / rel)
            except OSError as exc:
                problems.append(f"{rel}: {exc.strerror or exc}")
    # Only now: removing the old tree changed the ctime of every file it shared with the new.
    written = {item.unit.dir for item in staged if item.how != "drop"}
    linked = spare_keep.link_spares(p, written) if keep_spare else {}
    for item in staged:
        try:
            if item.how == "drop":
                manifest.forget(root, item.unit.dir)
            elif keep_spare:
                unit = item.unit
                differ = [*unit.create, *unit.update, *unit.delete, *item.copied]
                spare_keep.save_manifest(root, unit.dir, _kept_entries(root, item),
                                         linked.get(unit.dir), (unit.old_dirs, differ, unit.dirs)
                                         if unit.dir in kept_units else None)
            else:
                manifest.save(root, item.unit.dir, _kept_entries(root, item))
        except OSError:
            manifest.forget(root, item.unit.dir)  # a missing manifest only costs a re-read
    for unit in p.units:  # directories left as they were: remember what had to be read
        if unit.exists and not unit.changed and unit.misses and unit.dir not in linked:
            with contextlib.suppress(OSError):
                manifest.save(root, unit.dir, unit.known)
    if not problems:
        journal.finish(root)
    return problems


def _kept_entries(root: Path, item: Staged) -> dict[str, Entry]:
    """The manifest of a swapped unit: the files written (as staged) and the kept files whose
    content was known, with their identity as it is now."""
    known = {rel: item.unit.known[rel] for rel in item.unit.keep if rel in item.unit.known}
    found = tree_ops.identities(os.fspath(root / item.unit.dir), known)
    kept = {rel: Entry(key, known[rel].digest, known[rel].owned) for rel, key in found.items()}
    return {**kept, **item.entries}


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _prune_empty_dirs(directory: Path, stop: Path) -> None:
    while directory != stop and directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
        directory = directory.parent


def refresh_manifests(p: WritePlan, *, keep_spare: bool = False) -> None:
    """Nothing to write: remember what was read so the next run need not read it again
    (with `keep_spare`, called under the write lock: give large directories a spare first)."""
    linked = spare_keep.link_spares(p, ()) if keep_spare else {}
    for unit in p.units:
        if unit.exists and unit.misses and unit.dir not in linked:
            try:
                manifest.save(p.root, unit.dir, unit.known)
            except OSError:
                return  # a read-only checkout: the manifest is only an optimisation
