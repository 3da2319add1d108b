"""The compiler as one call: load → layer → resolve → fetch → verify → render → validate → emit.

`compile_policies` takes policy texts, a way to open certificate sources and the Kubernetes
schemas, and returns the complete overlay file map plus diagnostics. It writes nothing; only
`write.py` touches `overlays/` and only the CLI prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import crosscheck
from .cache import EntryStore
from .confine import Boundaries, check_output_paths, check_policies
from .delta.facts import Collector
from .diagnostics import (
    Diagnostic,
    Location,
    Span,
    error,
    escalate,
    for_cluster,
    has_errors,
    merge_key,
    sorted_diagnostics,
    stage_spans,
)
from .emit import to_yaml
from .fanout import Stager, grant_finisher, iter_units
from .fetch import Materials, fetch, verify
from .guardrails import (
    Rule,
    Waiver,
    build_views,
    check_waivers,
    enforce,
    intent_locations,
    load_rules,
    load_waivers,
)
from .incremental import ResolveRecord, resolve_all, yaml_memo
from .k8s.validate import SchemaStore
from .layering import Placement, check_references
from .load import Policies, SourceConfig, load_texts
from .lock import LOCK_FILE, LockKey, Pin, render_lock
from .model import ClusterModel, Gateway, Model, Target
from .posture import ClusterPosture, compute_posture
from .progress import Progress, Silent
from .refcheck import check_references_offline
from .render.envoy import envoy_file
from .render.external_secrets import render_external_secret
from .render.gateway_api import Rendered
from .render_units import Content, Piece, Unit, assemble
from .schema_memo import CleanFiles
from .schema_roots import schema_roots as schema_roots  # callers' way to a SchemaStore
from .secrets import CertificateSource
from .secrets.vault_config import ExternalSecrets, VaultSourceConfig
from .target_checks import capabilities as capabilities
from .target_checks import check_targets, reference_grant_version

SourceFactory = Callable[[SourceConfig], CertificateSource]
# (outputDir, files by path): bytes, or what a worker wrote into the stager's directory
ClusterSink = Callable[[str, dict[str, Content]], None]


STREAM_MIN = 200  # gateway x cluster units from which a sink gets the clusters
PARALLEL_MIN = 200  # gateways to render from which worker processes start


@dataclass(frozen=True, slots=True)
class Options:
    """How `compile_policies` runs: strictness, clock, clusters, cache, parallelism, memory."""

    strict: bool = False
    # for certificate expiry checks and guardrail waivers; overlays never depend on it
    now: datetime | None = None
    clusters: tuple[str, ...] = ()  # restrict to these clusters (all when empty)
    progress: Progress = field(default_factory=Silent, compare=False)
    cache: Path | None = None  # directory of the render cache (`.mtlsc/cache`); None: off
    cache_writes: bool = True  # False: only read the cache (`check` changes no file at all)
    jobs: int = 1  # worker processes for rendering; 1: all in this process
    parallel_min: int = PARALLEL_MIN  # fewer gateways to render stay in this process
    stream_min: int = STREAM_MIN  # a sink gets the clusters of compiles this large (units)
    # Where the repository is: paths in policy files must stay inside it (confine.py).
    boundaries: Boundaries = field(default_factory=Boundaries)
    # Let go of what only `explain`, `posture` and `diff` read (the located trees of intents
    # and overrides, the placements, the posture) as soon as the compile is past them: the
    # result then has none of them. `mtlsc compile` and `check` (memory of large fleets).
    lean: bool = False
    # Gathers what a later delta compile needs (`compiler.delta.facts`), in the run that uses
    # the cache (`mtlsc compile` when it records the run).
    facts: Collector | None = field(default=None, compare=False)


@dataclass(slots=True)
class Result:
    """What one compile produced: the overlay file map and its diagnostics, plus what the
    writer, the lock and the commands reading the model (`explain`, `posture`, `diff`) need."""

    files: dict[str, bytes] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    policies: Policies | None = None
    # Layered specs of the gateways resolved in this run (a compile takes unchanged gateways
    # from the incremental record, without one); `validate_only` resolves every gateway.
    placements: list[Placement] = field(default_factory=list)
    model: Model | None = None
    materials: Materials | None = None  # holds private keys in memory only (materialize)
    pins: dict[LockKey, Pin] = field(default_factory=dict)  # the lock after this compile
    output_dirs: tuple[str, ...] = ()  # of the compiled clusters
    all_clusters: bool = True  # False when --cluster restricted the run: prune nothing else
    posture: tuple[ClusterPosture, ...] = ()  # the effective posture, computed once per run
    waivers: list[Waiver] = field(default_factory=list)  # every intent's guardrail waivers
    # Where each stage's diagnostics end (`diagnostics.stage_spans`) while compiling, and
    # then the stages each final diagnostic comes from (a delta compile with errors needs
    # what a compile stopping at an earlier stage reports).
    marks: list[int] = field(default_factory=list)
    stages: list[Span] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def _finish(result: Result, options: Options) -> Result:
    made = escalate(result.diagnostics, options.strict)
    result.diagnostics = sorted_diagnostics(made)
    spans = stage_spans(made, result.marks)
    result.stages = [spans[merge_key(d)] for d in result.diagnostics]
    if not result.ok:
        result.files = {}  # nothing is written when anything is wrong
    return result


def _selected_targets(policies: Policies, options: Options) -> list[Target]:
    chosen = sorted(policies.targets, key=lambda t: t.name)
    if options.clusters:
        chosen = [t for t in chosen if t.name in options.clusters]
    return chosen


def _unknown_selected(policies: Policies, options: Options) -> list[Diagnostic]:
    known = {t.name for t in policies.targets}
    return [error("UnknownCluster", f"--cluster {name!r} matches no ClusterTarget", None,
                  "known: " + (", ".join(sorted(known)) or "(none)"))
            for name in options.clusters if name not in known]


def compile_policies(texts: Mapping[str, str | bytes], open_source: SourceFactory | None,
                     store: SchemaStore, options: Options = Options(),
                     lock: Mapping[LockKey, Pin] | None = None,
                     sink: ClusterSink | None = None, stager: Stager | None = None) -> Result:
    """Compile; with `open_source=None` run offline (no certificates, no files): validate.

    With a `sink`, each cluster's files go to `sink(output_dir, files)` as soon as the cluster
    is done, and `result.files` keeps only the rest (the lock file), so peak memory holds one
    cluster's output rather than the fleet's. A later cluster may still fail: a sink must
    stage what it gets and commit only when the returned result is ok. The sink's `stager`
    lets worker processes write a cluster's files themselves (`fanout.Stager`); the sink then
    gets them as `Written` records (never with MTLSC_CROSSCHECK, which compares bytes)."""
    cache = EntryStore(options.cache, writable=options.cache_writes) if options.cache else None
    clean = CleanFiles(cache) if cache is not None else None
    # The record of resolved gateways serves a compile, not `validate`/`explain` (which
    # show the placements of every gateway).
    record = ResolveRecord(cache) if cache is not None and open_source is not None else None

    def run(memo: bool, into: ClusterSink | None) -> Result:
        return _compile(texts, open_source, store, options, lock, into, cache if memo else None,
                        clean if memo else None, record if memo else None,
                        stager if into is sink else None)

    result = crosscheck.run_both(run, sink) if cache is not None and crosscheck.enabled() \
        else run(True, sink)
    if result.ok:  # a failed compile leaves the cache as it was
        for memo in (clean, record):
            if memo is not None:
                memo.save()
    return result


def _compile(texts: Mapping[str, str | bytes], open_source: SourceFactory | None,
             store: SchemaStore, options: Options, lock: Mapping[LockKey, Pin] | None,
             sink: ClusterSink | None, cache: EntryStore | None,
             clean: CleanFiles | None, record: ResolveRecord | None,
             stager: Stager | None = None) -> Result:
    result = Result()
    policies, result.diagnostics = load_texts(texts, clean)
    result.policies = policies
    result.marks.append(len(result.diagnostics))  # LOAD_STAGE
    if not result.ok:
        return _finish(result, options)
    facts = options.facts if cache is not None else None
    if facts is not None:
        facts.policies(policies)
    result.diagnostics += check_references(policies)
    # Errors here stop the run before any certificate source opens a path (createDevPki
    # writes): sources are opened only when everything before fetching is ok.
    result.diagnostics += check_policies((d.root for d in policies.documents),
                                         options.boundaries)
    targets = _selected_targets(policies, options)
    result.diagnostics += _unknown_selected(policies, options)
    caps, problems = check_targets(targets, policies, store)
    result.diagnostics += problems
    result.marks.append(len(result.diagnostics))  # CHECK_STAGE
    if not result.ok:
        return _finish(result, options)
    rules, problems = load_rules(policies)
    result.waivers = load_waivers(policies)
    now = options.now or datetime.now(UTC)
    result.diagnostics += problems + check_waivers(result.waivers, rules, now.date())
    clusters, inputs, problems, result.placements = resolve_all(policies, targets, caps,
                                                                record)
    result.diagnostics += problems
    result.diagnostics += check_references_offline(clusters, policies.sources)
    result.marks.append(len(result.diagnostics))  # RESOLVE_STAGE
    meta = intent_locations(policies) if rules else {}  # before the trees may go
    if options.lean:
        _let_go(result, policies)
    result.model = Model(tuple(clusters))
    result.output_dirs = tuple(sorted({t.output_dir for t in targets}))
    result.all_clusters = not options.clusters
    if not result.ok:
        return _finish(result, options)
    materials = Materials()
    if open_source is not None:
        sources = {s.name: open_source(s) for s in policies.sources
                   if s.name in {t.certificate_source for t in targets}}
        materials, problems = fetch(clusters, sources)
        if facts is not None:
            facts.fetched(problems)
        result.materials = materials
        result.diagnostics += problems
        result.pins = _new_lock(lock or {}, sources, result.all_clusters)
        if not result.ok:
            result.diagnostics += verify(clusters, materials, now)
            return _finish(result, options)
    configs = {s.name: s for s in policies.sources}
    options.progress.begin(sum(len(c.gateways) for c in clusters))
    # Rendering needs only the resolved gateways and the CA bundles: it starts now (in the
    # workers of a large compile), while this process checks certificates and guardrails.
    # Units never depend on those checks; when they fail, the stream is closed unused.
    large = sum(len(c.gateways) for c in clusters) >= options.stream_min
    streamed = sink is not None and large and open_source is not None
    units = iter_units(clusters, materials, store, envoy=open_source is not None,
                       grant_versions=[reference_grant_version(store, c.target)
                                       for c in clusters],
                       cache=cache, inputs=inputs, jobs=options.jobs,
                       parallel_min=options.parallel_min,
                       progress=options.progress,
                       stager=stager if streamed and _apart(clusters) else None)
    try:
        if open_source is not None:
            result.diagnostics += verify(clusters, materials, now)
            if not result.ok:
                options.progress.end()
                return _finish(result, options)
        _guardrails(result, clusters, rules, meta, now,
                    materials if open_source is not None else None, keep=not options.lean)
        unsafe = _render_all(result, clusters, units, store, sink if large else None,
                             configs, materials, cache, envoy=open_source is not None,
                             facts=facts)
    finally:
        units.close()
    options.progress.end()
    if open_source is None:
        result.files = {}
    elif result.pins or lock:
        result.files[LOCK_FILE] = render_lock(result.pins)
    result.diagnostics += [error("UnsafeOutputPath", f"mtlsc bug: compiled file name {rel!r} "
                                 "is not a plain path inside its output directory", None,
                                 "please report this with the policy files")
                           for rel in [*unsafe,
                                       *check_output_paths(result.files, result.output_dirs)]]
    return _finish(result, options)


def _apart(clusters: Sequence[ClusterModel]) -> bool:
    """Whether every cluster has its own output directory, none inside another's (then each
    is one unit of the write, and workers may stage it)."""
    dirs = [c.target.output_dir for c in clusters]
    unique = set(dirs)
    return len(unique) == len(dirs) and all(
        d and not any("/".join(d.split("/")[:n]) in unique for n in range(1, d.count("/") + 1))
        for d in dirs)


def _render_all(result: Result, clusters: Sequence[ClusterModel], units: Iterable[list[Unit]],
                store: SchemaStore, sink: ClusterSink | None,
                configs: Mapping[str, SourceConfig], materials: Materials,
                cache: EntryStore | None, *, envoy: bool,
                facts: Collector | None = None) -> list[str]:
    """Assemble each cluster's overlay from its units, into `result.files` or the sink;
    returns the unsafe names among the files meant for the sink (never handed to it). Once
    the compile has an error, the sink gets nothing more (the caller will not commit)."""
    unsafe: list[str] = []
    for cluster, cluster_units in zip(clusters, units, strict=True):
        if facts is not None:
            facts.cluster(cluster, cluster_units)
        finish = grant_finisher(cluster, materials, store, envoy=envoy, cache=cache)
        files, problems = render_cluster(cluster, cluster_units, store, envoy=envoy,
                                         source=configs.get(cluster.target.certificate_source),
                                         pins=result.pins, finish=finish,
                                         emit=yaml_memo(cache),
                                         seen=None if facts is None else
                                         facts.kustomization(cluster.target.name))
        result.diagnostics += for_cluster(problems, cluster.target.name)
        if sink is None or not envoy:
            result.files.update(_in_memory(files))
            continue
        bad = check_output_paths(files, result.output_dirs)
        unsafe += bad
        if result.ok and not bad:
            sink(cluster.target.output_dir, files)
        del files, cluster_units  # before the next cluster is collected: one in memory
    return unsafe


def _let_go(result: Result, policies: Policies) -> None:
    """Drop the located trees of intents and overrides and the placements (`Options.lean`):
    everything after resolving reads the model. Guardrail documents, targets and sources
    stay (the guardrails and the run record read them)."""
    result.placements = []
    policies.intents, policies.overrides = [], []
    policies.documents = []


def _in_memory(files: Mapping[str, Content]) -> dict[str, bytes]:
    out = {rel: data for rel, data in files.items() if isinstance(data, bytes)}
    if len(out) != len(files):
        raise AssertionError("mtlsc bug: files written by workers without a sink")
    return out


def _guardrails(result: Result, clusters: Sequence[ClusterModel], rules: Sequence[Rule],
                meta: Mapping[str, Location], now: datetime, materials: Materials | None,
                *, keep: bool = True) -> None:
    """Compute the posture once and enforce the guardrails on it, every run (never cached:
    verdicts depend on rules, waivers and the clock). Without certificates (`validate`),
    rules that read them are skipped. `keep`: the posture stays in the result (without it
    and without rules, nothing reads the posture: it is not computed)."""
    assert result.policies is not None
    if not keep and not rules:
        return
    posture = compute_posture(clusters, materials)
    if keep:
        result.posture = posture
    if not rules:
        return
    views = build_views(posture, clusters, materials,
                        {s.name: s for s in result.policies.sources}, now)
    result.diagnostics += enforce(views, rules, result.waivers, meta, now.date(),
                                  certificates=materials is not None)


def validate_only(texts: Mapping[str, str | bytes], store: SchemaStore,
                  options: Options = Options()) -> Result:
    return compile_policies(texts, None, store, options)


def _new_lock(old: Mapping[LockKey, Pin], sources: Mapping[str, CertificateSource],
              complete: bool) -> dict[LockKey, Pin]:
    """This run's pins; a run restricted to some clusters keeps the other entries."""
    fresh = {(name, kind, ref): pin for name, source in sources.items()
             for (kind, ref), pin in source.pins().items()}
    kept = {} if complete else {k: v for k, v in old.items() if k not in fresh}
    return {**kept, **fresh}


