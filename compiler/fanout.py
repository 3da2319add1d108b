"""Compute the units (render + validate + emit per resolved gateway x cluster) of a compile:
from the cache where an entry exists, otherwise in this process or in a pool of worker
processes.

Certificates were fetched before (once, in the parent: one Vault session per run); workers get
the resolved gateways and the clusters' CA bundles, which are public. Server certificates and
private keys never reach a worker: rendering does not read them. Results are placed by
gateway position, so the output does not depend on the number of workers or on scheduling.
A gateway goes to the same worker on every cluster (`worker_pool`), which keeps what it
emitted for the next cluster (`emit_memo`).

Workers are forked after the model is complete: they find the gateways in their copy of it, so
a task is three small values. When the compile's writer can take a cluster's files straight
from the workers (a `Stager`: the streamed write of a new output directory), each worker
writes its units' files into the staging directory (`unit_files`) and sends back only their
digests and identities; a filesystem error there is handed to the stager, which reports it as
its own.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from . import fsops
from .cache import EntryStore, canonical, code_salt, digest
from .emit_memo import EmitMemo
from .fetch import Materials
from .k8s.validate import SchemaStore
from .model import ClusterModel, Gateway, Target
from .progress import Progress
from .render.gateway_api import Rendered
from .render_units import (
    Piece,
    Unit,
    Wire,
    finish_grant,
    piece_from_json,
    piece_to_json,
    render_unit,
    unit_from_json,
    unit_from_wire,
    unit_to_json,
    unit_to_wire,
)
from .unit_files import stage_unit
from .worker_pool import PinnedPool, pinned_chunks

KIND = "unit"
MIN_BATCH = 16  # fewer misses in a cluster than this are rendered in this process
GRANT_KIND = "grant"


class Stager(Protocol):
    """The writer's side of worker staging (`stream_write.StreamingWrite`)."""

    def open(self, directory: str) -> str | None:
        """The staging directory that workers may fill for the output directory, or None."""

    def fail(self, error: OSError) -> None:
        """A worker could not write into a staging directory."""


@dataclass(frozen=True, slots=True)
class Work:
    """What every unit of one compile shares."""

    clusters: tuple[ClusterModel, ...]
    targets: tuple[Target, ...]
    ca_pems: tuple[dict[str, bytes], ...]  # per target: public CA bundles only
    grant_versions: tuple[str, ...]  # per target: the ReferenceGrant version it serves
    store: SchemaStore
    envoy: bool
    cache: EntryStore | None


Task = tuple[int, int, str | None]  # (cluster index, gateway position, cache key or None)

_WORK: Work | None = None  # set in each worker process by `_start`
_MEMO: EmitMemo | None = None  # each worker's own, from `_start`


def _start(work: Work, parent: int) -> None:
    global _WORK, _MEMO
    _WORK, _MEMO = work, EmitMemo()
    fsops.die_with_parent(parent)  # never write into a staging directory for a dead writer


def _compute(work: Work, tasks: Sequence[Task], progress: Progress | None = None,
             stage: str | None = None, memo: EmitMemo | None = None,
             ) -> tuple[list[Unit], OSError | None]:
    """The units of `tasks`, written into `stage` when given; a filesystem error stops the
    writing (the units are still computed: the compile's diagnostics come first)."""
    out = []
    failed = None
    for index, position, key in tasks:
        gw = work.clusters[index].gateways[position]
        if progress is not None:
            progress.step(f"{work.targets[index].name} {gw.key}")
        unit = render_unit(gw, work.targets[index], work.ca_pems[index], work.store,
                           envoy=work.envoy, grant_version=work.grant_versions[index],
                           memo=memo)
        if work.cache is not None and key is not None:
            work.cache.put(KIND, key, unit_to_json(unit))
        if stage is not None:
            try:
                unit = stage_unit(stage, unit)
            except OSError as exc:
                failed, stage = exc, None
        out.append(unit)
    return out, failed


def _in_worker(stage: str | None, tasks: Sequence[Task]) -> Computed:
    assert _WORK is not None
    units, failed = _compute(_WORK, tasks, stage=stage, memo=_MEMO)
    return [unit_to_wire(unit) for unit in units], failed


def _cluster_salt(cluster: ClusterModel, ca_pems: dict[str, bytes], store: SchemaStore,
                  envoy: bool, grant_version: str = "") -> bytes:
    target = cluster.target
    cas = sorted((name, hashlib.sha256(pem).hexdigest()) for name, pem in ca_pems.items())
    return digest(code_salt(), target, envoy, tuple(cas), grant_version,
                  store.fingerprint(target.gateway_api_version, target.channel)).encode()


