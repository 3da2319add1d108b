"""The compiling half of a delta compile, in a forked child while the parent checks the base.

Most of a delta compile's time is importing the compiler (about 0.2 s) and compiling the
edited intents; checking that the base still holds (scanning the output tree, reading the
run record, loading the hash manifests) is about as long again and independent of it. With
two CPUs the parent forks a child right after the plan: the child imports, reads the edited
files, compiles them (`subcompile`) and checks their facts, then sends back what it found
(pickled: changed files, facts, diagnostics) or why the delta compile does not apply. The
child writes nothing. With one CPU, or when the child cannot be started or dies, the same
function runs in the parent.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..cache_store import CACHE_DIR
from ..diagnostics import Diagnostic
from . import forked

if TYPE_CHECKING:
    from pathlib import Path

    from ..cli.options import Context
    from ..run_inputs import Inputs
    from .checks import Moved
    from .run import Plan


class Miss(Exception):
    """The delta compile does not apply (the message says why); nothing was written."""


@dataclass(slots=True)
class Job:
    """What `compute` needs of the plan: small, as it travels to the child through a pipe."""

    own: set[str]  # every file of the edited intents
    context: list[str]  # ClusterTargets, CertificateSources
    changed: list[str]
    keys: set[str]  # the edited intents
    old: dict[str, dict[str, Any]]  # their facts in the base, per cluster
    clusters: dict[str, dict[str, Any]]  # the base's clusters (shared objects, namespaces)
    digests: dict[str, bytes]  # of the files read
    lock: bytes | None


def job_of(p: Plan, inputs: Inputs) -> Job:
    assert inputs.digests is not None
    names = p.own | set(p.context)
    return Job(p.own, p.context, p.changed, p.keys, p.old, p.base.clusters,
               {name: inputs.digests[name] for name in names}, inputs.lock)


@dataclass(slots=True)
class Computed:
    """What compiling the edit gave (sent back by the compile child): the edited intents' new
    facts, their diagnostics and the changed output files."""

    facts: dict[str, dict[str, Any]]  # the edited intents' new facts, checked
    diagnostics: list[Diagnostic]  # of the edited intents, sorted and merged
    changes: dict[str, dict[str, bytes | None]]  # output dir -> relative path -> bytes
    identities: dict[str, Any] = field(default_factory=dict)  # changed files, as read
    clock: int | None = None  # the filesystem clock before reading them
    until: datetime | None = None  # when the edited intents' first waiver lapses, if ever
    # cluster -> (digest, data) of a kustomization listing other files than the base's
    kustomizations: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    stages: list[tuple[int, int]] = field(default_factory=list)  # of `diagnostics`
    failed: int = 0  # the stage the edit's errors stop the compile after (0: none)


def compute(ctx: Context, job: Job) -> Computed:
    """Read and compile the edited intents (`Miss` when the delta compile cannot go on)."""
    from .. import policy_memo
    from ..confine import Boundaries
    from ..diagnostics import escalate, has_errors, merge_key, sorted_diagnostics, stage_spans
    from ..k8s.validate import SchemaStore
    from ..policy_files import read_named, text_digest
    from ..run_horizon import waiver_events
    from ..schema_roots import schema_roots
    from ..secrets.factory import source_factory
    from .checks import (
        changes_of,
        display,
        known_namespaces,
        lock_of,
        new_facts,
        stopped_alike,
    )
    from .subcompile import compile_sub

    root = ctx.root
    clock = policy_memo.clock(root / CACHE_DIR)
    identities: dict[str, Any] = {}
    texts = read_named(root, sorted(job.own | set(job.context)), identities)
    if texts is None or any(text_digest(text) != job.digests[name]
                            for name, text in texts.items()):
        raise Miss("policy files changed while reading")
    factory = source_factory(root, lock_of(job.lock), read_outside=ctx.read_outside)
    bounds = Boundaries(root=root, policies=display(ctx.policies, root),
                        read_outside=ctx.read_outside)
    sub = compile_sub(texts, factory, SchemaStore(schema_roots(root)),
                      known_namespaces(job.clusters), ctx.now, bounds)
    if sub.stopped:
        raise Miss(sub.stopped)
    made = escalate(sub.diagnostics, ctx.strict)
    mine = sorted_diagnostics(made)
    spans = stage_spans(made, sub.marks)
    stages = [spans[merge_key(d)] for d in mine]
    if sub.failed:  # what the full compile reports when it stops at that stage
        stopped_alike(sub, job)
        return Computed({}, mine, {}, stages=stages, failed=sub.failed)
    facts, moved = new_facts(sub, job)
    if has_errors(mine):
        raise Miss("the edit has errors")
    lapses = waiver_events(sub.expires, ctx.now)
    changes = changes_of(sub)
    return Computed(facts, mine, changes,
                    {n: identities[n] for n in job.changed if n in identities}, clock,
                    min(lapses, default=None), relisted(root, job, moved, changes), stages)


def relisted(root: Path, job: Job, moved: Moved,
             changes: dict[str, dict[str, bytes | None]]
             ) -> dict[str, tuple[str, dict[str, Any]]]:
    """For each cluster whose object files the edit adds or removes: the kustomization
    listing them anew (`delta.kustomization`), written with the removals into `changes`."""
    from ..cache_store import EntryStore
    from ..manifest import digest
    from . import kustomization

    store = EntryStore(root / CACHE_DIR, writable=False)
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    loaded: dict[str, dict[str, Any] | None] = {}  # clusters alike share one kustomization
    made: dict[Any, tuple[dict[str, Any], bytes]] = {}
    for cluster, (added, removed) in sorted(moved.items()):
        seen = job.clusters.get(cluster)
        key = seen.get("kustomization") if isinstance(seen, dict) else None
        if isinstance(key, str) and key not in loaded:
            loaded[key] = kustomization.load(store, key)
        value = loaded.get(key) if isinstance(key, str) else None
        if value is None or not isinstance(seen, dict):
            raise Miss(f"the base has no kustomization of {cluster}")
        shared = seen.get("shared") or {}
        how = (key, frozenset(added), frozenset(removed), frozenset(shared))
        if how not in made:
            made[how] = kustomization.relist(value, added, removed, shared, cluster)
        new, data = made[how]
        files = changes.setdefault(str(seen["dir"]), {})
        files[kustomization.NAME] = data
        for name in removed:
            files[name] = None
        out[cluster] = (digest(data), new)
    return out


class Worker:
    """`compute` in this process, when asked for its result."""

    args: tuple[Any, ...] = ()

    def submit(self, ctx: Context, job: Job) -> None:
        self.args = (ctx, job)

    def result(self) -> Computed:
        return compute(*self.args)

    def close(self) -> None:
        return None


class Forked(Worker):
    """`compute` in a child forked before the plan is known: it imports the compiler at
    once, then waits for its arguments (`submit`); `result` waits for what it sends."""

    def __init__(self) -> None:
        child = forked.fork(_child)  # the child: import, wait, compute, send
        with contextlib.suppress(AttributeError, OSError):  # so that `submit` never waits
            import fcntl

            fcntl.fcntl(child.ask, fcntl.F_SETPIPE_SZ, 1 << 20)
        self.pid: int | None = child.pid
        self.ask: int | None = child.ask
        self.tell: int | None = child.tell
        self.args: tuple[Any, ...] = ()

    def submit(self, ctx: Context, job: Job) -> None:
        self.args = (ctx, job)
        data = pickle.dumps(self.args, protocol=pickle.HIGHEST_PROTOCOL)
        assert self.ask is not None
        try:
            with os.fdopen(self.ask, "wb") as out:
                self.ask = None
                out.write(data)
        except OSError:
            self.close()

    def result(self) -> Computed:
        if self.pid is None:  # the child is gone: compute here
            return compute(*self.args)
        tell, self.tell = self.tell, None  # closed below: never again by `close`
        assert tell is not None
        with os.fdopen(tell, "rb") as fh:
            data = fh.read()
        # the child is leaving (it closed its end): reaped now if it is gone, else by
        # `close`, after the write: a forked process takes a while to unmap its memory
        self._reap(wait=False)
        try:
            kind, value = pickle.loads(data)
        except Exception:
            return compute(*self.args)
        if kind == "done" and isinstance(value, Computed):
            return value
        if kind == "miss":
            raise Miss(str(value))
        raise Miss(f"mtlsc bug in the delta compile, full compile instead: {value}")

    def _reap(self, *, wait: bool = True) -> None:
        if self.pid is not None:
            try:
                done, _ = os.waitpid(self.pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                done = self.pid
            if done:
                self.pid = None

    def close(self) -> None:
        """Stop a child whose result is not wanted (a replayed run, a base that does not
        hold): it is killed, whatever it was doing."""
        if self.pid is not None:
            for fd in (self.ask, self.tell):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self.ask = None
            with contextlib.suppress(OSError):
                os.kill(self.pid, signal.SIGKILL)
            self._reap()


def _child(ask: int, tell: int) -> None:
    from . import subcompile  # noqa: F401 - the imports are the point: done while waiting

    with os.fdopen(ask, "rb") as fh:
        data = fh.read()
    if not data:
        return  # the parent did not need us
    try:
        args = pickle.loads(data)
        answer: tuple[str, Any] = ("done", compute(*args))
    except Miss as why:
        answer = ("miss", str(why))
    except Exception:
        answer = ("bug", traceback.format_exc())
    with os.fdopen(tell, "wb") as out:
        out.write(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def start() -> Worker:
    """A child importing the compiler from now on, when this process may use two CPUs."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus >= 2:
        try:
            return Forked()
        except OSError:
            pass
    return Worker()
