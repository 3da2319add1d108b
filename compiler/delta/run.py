"""A delta compile: when only some intents' files changed since the last recorded compile,
compile those intents and carry everything else over (docs/scale.md#editing-one-intent).

`attempt` returns what the run printed and wrote, or why it did not apply; then nothing was
written and the caller runs the full compile, which is always correct. It applies when

- the newest recorded compile (the base: its run record and `delta.base`) is replayable in
  everything but the policy files: same code, schemas, options, lock, certificate material
  (read again), output tree (fingerprints), clock before its horizon, no interrupted write;
- every changed file holds exactly the documents of one intent (the intent, or overrides of
  it) before and after, at most `MAX_INTENTS` intents, no file added or removed;
- the base had no guardrails and no fetch problems;
- for each edited intent and cluster, the facts the cross-gateway steps read (`facts`) are
  the same before and after: the files it emits, its ReferenceGrant contributions, the
  namespaces it makes known, the certificates it references, its Envoy config's name; an
  object it shares with another gateway is unchanged and has no problem;
- the edited intents' diagnostics are all located in their own files, or already reported
  by the base; the run has no error.

Diagnostics are the base's, minus those located in the edited intents' files, plus the ones
the sub-compile finds there. Writing goes through `spare_write.write_changes` (each output
directory still entirely old or entirely new). `MTLSC_CROSSCHECK=1` compares every delta
compile with a full compile in memory before anything is written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache_store import CACHE_DIR, EntryStore
from ..diagnostics import Diagnostic, escalate, has_errors, sorted_diagnostics
from ..policy_files import PolicyDigests, read_named, text_digest
from ..run_inputs import Inputs, Settings, run_key
from . import base as delta_base
from . import live_scan

if TYPE_CHECKING:
    from ..cli.options import Context
    from ..run_record import Lookup
    from .subcompile import Sub

MAX_INTENTS = 16
COMPARED = ("files", "envoy", "grants", "ns", "refs")


@dataclass(slots=True)
class Done:
    diagnostics: list[Diagnostic]
    counts: tuple[int, int, int, int]  # new, changed, removed, unchanged
    files: Callable[[], list[str]] = field(default=lambda: [])  # every compiled file


class Miss(Exception):
    """The delta compile does not apply (the message says why); nothing was written."""


@dataclass(slots=True)
class Plan:
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
    if base.guardrails or base.fetch_problems:
        raise Miss("the base has guardrails or fetch problems")
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
    p, raw = _begin(inputs, settings, EntryStore(ctx.root / CACHE_DIR, writable=False))
    # The output tree is checked against the base record by a child process that scans it
    # while this one imports the compiler and compiles the edit.
    scan = live_scan.start(ctx.root, sorted(raw["trees"]))
    try:
        return _prepare(ctx, inputs, settings, p, raw, scan)
    finally:
        scan.close()


def _prepare(ctx: Context, inputs: Inputs, settings: Settings, p: Plan, raw: Any,
             scan: live_scan.InProcess) -> Prepared:
    from .. import policy_memo, run_record
    from ..confine import Boundaries
    from ..k8s.validate import SchemaStore
    from ..schema_roots import schema_roots
    from ..secrets.factory import reusing, source_factory
    from .subcompile import compile_sub

    def replayable() -> Lookup:
        found = run_record.lookup(inputs, settings, ctx.now, names=False,
                                  record=p.base.record, raw=raw, scanned=scan.fingerprints)
        if not found.hit or found.record is None:
            raise Miss(f"base not replayable: {found.why}")
        scanned = scan.fingerprints()
        if any(scanned.get(unit) != raw["trees"][unit][0] for unit in raw["trees"]):
            raise Miss("an output directory is not exactly as recorded")
        return found

    root = ctx.root
    # Vault sources: the lookup reads every recorded secret again and logs in; the compile
    # reuses its sources. Local files only: the lookup waits for the scan, so it runs last.
    vault = bool(raw.get("materials", {}).get("vault"))
    early = replayable() if vault else None
    clock = policy_memo.clock(root / CACHE_DIR)
    identities: dict[str, Any] = {}
    texts = read_named(root, sorted(p.own | set(p.context)), identities)
    assert inputs.digests is not None
    if texts is None or any(text_digest(text) != inputs.digests[name]
                            for name, text in texts.items()):
        raise Miss("policy files changed while reading")
    opened = dict(early.reread.opened) if early is not None and early.reread is not None \
        else {}
    factory = reusing(source_factory(root, _lock(inputs), read_outside=ctx.read_outside),
                      opened)
    bounds = Boundaries(root=root, policies=_display(ctx.policies, root),
                        read_outside=ctx.read_outside)
    sub = compile_sub(texts, factory, SchemaStore(schema_roots(root)), _known(p.base),
                      ctx.now, bounds)
    if sub.stopped:
        raise Miss(sub.stopped)
    found = early or replayable()
    assert found.record is not None
    return Prepared(p, found.record, _new_facts(sub, p), _diagnostics(found, sub, p, ctx.strict),
                    _changes(sub), {n: identities[n] for n in p.changed if n in identities},
                    clock)


def attempt(ctx: Context, inputs: Inputs, settings: Settings) -> Done:
    """Compile the edit and write it, or raise `Miss` having written nothing."""
    from .. import crosscheck

    p, raw = _begin(inputs, settings, EntryStore(ctx.root / CACHE_DIR, writable=False))
    scan = live_scan.start(ctx.root, sorted(raw["trees"]))
    try:
        done = _prepare(ctx, inputs, settings, p, raw, scan)
        if crosscheck.enabled():
            from .verify_full import compare_with_full

            compare_with_full(ctx, done.diagnostics, done.changes)
        from ..spare_write import write_changes

        try:
            written = write_changes(ctx.root, done.changes)
        except OSError as exc:  # nothing was changed: the full compile reports it
            raise Miss(f"writing failed: {exc}") from None
        if written is None:
            raise Miss("the output directories cannot be written in place")
        from .record import save_delta

        save_delta(ctx, settings, inputs, done.plan, done.record, done.facts,
                   done.diagnostics, done.changes, written, done.identities, done.clock)
    finally:
        scan.close()
    reader = EntryStore(ctx.root / CACHE_DIR, writable=False)
    record, key = done.record, inputs.key
    return Done(done.diagnostics, written.counts, lambda: _all_files(reader, record, key))


def _lock(inputs: Inputs) -> dict[Any, Any]:
    """The lock's pins, as the full compile reads them (`cli.common.read_lock`)."""
    if inputs.lock is None:
        return {}
    from ..lock import LockError, parse_lock

    try:
        return parse_lock(inputs.lock.decode("utf-8"))
    except (UnicodeDecodeError, LockError):
        raise Miss("the lock cannot be read") from None