def grant_finisher(cluster: ClusterModel, materials: Materials, store: SchemaStore, *,
                   envoy: bool, cache: EntryStore | None) -> Callable[[Rendered], Piece]:
    """`finish_grant` through the cache: merged ReferenceGrants are re-validated on every
    compile otherwise, since they are joined from several gateways' units."""
    target = cluster.target
    if cache is None:
        return lambda grant: finish_grant(grant, target, store)
    ca_pems = materials.ca_pems_for(target.certificate_source)
    found = _salt_or_none(cluster, ca_pems, store, envoy, "")
    if found is None:
        return lambda grant: finish_grant(grant, target, store)
    salt = found

    def finish(grant: Rendered) -> Piece:
        sources = sorted((repr(path), canonical(loc)) for path, loc in grant.sources.items())
        text = json.dumps(grant.obj, ensure_ascii=False) + repr(sources)
        key = hashlib.sha256(salt + text.encode("utf-8")).hexdigest()
        raw = cache.get(GRANT_KIND, key)
        if raw is not None:
            try:
                return piece_from_json(raw)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError):
                pass
        done = finish_grant(grant, target, store)
        cache.put(GRANT_KIND, key, piece_to_json(done))
        return done

    return finish


def unit_key(salt: bytes, gw: Gateway, inputs: str | None = None) -> str:
    """The cluster's salt plus either the digest of the gateway's inputs (its intent and
    overrides files, see `incremental.input_digest`) or, without one, of the resolved model."""
    if inputs is not None:
        return hashlib.sha256(salt + b"inputs\0" + inputs.encode("ascii")).hexdigest()
    return hashlib.sha256(salt + digest(gw).encode()).hexdigest()


def _key_or_none(salt: bytes | None, gw: Gateway, inputs: str | None = None) -> str | None:
    """The unit's key, or None when some value has no canonical form (then it is simply not
    cached: a key that might not cover everything would be a wrong answer waiting)."""
    if salt is None:
        return None
    try:
        return unit_key(salt, gw, inputs)
    except TypeError:
        return None


def _salt_or_none(cluster: ClusterModel, ca_pems: dict[str, bytes], store: SchemaStore,
                  envoy: bool, grant_version: str) -> bytes | None:
    try:
        return _cluster_salt(cluster, ca_pems, store, envoy, grant_version)
    except TypeError:
        return None


def _cached(cache: EntryStore | None, key: str | None) -> Unit | None:
    raw = cache.get(KIND, key) if cache is not None and key is not None else None
    if raw is None:
        return None
    try:
        return unit_from_json(raw)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None  # a foreign or damaged payload: recompute


def iter_units(clusters: Sequence[ClusterModel], materials: Materials, store: SchemaStore,
               *, envoy: bool, grant_versions: Sequence[str], cache: EntryStore | None,
               jobs: int, parallel_min: int, progress: Progress,
               inputs: Sequence[Sequence[str | None]] | None = None,
               stager: Stager | None = None) -> UnitStream:
    """The units of each cluster in turn (in the cluster's gateway order), so that a caller
    can hand one cluster's output on and drop it before the next is computed. `inputs`, per
    cluster and gateway: the digest of what the resolved gateway was computed from (cheaper
    cache keys than digesting the model); None entries fall back to the model.

    A pool of `jobs` workers is started (once) when the compile is large (at least
    `parallel_min` gateways in all) and a cluster has enough cache misses to be worth it;
    otherwise everything runs in this process. The first two clusters are looked up and
    queued right away, so the workers start while the caller still checks certificates and
    guardrails; the caller must `close()` the stream (it stops the workers). With a `stager`,
    workers write the files of the clusters it opens a staging directory for."""
    work = Work(tuple(clusters), tuple(c.target for c in clusters),
                tuple(materials.ca_pems_for(c.target.certificate_source) for c in clusters),
                tuple(grant_versions), store, envoy, cache)
    large = jobs > 1 and sum(len(c.gateways) for c in clusters) >= max(parallel_min, 2)
    stream = UnitStream(work, clusters, cache, inputs, progress,
                        jobs if large else 1, min(MIN_BATCH, parallel_min), stager)
    try:
        stream.prepare(0)
        stream.prepare(1)
    except BaseException:
        stream.close()
        raise
    return stream