def render_cluster(cluster: ClusterModel, units: Sequence[Unit], store: SchemaStore,
                   *, envoy: bool = True, source: SourceConfig | None = None,
                   pins: Mapping[LockKey, Pin] | None = None,
                   finish: Callable[[Rendered], Piece] | None = None,
                   emit: Callable[[Any], bytes] = to_yaml,
                   seen: Callable[[dict[str, Any], bytes], None] | None = None,
                   ) -> tuple[dict[str, Content], list[Diagnostic]]:
    """One cluster's overlay from its gateways' units (`compiler.fanout`): bytes, or what a
    worker wrote into the cluster's staging directory. `seen` gets the kustomization, as data
    and as emitted."""
    target = cluster.target
    extra = _external_secrets(cluster, source, pins or {}) \
        if envoy and isinstance(source, VaultSourceConfig) else []
    objects, problems, envoys = assemble(target, units, extra, store, finish)
    files = {f"{target.output_dir}/{name}": data for name, data in objects.items()}
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": sorted(objects)}
    if envoy and target.envoy.enabled:
        for name, data in envoys:
            files[f"{target.output_dir}/{name}"] = data
        generators = [_envoy_configmap(gw) for gw in cluster.gateways]
        if generators:
            kustomization["configMapGenerator"] = generators
    data = files[f"{target.output_dir}/kustomization.yaml"] = emit(kustomization)
    if seen is not None:
        seen(kustomization, data)
    return files, problems


