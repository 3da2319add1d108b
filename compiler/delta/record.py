"""Recording for delta compiles: the base a full compile leaves, and what a delta compile
leaves for the next run (a run record a no-change `check` replays, the next base, the policy
memo).

A delta compile's run record is its base's record with this run's diagnostics and output
fingerprints. Its file list is the base's full list plus a patch (`run_record.expected_files`),
so that a delta never rewrites the megabytes of a fleet's file list; the full list it points
to is kept from pruning by touching it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..cache_store import CACHE_DIR, EntryStore
from ..diagnostics import Diagnostic, Span
from ..manifest import Overlay, digest
from ..policy_files import StatKey, digests_of
from ..run_inputs import Inputs, Settings
from . import base as delta_base
from . import live_scan
from .facts import Collector

if TYPE_CHECKING:
    from ..cli.options import Context
    from ..pipeline import Result
    from ..spare.write import ChangesWritten
    from .run import Plan


def save_base(ctx: Context, inputs: Inputs, result: Result, facts: Collector) -> None:
    """After `run_record.save` recorded a full compile: its delta base and the head."""
    if inputs.texts is None or result.model is None or result.policies is None:
        return
    clusters = {c.target.name: c.target.output_dir for c in result.model.clusters}
    found = delta_base.from_collector(inputs.key, digests_of(inputs.texts), facts, clusters)
    if found is None:
        return
    store = EntryStore(ctx.root / CACHE_DIR)
    from . import kustomization

    kustomization.save(store, facts.kustomizations.values())
    delta_base.save(store, delta_base.head_key(ctx.root, ctx.policies, ctx.overlays), found)


def save_delta(ctx: Context, settings: Settings, inputs: Inputs, plan: Plan,
               record: Mapping[str, Any], facts: Mapping[str, Mapping[str, Any]],
               diagnostics: list[Diagnostic],
               changes: Mapping[str, Mapping[str, bytes | None]], written: ChangesWritten,
               identities: Mapping[str, StatKey], clock: int | None,
               scan: live_scan.Scan, same_diagnostics: bool = False,
               kustomizations: Mapping[str, tuple[str, dict[str, Any]]] | None = None,
               stages: Sequence[Span] = ()) -> None:
    """`same_diagnostics`: `diagnostics` are exactly the base record's; `kustomizations`:
    per cluster whose file list the edit changed, the new kustomization (digest, data);
    `stages`: of each diagnostic (`diagnostics.stage_spans`)."""
    from .. import policy_memo
    from ..run_record import FILES_KIND, KIND, diagnostics_text, prune, stages_text

    store = EntryStore(ctx.root / CACHE_DIR)
    key = inputs.key
    full = str(record.get("filesBase") or plan.base.record)
    patch: dict[str, dict[str, Any]] = {
        str(d): dict(files) for d, files in (record.get("filesPatch") or {}).items()}
    for unit, files in changes.items():
        into = patch.setdefault(unit, {})
        for rel, data in files.items():
            into[rel] = None if data is None else [digest(data), len(data)]
    touched: dict[str, list[str]] = {}
    gone: dict[str, list[str]] = {}
    for unit, done in written.units.items():
        entries = done.entries
        if isinstance(entries, Overlay):
            touched[unit], gone[unit] = list(entries.changed), list(entries.gone)
        else:  # nothing changed in this directory
            touched[unit], gone[unit] = [], []
    scan.ask_refingerprint(touched, gone)  # the scanning child works on it meanwhile
    store.touch(FILES_KIND, full)
    if key == full:  # back to the full record's inputs: its file list is this run's
        patch = {}
    else:
        store.put(FILES_KIND, key, {"base": full, "patch": patch})
    assert inputs.digests is not None
    relisted = dict(kustomizations or {})
    if relisted:
        from . import kustomization

        kustomization.save(store, relisted.values(),
                           [str(seen.get("kustomization")) for name, seen in
                            plan.base.clusters.items() if name not in relisted])
    nxt = plan.base.replaced(key, {name: inputs.digests[name].hex() for name in plan.changed},
                             facts, {name: found[0] for name, found in relisted.items()})
    delta_base.save(store, delta_base.head_key(ctx.root, ctx.policies, ctx.overlays), nxt)
    if clock is not None:
        cache = ctx.root / CACHE_DIR
        known = inputs.memo or policy_memo.load(cache, ctx.root, settings.policies)
        ids = {name: entry[0] for name, entry in known.items()}
        hashes = {name: entry[1] for name, entry in known.items()}
        for name in plan.changed:
            ids.pop(name, None)
            if name in identities:
                ids[name] = identities[name]
                hashes[name] = inputs.digests[name]
        policy_memo.save(cache, ctx.root, settings.policies, ids, hashes, clock)
    # Last: the run record (what a no-change `check` replays) names the new tree's
    # fingerprints, which the scanning child has computed meanwhile.
    # A hostname or mode edit usually leaves every diagnostic as it was: the base's text then
    # serves as it is (encoding 1,800 warnings again was a tenth of the write and record).
    text = record["diagnostics"] if same_diagnostics else diagnostics_text(diagnostics)
    spans = record.get("stages") if same_diagnostics else \
        stages_text(stages) if len(stages) == len(diagnostics) else None
    trees = dict(record["trees"])
    for unit, found in scan.refingerprinted().items():
        count = int(trees[unit][1]) - len(gone[unit]) + sum(
            1 for rel in touched[unit] if rel not in scan.identities(unit, [rel]))
        if found is None:
            trees.pop(unit, None)
        else:
            trees[unit] = [found, count]
    store.put(KIND, key, {**record, "diagnostics": text, "stages": spans,
                          "trees": trees, "materialsSalt": record.get("materialsSalt")
                          or plan.base.record, "filesBase": full, "filesPatch": patch})
    for kind in (KIND, FILES_KIND):
        prune(ctx.root / CACHE_DIR / kind)