class UnitStream:
    """Iterates over each cluster's units; see `iter_units`."""

    def __init__(self, work: Work, clusters: Sequence[ClusterModel], cache: EntryStore | None,
                 inputs: Sequence[Sequence[str | None]] | None, progress: Progress,
                 jobs: int, batch: int, stager: Stager | None = None) -> None:
        self.work, self.clusters, self.cache, self.inputs = work, clusters, cache, inputs
        self.progress, self.jobs, self.batch, self.stager = progress, jobs, batch, stager
        self.pool: PinnedPool | None = None
        self.plans: dict[int, tuple[list[Unit | None], list[tuple[int, Task]]]] = {}
        self.queued: dict[int, list[tuple[list[Task], Future[Computed]]]] = {}
        self.memo = EmitMemo()  # for the units computed in this process

    def prepare(self, index: int) -> None:
        """Look up cluster `index` in the cache and queue its misses. Only one cluster ahead
        of the one being taken: at most about two clusters' units are held in memory."""
        if index >= len(self.clusters) or index in self.plans:
            return
        self.plans[index] = _lookup(self.work, index, self.clusters[index], self.cache,
                                    self.inputs, self.progress)
        tasks = [task for _, task in self.plans[index][1]]
        if self.jobs > 1 and len(tasks) >= self.batch:
            stage = self.stager.open(self.clusters[index].target.output_dir) \
                if self.stager is not None else None
            self.pool = self.pool or _pool(self.work, self.jobs)
            size = max(8, math.ceil(len(tasks) / (self.jobs * 8)))
            clusters = self.work.clusters
            # A gateway goes to the same worker on every cluster: its `emit_memo` has it.
            self.queued[index] = [
                (chunk, self.pool.submit(rank, _in_worker, stage, chunk))
                for rank, chunk in pinned_chunks(
                    tasks, lambda task: clusters[task[0]].gateways[task[1]].key, self.jobs,
                    size)]

    def __iter__(self) -> Iterator[list[Unit]]:
        try:
            for index in range(len(self.clusters)):
                self.prepare(index)
                self.prepare(index + 1)
                found, missing = self.plans.pop(index)
                computed: Iterable[tuple[Task, Unit]]
                if index in self.queued:
                    computed = _collect(self.queued.pop(index), self.work, self.progress,
                                        self.stager)
                else:
                    tasks = [task for _, task in missing]
                    computed = zip(tasks, _compute(self.work, tasks, self.progress,
                                                   memo=self.memo)[0], strict=True)
                for (_, position, _), unit in computed:
                    found[position] = unit
                yield [unit for unit in found if unit is not None]
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (queued work is cancelled); safe to call more than once."""
        if self.pool is not None:
            self.pool.shutdown(future for chunks in self.queued.values()
                               for _, future in chunks)
            self.pool = None
        self.plans.clear()
        self.queued.clear()
        self.memo = EmitMemo()


Computed = tuple[list[Wire], OSError | None]  # what a worker sends back


def _collect(chunks: list[tuple[list[Task], Future[Computed]]], work: Work,
             progress: Progress, stager: Stager | None) -> list[tuple[Task, Unit]]:
    """Each task of the chunks (in turn) with its unit."""
    out: list[tuple[Task, Unit]] = []
    for chunk, future in chunks:
        units, failed = future.result()
        if failed is not None and stager is not None:
            stager.fail(failed)
        for task, unit in zip(chunk, units, strict=True):
            cluster, position, _ = task
            progress.step(f"{work.targets[cluster].name} "
                          f"{work.clusters[cluster].gateways[position].key}")
            out.append((task, unit_from_wire(unit)))
    return out


def _lookup(work: Work, index: int, cluster: ClusterModel, cache: EntryStore | None,
            inputs: Sequence[Sequence[str | None]] | None, progress: Progress,
            ) -> tuple[list[Unit | None], list[tuple[int, Task]]]:
    """The cluster's units found in the cache (None where missing) and the tasks to compute."""
    salt = _salt_or_none(cluster, work.ca_pems[index], work.store, work.envoy,
                         work.grant_versions[index]) if cache else None
    found: list[Unit | None] = []
    missing: list[tuple[int, Task]] = []
    given = inputs[index] if inputs is not None else [None] * len(cluster.gateways)
    for position, (gw, source) in enumerate(zip(cluster.gateways, given, strict=True)):
        key = _key_or_none(salt, gw, source)
        unit = _cached(cache, key)
        found.append(unit)
        if unit is None:
            missing.append((position, (index, position, key)))
        else:
            progress.step(f"{cluster.target.name} {gw.key}")
    return found, missing


def _pool(work: Work, jobs: int) -> PinnedPool:
    # Forked workers share the parent's pages until something writes to them; a garbage
    # collection in a worker would write to every object's header. Frozen objects are never
    # collected, so the model stays shared (and the workers' memory small).
    gc.freeze()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    return PinnedPool(jobs, context, _start, (work, os.getpid()))
