"""A delta compile: when only some intents' files changed since the last recorded compile,
compile those intents and carry everything else over (docs/scale.md#editing-one-intent).

`attempt` returns what the run printed and wrote, or why it did not apply; then nothing was
written and the caller runs the full compile, which is always correct. It applies when

- the newest recorded compile (the base: its run record and `delta.base`) is replayable in
  everything but the policy files: same code, schemas, options, lock, certificate material
  (read again), output tree (fingerprints), clock before its horizon, no interrupted write;
- every changed file holds exactly the documents of one intent (the intent, or overrides of
  it) before and after, at most `MAX_INTENTS` intents, no file added or removed;
- the base had no fetch problems;
- no guardrail rule reads other gateways than the one it judges (`cluster.gateways`) and
  every verdict the base has on an edited gateway is located in its own files (the
  sub-compile judges the edited gateways again, with their waivers; the record's clock
  horizon moves to the first of those waivers' lapses when that comes earlier);
- for each edited intent and cluster, the facts the cross-gateway steps read (`facts`) are
  the same before and after: its ReferenceGrant contributions, the namespaces it makes
  known, the certificates it references, its Envoy config's name; an object it shares with
  another gateway is unchanged and has no problem. The object files it emits may change
  when those it adds are new to the cluster and those it drops are no other gateway's: the
  cluster's kustomization lists them anew (`kustomization`);
- the edited intents' diagnostics are all located in their own files, or already reported
  by the base; the run has no error, or its errors stop the compile after a stage the full
  compile stops at too (reading, the checks before resolving, resolving: `compute`,
  `checks.stopped_alike`). Then the base's diagnostics of those stages (the record keeps
  each one's stages) and the edit's own are reported, and nothing is written or recorded.

Diagnostics are the base's, minus those located in the edited intents' files, plus the ones
the sub-compile finds there. Writing goes through `spare.write.write_changes` (each output
directory still entirely old or entirely new). `MTLSC_CROSSCHECK=1` compares every delta
compile with a full compile in memory before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..cache_store import CACHE_DIR, EntryStore
from ..diagnostics import (
    Diagnostic,
    MergeKey,
    Span,
    merge_key,
    sorted_diagnostics,
)
from ..policy_files import PolicyDigests
from ..run_horizon import earliest
from ..run_inputs import Inputs, Settings, run_key
from ..verdicts import verdict_gateway
from . import base as delta_base
from . import compute, early, live_scan
from .compute import Miss as Miss

if TYPE_CHECKING:
    from ..cli.options import Context
    from ..run_record import Lookup

MAX_INTENTS = 16


@dataclass(slots=True)
class Done:
    """A delta compile written: its diagnostics, the write's counts and, on demand, every
    compiled file; or (`failed`) one whose errors stop the compile: nothing is written."""

    diagnostics: list[Diagnostic]
    counts: tuple[int, int, int, int]  # new, changed, removed, unchanged
    files: Callable[[], list[str]] = field(default=lambda: [])  # every compiled file
    failed: bool = False


@dataclass(slots=True)
class Plan:
    """The edit measured against the base: the changed policy files, the intents they edit
    (`keys`), the files to read for them (`own`, `context`) and their facts in the base."""

    base: delta_base.Base
    changed: list[str]
    keys: set[str]
    own: set[str]  # every file of the edited intents
    context: list[str]
    old: dict[str, dict[str, Any]]  # the edited intents' facts in the base, per cluster


def plan(inputs: Inputs, settings: Settings, store: EntryStore) -> Plan:
    digests = inputs.digests
    if digests is None or digests.problems or settings.clusters:
        raise Miss("not a plain compile of every cluster")
    head = delta_base.head_key(settings.root, settings.policies, settings.overlays)
    base = delta_base.load(store, head)
    if base is None:
        raise Miss("no delta base")
    old = PolicyDigests()
    try:
        old.update((name, bytes.fromhex(value)) for name, value in base.texts.items())
    except ValueError:
        raise Miss("damaged delta base") from None
    if set(old) != set(digests):
        raise Miss("policy files were added or removed")
    if run_key(settings, old, inputs.lock) != base.record:
        raise Miss("something besides policy files changed")
    changed = sorted(name for name, value in digests.items() if old[name] != value)
    keys: set[str] = set()
    for name in changed:
        kind, _, key = base.roles.get(name, "context").partition(" ")
        if kind not in ("intent", "override"):
            raise Miss(f"{name} is not one intent's file")
        keys.add(key)
    if not keys or len(keys) > MAX_INTENTS:
        raise Miss("no intent or too many intents changed")
    if base.fetch_problems:
        raise Miss("the base has fetch problems")
    if any(key not in base.intents for key in keys):
        raise Miss("an edited intent has no gateway in the base")
    try:
        old_facts = {key: base.facts(key) for key in keys}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        raise Miss("damaged delta base") from None
    roles = {f"intent {key}" for key in keys} | {f"override {key}" for key in keys}
    own = {name for name, role in base.roles.items() if role in roles}
    context = sorted(name for name, role in base.roles.items() if role == "context")
    return Plan(base, changed, keys, own, context, old_facts)


@dataclass(slots=True)
class Prepared:
    """A delta compile computed, not yet written."""

    plan: Plan
    record: dict[str, Any]  # the base's run record
    facts: dict[str, dict[str, Any]]  # the edited intents' new facts
    diagnostics: list[Diagnostic]
    changes: dict[str, dict[str, bytes | None]]  # output dir -> relative path -> bytes
    identities: dict[str, Any]  # of the changed policy files, as read
    clock: int | None
    live: dict[str, Any] = field(default_factory=dict)  # hash manifests and their digests
    same_diagnostics: bool = False  # `diagnostics` are exactly the base's
    # cluster -> (digest, data): kustomizations listing other object files than the base's
    kustomizations: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    stages: list[tuple[int, int]] = field(default_factory=list)  # of `diagnostics`
    failed: int = 0  # the stage the edit's errors stop the compile after (0: none)


def _begin(inputs: Inputs, settings: Settings, store: EntryStore) -> tuple[Plan, Any]:
    """The plan and the base's run record; `Miss` when there is no usable base."""
    from .. import run_record

    p = plan(inputs, settings, store)
    raw: Any = store.get(run_record.KIND, p.base.record)
    try:
        if sorted(str(u) for u in raw["trees"]) != sorted(str(d) for d in raw["dirs"]):
            raise Miss("an output directory of the base has no fingerprint")
    except (KeyError, TypeError, AttributeError):
        raise Miss("no base record") from None
    return p, raw