def _display(path: Path, root: Path) -> str:
    """`cli.common.display`: the policies directory as the full compile names it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def _known(base: delta_base.Base) -> dict[str, set[str]]:
    try:
        return {name: {str(ns) for ns in seen["known"]} for name, seen in base.clusters.items()}
    except (KeyError, TypeError):
        raise Miss("damaged delta base") from None


def _new_facts(sub: Sub, p: Plan) -> dict[str, dict[str, Any]]:
    """The edited intents' new facts, checked against the base's (`Miss` on a difference)."""
    from .facts import unit_facts

    new: dict[str, dict[str, Any]] = {key: {} for key in p.keys}
    for cluster, units in zip(sub.clusters, sub.units, strict=True):
        shared = p.base.clusters.get(cluster.target.name, {}).get("shared", {})
        for gw, unit in zip(cluster.gateways, units, strict=True):
            if gw.key not in new:
                raise Miss(f"gateway {gw.key} is not an edited intent")
            facts = unit_facts(gw, unit)
            facts["refs"] = [list(r) for r in facts["refs"]]
            old = p.old[gw.key].get(cluster.target.name)
            if old is None or any(old[k] != facts[k] for k in COMPARED):
                raise Miss(f"{gw.key} changed what other gateways on "
                           f"{cluster.target.name} see")
            for piece in unit.pieces:
                entry = shared.get(piece.file) if piece.rendered is None else None
                if entry is not None and (old["problems"] or facts["problems"] or
                                          piece.digest != entry[1]):
                    raise Miss(f"{gw.key} changed an object it shares")
            new[gw.key][cluster.target.name] = facts
    for key, placed in new.items():
        if set(placed) != set(p.old[key]):
            raise Miss(f"{key} is compiled for other clusters")
    return new


def _diagnostics(found: Lookup, sub: Sub, p: Plan, strict: bool) -> list[Diagnostic]:
    assert found.diagnostics is not None
    mine = sorted_diagnostics(escalate(sub.diagnostics, strict))
    if has_errors(mine):
        raise Miss("the edit has errors")

    def own(d: Diagnostic) -> bool:
        return d.location is not None and d.location.file in p.own

    kept: list[Diagnostic] = []
    index = {}
    for d in found.diagnostics:
        if own(d):
            continue
        if any(r.location.file in p.own for r in d.related):
            raise Miss("a diagnostic elsewhere names an edited file")
        kept.append(d)
        index[(d.sort_key(), d.severity, d.hint)] = d
    for d in mine:
        if own(d):
            continue
        seen = index.get((d.sort_key(), d.severity, d.hint))
        if seen is None or not set(d.clusters) <= set(seen.clusters) or \
                not set(d.related) <= set(seen.related):
            raise Miss(f"the edit reports {d.code} outside its own files")
    return sorted_diagnostics([*kept, *(d for d in mine if own(d))])


def _changes(sub: Sub) -> dict[str, dict[str, bytes | None]]:
    out: dict[str, dict[str, bytes | None]] = {}
    for cluster, units in zip(sub.clusters, sub.units, strict=True):
        files = out.setdefault(cluster.target.output_dir, {})
        for unit in units:
            for piece in unit.pieces:
                if piece.rendered is None:
                    assert isinstance(piece.data, bytes)
                    files[piece.file] = piece.data
            if unit.envoy is not None:
                assert isinstance(unit.envoy[1], bytes)
                files[unit.envoy[0]] = unit.envoy[1]
    return {d: files for d, files in out.items() if files}


def _all_files(store: EntryStore, record: Mapping[str, Any], key: str) -> list[str]:
    from ..run_record import expected_files

    units = expected_files(store, key, [str(d) for d in record["dirs"]]) or {}
    names = {f"{d}/{r}" for d, files in units.items() for r in files}
    names.update(str(r) for r in record["loose"])
    return sorted(names)


def enabled() -> bool:
    """`MTLSC_NO_DELTA=1` turns delta compiles off (tests compare both ways)."""
    return os.environ.get("MTLSC_NO_DELTA", "") in ("", "0")


