"""The full writer's side of spare trees (`keep_spare=True` of `stage.commit`; `trees`):
keep each swapped-out tree as its output directory's spare, link spares for large output
directories that have none, and save their hash manifests so that a delta write can use them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from .. import manifest
from ..manifest import Entry
from ..write import WritePlan
from . import state as spare_state
from . import trees as spare


def keep_old_trees(root: Path, swapped: Iterable[tuple[str, str, str]], keep: bool
                   ) -> set[str]:
    """For each swapped output directory (its path, how it was swapped, where its old tree
    is now): a dropped directory loses its spare; with `keep`, the old tree of a replaced one
    becomes its spare. Returns the old trees kept (not to be removed)."""
    kept: set[str] = set()
    for unit, how, old in swapped:
        if how == "drop" or (keep and how in ("exchange", "fallback")):
            spare_state.forget(root, unit)  # the spare changes or goes
        if how == "drop":
            spare.discard(root, unit)
        elif keep and how in ("exchange", "fallback") and spare.keep_old(root, unit, root / old):
            kept.add(old)
    return kept


def link_spares(p: WritePlan, written: Collection[str]) -> dict[str, list[str]]:
    """Spares for the output directories that have none (`spare.link_missing`): those
    written (`written`: renamed into place new) and those left as they were (whose manifests
    are re-saved here, linking changed their files' ctimes); returns the directories that got
    one, with their subdirectories (for `save_manifest`)."""
    sizes = [(u.dir, len(u.keep) + len(u.create) + len(u.update)) for u in p.units
             if u.dir in written or (u.exists and not u.changed)]
    linked = spare.link_missing(p.root, sizes)
    for unit in p.units:
        if unit.dir in linked and unit.dir not in written:
            with contextlib.suppress(OSError):
                save_manifest(p.root, unit.dir, unit.known, linked[unit.dir])
    return linked


def save_manifest(root: Path, unit: str, entries: Mapping[str, Entry],
                  linked: list[str] | None,
                  kept: tuple[Iterable[str], Iterable[str], Iterable[str]] | None = None
                  ) -> None:
    """Save the manifest of an output directory written with `keep_spare`: with every entry
    (waiting for the filesystem clock to pass them), and the spare's record: when its spare
    was just linked (`linked`: its directories), with the identities read again; when the old
    tree was kept as the spare (`kept`: the old tree's directories, the files written, deleted
    or copied rather than linked, and the new tree's directories), where the two differ."""
    if linked is not None:
        digest = manifest.save(root, unit, spare.restat(root, unit, entries))
        spare_state.record(root, unit, digest, linked, (), linked)
        return
    spare.settle(root, max((e.key[4] for e in entries.values()), default=0))
    digest = manifest.save(root, unit, entries)
    if kept is not None:
        spare_state.record(root, unit, digest, *kept)