def prepare(ctx: Context, inputs: Inputs, settings: Settings) -> Prepared:
    """Compile the edit in memory, or raise `Miss` (nothing is written either way)."""
    from . import compute

    p, raw = _begin(inputs, settings, EntryStore(ctx.root / CACHE_DIR, writable=False))
    worker = compute.Worker()
    worker.submit(ctx, compute.job_of(p, inputs))
    return _prepare(inputs, settings, ctx, p, raw, live_scan.Scan(ctx.root), worker)


def _prepare(inputs: Inputs, settings: Settings, ctx: Context, p: Plan, raw: Any,
             scan: live_scan.Scan, worker: compute.Worker) -> Prepared:
    """While the worker compiles the edit, check that the base holds: the output tree
    scanned, the run record replayable."""
    from .. import manifest, run_record

    # Before the checks that wait for the scan: the hash manifests of the directories the
    # edit writes to, and the modules that write and record it (all of it wasted, and cheap,
    # when the base does not hold).
    dirs = {p.base.clusters[c]["dir"] for placed in p.old.values() for c in placed
            if c in p.base.clusters}
    live = {d: manifest.load_lazy(ctx.root, d) for d in sorted(dirs)}
    from ..spare import write  # noqa: F401
    from . import record  # noqa: F401

    units = sorted(raw["trees"])
    found = run_record.lookup(inputs, settings, ctx.now, names=False, record=p.base.record,
                              raw=raw, scanned=scan.fingerprints)
    if not found.hit or found.record is None:
        raise Miss(f"base not replayable: {found.why}")
    scanned = scan.fingerprints(units)
    if any(scanned.get(unit) != raw["trees"][unit][0] for unit in units):
        raise Miss("an output directory is not exactly as recorded")
    done = worker.result()
    diagnostics, stages, same = _diagnostics(found, done.diagnostics, done.stages, p,
                                             done.failed)
    return Prepared(p, _horizon(found.record, done.until), done.facts, diagnostics,
                    done.changes, done.identities, done.clock, live, same,
                    done.kustomizations, stages, done.failed)


def _horizon(record: dict[str, Any], lapse: datetime | None) -> dict[str, Any]:
    """The base's record with its clock horizon moved to `lapse` (an edited intent's waiver
    lapsing) when that comes first. The base's own horizon stays valid: it counted every
    waiver the base had, so at worst it is earlier than needed."""
    until = earliest(record["validUntil"], lapse)
    return record if until == record["validUntil"] else {**record, "validUntil": until}