def _external_secrets(cluster: ClusterModel, source: VaultSourceConfig,
                      pins: Mapping[LockKey, Pin]) -> list[Rendered]:
    """One ExternalSecret per server certificate when the cluster (or else its certificate
    source) asks for them."""
    choice = cluster.target.external_secrets
    config = ExternalSecrets(*choice) if isinstance(choice, tuple) else \
        source.external_secrets if choice is None else None
    if config is None:
        return []
    refs = {(lst.certificate.namespace, lst.certificate.name): lst.certificate
            for gw in cluster.gateways for lst in gw.listeners if lst.certificate}
    return [render_external_secret(ref, source.certificates[ref.name],
                                   pins.get((source.name, "certificates", ref.name)),
                                   config)
            for _, ref in sorted(refs.items()) if ref.name in source.certificates]


def _envoy_configmap(gw: Gateway) -> dict[str, Any]:
    """A kustomize-generated ConfigMap carrying the Envoy config; the name-hash suffix makes
    Argo CD / Flux roll Envoy when the config changes."""
    return {"name": f"envoy-{gw.name}", "namespace": gw.namespace,
            "files": [f"envoy.yaml={envoy_file(gw)}"],
            "options": {"labels": {"app.kubernetes.io/managed-by": "mtlsc"}}}
