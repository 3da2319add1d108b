"""The compiler as one call: load → layer → resolve → fetch → verify → render → validate → emit.

`compile_policies` takes policy texts, a way to open certificate sources and the Kubernetes
schemas, and returns the complete overlay file map plus diagnostics. It writes nothing; only
`write.py` touches `overlays/` and only the CLI prints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .confine import Boundaries, check_output_paths, check_policies
from .consistency import differences
from .diagnostics import (
    Diagnostic,
    error,
    escalate,
    for_cluster,
    has_errors,
    sorted_diagnostics,
)
from .emit import to_yaml
from .fetch import Materials, fetch, verify
from .guardrails import (
    Rule,
    Waiver,
    build_views,
    check_waivers,
    enforce,
    load_rules,
    load_waivers,
)
from .k8s.validate import SchemaStore, shipped_schema_root, validate_object
from .layering import Placement, caused_by_overrides, check_references, place, targets_of
from .load import Policies, SourceConfig, load_texts
from .lock import LOCK_FILE, LockKey, Pin, render_lock
from .model import ClusterModel, Gateway, Model, Target
from .posture import ClusterPosture, compute_posture
from .precedence import Capabilities
from .progress import Progress, Silent
from .refcheck import check_references_offline
from .render.envoy import ca_files, envoy_file, render_envoy
from .render.external_secrets import render_external_secret
from .render.gateway_api import Rendered, render_gateway_objects
from .resolve import resolve
from .secrets import CertificateSource
from .secrets.vault_config import ExternalSecrets, VaultSourceConfig

SourceFactory = Callable[[SourceConfig], CertificateSource]


@dataclass(frozen=True, slots=True)
class Options:
    strict: bool = False
    # for certificate expiry checks and guardrail waivers; overlays never depend on it
    now: datetime | None = None
    clusters: tuple[str, ...] = ()  # restrict to these clusters (all when empty)
    progress: Progress = field(default_factory=Silent, compare=False)
    # Where the repository is: paths in policy files must stay inside it (confine.py).
    boundaries: Boundaries = field(default_factory=Boundaries)


@dataclass(slots=True)
class Result:
    files: dict[str, bytes] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    policies: Policies | None = None
    placements: list[Placement] = field(default_factory=list)
    model: Model | None = None
    materials: Materials | None = None  # holds private keys in memory only (materialize)
    pins: dict[LockKey, Pin] = field(default_factory=dict)  # the lock after this compile
    output_dirs: tuple[str, ...] = ()  # of the compiled clusters
    all_clusters: bool = True  # False when --cluster restricted the run: prune nothing else
    posture: tuple[ClusterPosture, ...] = ()  # the effective posture, computed once per run
    waivers: list[Waiver] = field(default_factory=list)  # every intent's guardrail waivers

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def _finish(result: Result, options: Options) -> Result:
    result.diagnostics = sorted_diagnostics(escalate(result.diagnostics, options.strict))
    if not result.ok:
        result.files = {}  # nothing is written when anything is wrong
    return result


def capabilities(store: SchemaStore, target: Target) -> Capabilities | None:
    schema = store.get(target.gateway_api_version, target.channel,
                       "gateway.networking.k8s.io/v1", "Gateway")
    if schema is None:
        return None
    spec = schema.document["properties"]["spec"]["properties"]
    frontend = spec.get("tls", {}).get("properties", {}).get("frontend")
    if frontend is None:
        return Capabilities(frontend_tls=False, max_ca_refs=None)
    refs = frontend["properties"]["default"]["properties"]["validation"]["properties"][
        "caCertificateRefs"]
    return Capabilities(frontend_tls=True, max_ca_refs=refs.get("maxItems"))


def reference_grant_version(store: SchemaStore, target: Target) -> str:
    """v1 where the cluster's Gateway API serves ReferenceGrant v1 (v1.5 and later), else
    v1beta1."""
    served = store.get(target.gateway_api_version, target.channel,
                       "gateway.networking.k8s.io/v1", "ReferenceGrant")
    return "v1" if served is not None else "v1beta1"


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


def _check_targets(targets: Sequence[Target], policies: Policies,
                   store: SchemaStore) -> tuple[dict[str, Capabilities], list[Diagnostic]]:
    sources = {s.name for s in policies.sources}
    caps: dict[str, Capabilities] = {}
    out: list[Diagnostic] = []
    for target in targets:
        found_here: list[Diagnostic] = []
        if target.certificate_source not in sources:
            found_here.append(error(
                "UnknownCertificateSource", f"ClusterTarget {target.name!r} uses "
                f"unknown CertificateSource {target.certificate_source!r}",
                target.source_location, "known: " + (", ".join(sorted(sources)) or "(none)")))
        found = capabilities(store, target)
        if found is None:
            found_here.append(error(
                "UnsupportedGatewayAPIVersion", f"no Gateway API schema for "
                f"{target.gateway_api_version}/{target.channel}", target.api_location,
                "use one of: " + ", ".join(f"{v}/{c}" for v, c in store.available()) +
                "; or add it with `mtlsc schemas import <CRD files>`"))
        else:
            caps[target.name] = found
        out += for_cluster(found_here, target.name)
    return caps, out


def _resolve_problems(placement: Placement, caps: Capabilities) -> list[Diagnostic]:
    return resolve(placement, caps)[1]


def _resolve_all(policies: Policies, targets: Sequence[Target],
                 caps: Mapping[str, Capabilities], result: Result) -> list[ClusterModel]:
    clusters: list[ClusterModel] = []
    for target in targets:
        gateways: list[Gateway] = []
        check = functools.partial(_resolve_problems, caps=caps[target.name])
        for intent in sorted(policies.intents, key=lambda i: i.key):
            if target not in targets_of(intent, targets):
                continue
            placement, problems = place(intent, target, policies.overrides)
            gateway, found = resolve(placement, caps[target.name])
            problems += found
            if len(placement.layers) > 1 and problems:
                problems = caused_by_overrides(problems, placement, policies.overrides, check)
            result.diagnostics += for_cluster(problems, target.name)
            result.placements.append(placement)
            gateways.append(gateway)
        clusters.append(ClusterModel(target, tuple(gateways)))
    return clusters


def compile_policies(texts: Mapping[str, str | bytes], open_source: SourceFactory | None,
                     store: SchemaStore, options: Options = Options(),
                     lock: Mapping[LockKey, Pin] | None = None) -> Result:
    """Compile; with `open_source=None` run offline (no certificates, no files): validate."""
    result = Result()
    policies, result.diagnostics = load_texts(texts)
    result.policies = policies
    if not result.ok:
        return _finish(result, options)
    result.diagnostics += check_references(policies)
    # Errors here stop the run before any certificate source opens a path (createDevPki
    # writes): sources are opened only when everything before fetching is ok.
    result.diagnostics += check_policies((d.root for d in policies.documents),
                                         options.boundaries)
    targets = _selected_targets(policies, options)
    result.diagnostics += _unknown_selected(policies, options)
    caps, problems = _check_targets(targets, policies, store)
    result.diagnostics += problems
    if not result.ok:
        return _finish(result, options)
    rules, problems = load_rules(policies)
    result.waivers = load_waivers(policies)
    now = options.now or datetime.now(UTC)
    result.diagnostics += problems + check_waivers(result.waivers, rules, now.date())
    clusters = _resolve_all(policies, targets, caps, result)
    result.diagnostics += check_references_offline(clusters, policies.sources)
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
        result.materials = materials
        result.diagnostics += problems
        result.pins = _new_lock(lock or {}, sources, result.all_clusters)
        result.diagnostics += verify(clusters, materials, now)
        if not result.ok:
            return _finish(result, options)
    _guardrails(result, clusters, rules, now, materials if open_source is not None else None)
    configs = {s.name: s for s in policies.sources}
    options.progress.begin(sum(len(c.gateways) for c in clusters))
    for cluster in clusters:
        files, problems = render_cluster(cluster, materials, store,
                                         envoy=open_source is not None,
                                         source=configs.get(cluster.target.certificate_source),
                                         pins=result.pins, progress=options.progress)
        result.files.update(files)
        result.diagnostics += for_cluster(problems, cluster.target.name)
    options.progress.end()
    if open_source is None:
        result.files = {}
    elif result.pins or lock:
        result.files[LOCK_FILE] = render_lock(result.pins)
    result.diagnostics += [error("UnsafeOutputPath", f"mtlsc bug: compiled file name {rel!r} "
                                 "is not a plain path inside its output directory", None,
                                 "please report this with the policy files")
                           for rel in check_output_paths(result.files, result.output_dirs)]
    return _finish(result, options)


def _guardrails(result: Result, clusters: Sequence[ClusterModel], rules: Sequence[Rule],
                now: datetime, materials: Materials | None) -> None:
    """Compute the posture once and enforce the guardrails on it, every run (never cached:
    verdicts depend on rules, waivers and the clock). Without certificates (`validate`),
    rules that read them are skipped."""
    assert result.policies is not None
    result.posture = compute_posture(clusters, materials)
    if not rules:
        return
    views = build_views(result.posture, clusters, materials,
                        {s.name: s for s in result.policies.sources}, now)
    result.diagnostics += enforce(views, rules, result.waivers, result.policies, now.date(),
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


def _merge_objects(rendered: Sequence[Rendered]) -> tuple[list[Rendered], list[Diagnostic]]:
    """One object per identity: identical duplicates collapse, ReferenceGrants unite."""
    merged: dict[tuple[str, str, str], Rendered] = {}
    problems: list[Diagnostic] = []
    for item in rendered:
        first = merged.setdefault(item.identity, item)
        if first is item or first.obj == item.obj:
            continue
        if item.identity[0] == "ReferenceGrant":
            to = first.obj["spec"]["to"] + item.obj["spec"]["to"]
            first.obj["spec"]["to"] = sorted({tuple(sorted(t.items())): t for t in to}.values(),
                                             key=lambda t: (t["kind"], t["name"]))
            continue
        kind, ns, name = item.identity
        problems.append(error("ObjectConflict", f"two gateways emit different {kind} "
                              f"{ns}/{name} (the other comes from {first.locate(())})",
                              item.locate(()), "give one of them another name"))
    return [merged[k] for k in sorted(merged)], problems


def _file_name(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{obj['kind'].lower()}-{meta['name']}.yaml"


def render_cluster(cluster: ClusterModel, materials: Materials, store: SchemaStore,
                   *, envoy: bool = True, source: SourceConfig | None = None,
                   pins: Mapping[LockKey, Pin] | None = None,
                   progress: Progress | None = None,
                   ) -> tuple[dict[str, bytes], list[Diagnostic]]:
    target = cluster.target
    ca_pems = materials.ca_pems_for(target.certificate_source)
    rendered: list[Rendered] = []
    grants = reference_grant_version(store, target)
    for gw in cluster.gateways:
        rendered += render_gateway_objects(gw, ca_pems, grants)
        if progress is not None:
            progress.step(f"{target.name} {gw.key}")
    if envoy and isinstance(source, VaultSourceConfig):
        rendered += _external_secrets(cluster, source, pins or {})
    objects, problems = _merge_objects(rendered)
    for item in objects:
        problems += _validate(item, target, store)
    files = {f"{target.output_dir}/{_file_name(r.obj)}": to_yaml(r.obj) for r in objects}
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": sorted(_file_name(r.obj) for r in objects)}
    if envoy and target.envoy.enabled:
        generators = []
        configmaps = {(r.identity[1], r.identity[2]): r.obj["data"]["ca.crt"].encode("ascii")
                      for r in objects if r.identity[0] == "ConfigMap"}
        gateways = {r.identity[1:]: r for r in objects if r.identity[0] == "Gateway"}
        sets = {r.identity[1:]: r.obj for r in objects if r.identity[0] == "ListenerSet"}
        for gw in cluster.gateways:
            bootstrap = render_envoy(gw, target.name, ca_pems, target.envoy)
            files[f"{target.output_dir}/{envoy_file(gw)}"] = to_yaml(bootstrap)
            generators.append(_envoy_configmap(gw))
            attached = [sets[(ls.namespace, ls.name)] for ls in gw.listener_sets
                        if (ls.namespace, ls.name) in sets]
            problems += _consistency(gateways[(gw.namespace, gw.name)], bootstrap,
                                     configmaps, ca_files(gw, ca_pems, target.envoy), attached)
        if generators:
            kustomization["configMapGenerator"] = generators
    files[f"{target.output_dir}/kustomization.yaml"] = to_yaml(kustomization)
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


def _consistency(gateway: Rendered, bootstrap: dict[str, Any],
                 configmaps: dict[tuple[str, str], bytes],
                 files: dict[str, bytes],
                 listener_sets: Sequence[dict[str, Any]] = ()) -> list[Diagnostic]:
    """Self-check: the emitted Gateway and Envoy config must enforce the same validation."""
    return [error("InternalInconsistency", f"mtlsc bug: Gateway and Envoy config of "
                  f"{gateway.identity[1]}/{gateway.identity[2]} disagree: {problem}",
                  gateway.locate(()), "please report this with the intent file")
            for problem in differences(gateway.obj, bootstrap, configmaps, files,
                                       listener_sets)]


def _envoy_configmap(gw: Gateway) -> dict[str, Any]:
    """A kustomize-generated ConfigMap carrying the Envoy config; the name-hash suffix makes
    Argo CD / Flux roll Envoy when the config changes."""
    return {"name": f"envoy-{gw.name}", "namespace": gw.namespace,
            "files": [f"envoy.yaml={envoy_file(gw)}"],
            "options": {"labels": {"app.kubernetes.io/managed-by": "mtlsc"}}}


# Kinds whose CRDs mtlsc does not ship: their shape is fixed by the renderer and covered by
# golden tests (docs/vault.md).
UNVALIDATED_KINDS = frozenset({"ExternalSecret"})


def _validate(item: Rendered, target: Target, store: SchemaStore) -> list[Diagnostic]:
    kind, ns, name = item.identity
    if kind in UNVALIDATED_KINDS:
        return []
    schema = store.get(target.gateway_api_version, target.channel, item.obj["apiVersion"], kind)
    if schema is None:
        return [error("UnsupportedGatewayAPIVersion", f"no schema for {item.obj['apiVersion']} "
                      f"{kind} in Gateway API {target.gateway_api_version}/{target.channel}",
                      item.locate(()), "import the cluster's CRDs with `mtlsc schemas import`")]
    out = []
    for problem in validate_object(schema, item.obj):
        where = ".".join(str(p) for p in problem.path) or "(object)"
        out.append(error(problem.code, f"emitted {kind} {ns}/{name} for cluster {target.name!r} "
                         f"is rejected by the Gateway API {target.gateway_api_version}/"
                         f"{target.channel} schema at {where}: {problem.message}",
                         item.locate(problem.path),
                         "fix the intent line shown; the API server would refuse this object"))
    return out


def schema_roots(root: Path) -> list[Path]:
    """The repository's own schemas/ first (user-imported CRDs), then the shipped ones."""
    shipped = shipped_schema_root()
    local = root / "schemas"
    roots = [local] if local.is_dir() else []
    if shipped is not None and not any(r.resolve() == shipped.resolve() for r in roots):
        roots.append(shipped)
    return roots