def attempt(ctx: Context, inputs: Inputs, settings: Settings,
            started: early.Early | None = None) -> Done:
    """Compile the edit and write it, or raise `Miss` having written nothing. `started`:
    the children `mtlsc compile` started (`early`); closed here."""
    from .. import crosscheck

    started = started or early.Early(live_scan.Scan(ctx.root), compute.Worker())
    try:
        p, raw = _begin(inputs, settings, EntryStore(ctx.root / CACHE_DIR, writable=False))
        started.worker.submit(ctx, compute.job_of(p, inputs))
        done = _prepare(inputs, settings, ctx, p, raw, started.scan, started.worker)
        if done.failed:  # like the full compile: report, write and record nothing
            if crosscheck.enabled():
                from .verify_full import compare_failed

                compare_failed(ctx, done.diagnostics)
            return Done(done.diagnostics, (0, 0, 0, 0), failed=True)
        if crosscheck.enabled():
            from .verify_full import compare_with_full

            compare_with_full(ctx, done.diagnostics, done.changes)
        from ..spare.write import write_changes

        try:
            written = write_changes(ctx.root, done.changes,
                                    live={d: m for d, m in done.live.items()
                                          if d in done.changes and m[0]})
        except OSError as exc:  # nothing was changed: the full compile reports it
            raise Miss(f"writing failed: {exc}") from None
        if written is None:
            raise Miss("the output directories cannot be written in place")
        from .record import save_delta

        save_delta(ctx, settings, inputs, done.plan, done.record, done.facts,
                   done.diagnostics, done.changes, written, done.identities, done.clock,
                   started.scan, done.same_diagnostics, done.kustomizations, done.stages)
    finally:
        started.close()
    reader = EntryStore(ctx.root / CACHE_DIR, writable=False)
    record, key = done.record, inputs.key
    return Done(done.diagnostics, written.counts, lambda: _all_files(reader, record, key))


def _diagnostics(found: Lookup, mine: list[Diagnostic], spans: list[Span], p: Plan,
                 failed: int = 0) -> tuple[list[Diagnostic], list[Span], bool]:
    """The base's diagnostics without those in the edited files, plus the edit's own
    (`mine`, sorted, with their stages `spans`), the stages of each ([] when unknown or
    when they are exactly the base's) and whether they are; `Miss` when the edit reports
    something elsewhere. When the edit's errors stop the compile after stage `failed`, the
    base's diagnostics are those a compile stopping there reports."""
    from ..run_record import stages_of

    assert found.diagnostics is not None and found.record is not None
    base = stages_of(found.record.get("stages"), len(found.diagnostics)) if failed else None
    if base is None and failed:
        raise Miss("the base's diagnostics have no stages")

    def own(d: Diagnostic) -> bool:
        return d.location is not None and d.location.file in p.own

    index: dict[MergeKey, Diagnostic] = {}
    for at, d in enumerate(found.diagnostics):
        if own(d):
            continue
        if base is not None:
            first, last = base[at]
            if first > failed:
                continue  # a later stage: the compile stops before it
            if last > failed:
                raise Miss("a diagnostic elsewhere comes partly from a stage the compile "
                           "skips")
        if any(r.location.file in p.own for r in d.related):
            raise Miss("a diagnostic elsewhere names an edited file")
        if verdict_gateway(d) in p.keys:
            raise Miss("a guardrail verdict on an edited gateway stands outside its files")
        index[merge_key(d)] = d
    for d in mine:
        if own(d):
            continue
        seen = index.get(merge_key(d))
        if seen is None or not set(d.clusters) <= set(seen.clusters) or \
                not set(d.related) <= set(seen.related):
            raise Miss(f"the edit reports {d.code} outside its own files")
    out = sorted_diagnostics([*index.values(), *(d for d in mine if own(d))])
    same = not failed and out == found.diagnostics
    if failed or same:  # nothing recorded, or the base's stages as they are
        return out, [], same
    # a new record: the stages of the base's diagnostics kept and of the edit's own
    base = stages_of(found.record.get("stages"), len(found.diagnostics))
    if base is None:
        return out, [], same
    kept = {merge_key(d): span for d, span in zip(found.diagnostics, base, strict=True)}
    kept.update((merge_key(d), span) for d, span in zip(mine, spans, strict=True) if own(d))
    return out, [kept[merge_key(d)] for d in out], same


def _all_files(store: EntryStore, record: Mapping[str, Any], key: str) -> list[str]:
    from ..run_record import expected_files

    units = expected_files(store, key, [str(d) for d in record["dirs"]]) or {}
    names = {f"{d}/{r}" for d, files in units.items() for r in files}
    names.update(str(r) for r in record["loose"])
    return sorted(names)


def enabled() -> bool:
    """`MTLSC_NO_DELTA=1` turns delta compiles off (tests compare both ways)."""
    return os.environ.get("MTLSC_NO_DELTA", "") in ("", "0")


