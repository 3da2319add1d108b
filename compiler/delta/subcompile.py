"""Compile only the edited intents, in the context of the whole fleet (a delta compile).

The same stages as `pipeline._compile`, in the same order, over the files of the edited
intents (the intent and its overrides) plus every context file (ClusterTargets,
CertificateSources, Guardrails): load, references, path confinement, targets, waivers,
layering and resolving, the offline reference checks (against the namespaces the *whole*
cluster knows, from the base), fetching and checking the certificates these gateways use,
rendering and assembling their units, and the guardrails' verdicts on these gateways and their
ports. What looks across gateways is not recomputed here: `delta.run` proves from the base's
facts that the edit cannot have changed it, and a guardrail rule that reads other gateways
(`cluster.gateways`) stops the delta compile. Pure apart from the certificate sources it is
handed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING

from ..confine import Boundaries, check_policies
from ..diagnostics import (
    CHECK_STAGE,
    LOAD_STAGE,
    RESOLVE_STAGE,
    Diagnostic,
    for_cluster,
    has_errors,
)
from ..fetch import fetch, verify
from ..incremental import resolve_all
from ..k8s.validate import SchemaStore
from ..layering import check_references
from ..load import Policies, SourceConfig, load_texts
from ..model import ClusterModel
from ..refcheck import undefined_references, unknown_ca_namespaces
from ..render_units import Unit, assemble, render_unit
from ..secrets import CertificateSource
from ..target_checks import check_targets, reference_grant_version

if TYPE_CHECKING:
    from ..guardrails import Rule, Waiver


@dataclass(slots=True)
class Sub:
    """The edited intents' gateways on every cluster, their units and all diagnostics the
    stages above found for them (before sorting and merging)."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    policies: Policies | None = None
    clusters: list[ClusterModel] = field(default_factory=list)
    units: list[list[Unit]] = field(default_factory=list)  # per cluster, in gateway order
    stopped: str = ""  # why the delta cannot go on ("" when it can, or the edit `failed`)
    expires: list[date | None] = field(default_factory=list)  # the edited intents' waivers
    marks: list[int] = field(default_factory=list)  # where each stage's diagnostics end
    failed: int = 0  # the stage the edit's errors stop the compile after (0: none)


def compile_sub(texts: Mapping[str, str], open_source: Callable[[SourceConfig],
                                                                   CertificateSource],
                store: SchemaStore, known: Mapping[str, set[str]], now: datetime,
                boundaries: Boundaries) -> Sub:
    """`known`: per cluster, every namespace its gateways make known (the base's facts)."""
    sub = Sub()
    policies, sub.diagnostics = load_texts(texts)
    sub.policies = policies
    if _stage(sub, LOAD_STAGE):
        return sub
    sub.diagnostics += check_references(policies)
    sub.diagnostics += check_policies((d.root for d in policies.documents), boundaries)
    targets = sorted(policies.targets, key=lambda t: t.name)
    caps, problems = check_targets(targets, policies, store)
    sub.diagnostics += problems
    if _stage(sub, CHECK_STAGE):
        return sub
    found_rules = _rules(policies)
    if found_rules is None:
        return _stop(sub, "a guardrail rule reads every gateway of a cluster")
    every_rule, rules = found_rules
    waivers = _waivers(policies, every_rule, now, sub)
    clusters, _, problems, _ = resolve_all(policies, targets, caps, None)
    sub.diagnostics += problems
    sub.clusters = clusters
    sources = {s.name: s for s in policies.sources}
    for cluster in clusters:
        found = undefined_references(cluster, sources) + unknown_ca_namespaces(
            cluster, {*known.get(cluster.target.name, ()), *cluster.target.namespaces})
        sub.diagnostics += [d.in_clusters(cluster.target.name) for d in found]
    if _stage(sub, RESOLVE_STAGE):
        return sub
    used = {t.certificate_source for t in targets}
    opened = {s.name: open_source(s) for s in policies.sources if s.name in used}
    materials, problems = fetch(clusters, opened)
    if problems:
        return _stop(sub, "fetching certificates reported problems")
    sub.diagnostics += verify(clusters, materials, now)
    for cluster in clusters:
        target = cluster.target
        ca_pems = materials.ca_pems_for(target.certificate_source)
        grants = reference_grant_version(store, target)
        units = [render_unit(gw, target, ca_pems, store, envoy=True, grant_version=grants)
                 for gw in cluster.gateways]
        _, problems, _ = assemble(target, units, [], store)
        sub.diagnostics += for_cluster(problems, target.name)
        sub.units.append(units)
    if rules:  # the edited gateways' verdicts; a cluster's own verdicts stay the base's
        from ..guardrails import build_views, enforce, intent_locations
        from ..posture import compute_posture

        views = build_views(compute_posture(clusters, materials), clusters, materials,
                            sources, now)
        sub.diagnostics += enforce(views, [r for r in rules if r.scope != "cluster"],
                                   waivers, intent_locations(policies), now.date(),
                                   certificates=True)
    return sub


def _rules(policies: Policies) -> tuple[list[Rule], list[Rule]] | None:
    """Every guardrail rule (waivers name them) and those that compile (the base reported
    the others); None when one reads other gateways than the one it judges. No guardrail:
    nothing is imported."""
    if not policies.guardrails:
        return [], []
    from ..guardrails import load_rules, reads_one_gateway

    every = load_rules(policies)[0]
    rules = [r for r in every if r.program is not None]
    return (every, rules) if all(reads_one_gateway(r) for r in rules) else None


def _waivers(policies: Policies, rules: Sequence[Rule], now: datetime,
             sub: Sub) -> list[Waiver]:
    """The edited intents' waivers, checked as the full compile checks them; their expiry
    dates go to `sub.expires` (the run record's horizon). No waiver: nothing is imported."""
    if all(i.root.find(("spec",)).get("guardrailWaivers") is None for i in policies.intents):
        return []
    from ..guardrails import check_waivers, load_waivers

    waivers = load_waivers(policies)
    sub.diagnostics += check_waivers(waivers, rules, now.date())
    sub.expires = [w.expires for w in waivers]
    return waivers


def _stage(sub: Sub, stage: int) -> bool:
    """Mark the end of `stage` (as `pipeline._compile` does); True when its errors stop the
    compile there (`sub.failed`)."""
    sub.marks.append(len(sub.diagnostics))
    if has_errors(sub.diagnostics):
        sub.failed = stage
    return sub.failed != 0


def _stop(sub: Sub, why: str) -> Sub:
    sub.stopped = why
    return sub
