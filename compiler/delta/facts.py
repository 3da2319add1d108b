"""What an edit of one intent can change outside its own gateways, recorded by a compile.

A delta compile (`compiler.delta`) recomputes only the gateways of the intents whose files
changed and takes everything else from the previous compile. That is only sound while the
edit cannot reach anything the previous compile computed *across* gateways, so a recorded
compile keeps, per intent and cluster, exactly what those cross-gateway steps read of it:

- the files its gateway emits (the cluster's kustomization lists every object file; an
  object emitted by two gateways is written once), and whether any has a problem;
- a digest of its ReferenceGrant contributions (grants are merged per namespace);
- the namespaces it makes known (`refcheck.known_namespaces`: a CA bundle in a namespace no
  gateway uses is reported on every gateway that reads it);
- the certificate and CA bundle names it references (what is fetched and checked, the lock's
  pins, ExternalSecrets);
- its Envoy config's file.

Per cluster it keeps the objects emitted by more than one gateway (with their digest) and the
kustomization (as data, with the digest of its bytes: an edit that adds or removes an object
file lists the cluster's files anew), and for the whole run which files hold which
documents. A delta compile compares the old facts of an edited intent with the new ones and
falls back to the full compile when any that other gateways see differs
(docs/scale.md#editing-one-intent). Pure, apart from `Collector` gathering them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..load import Policies
    from ..model import ClusterModel, Gateway
    from ..render_units import Unit

Facts = dict[str, Any]  # one intent on one cluster (JSON data)


def unit_facts(gw: Gateway, unit: Unit) -> Facts:
    """What the cross-gateway steps read of one gateway's unit on one cluster."""
    from ..refcheck import gateway_namespaces, gateway_uses

    grants = sorted([list(p.identity), p.rendered.obj,
                     sorted([repr(path), repr(loc)] for path, loc in p.rendered.sources.items())]
                    for p in unit.pieces if p.rendered is not None)
    text = json.dumps(grants, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "files": sorted(p.file for p in unit.pieces if p.rendered is None),
        "problems": any(p.problems for p in unit.pieces if p.rendered is None),
        "grants": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if grants else "",
        "envoy": unit.envoy[0] if unit.envoy is not None else None,
        "ns": sorted(gateway_namespaces(gw)),
        "refs": sorted({(section, ref.namespace, ref.name)
                        for section, ref in gateway_uses(gw)}),
    }


def shared_objects(units: Sequence[Unit]) -> dict[str, list[Any]]:
    """The object files more than one of a cluster's units emit: file -> [count, digest]."""
    seen: dict[str, list[Any]] = {}
    for unit in units:
        for p in unit.pieces:
            if p.rendered is None:
                found = seen.setdefault(p.file, [0, p.digest])
                found[0] += 1
    return {file: found for file, found in seen.items() if found[0] > 1}


def file_roles(policies: Policies) -> dict[str, str]:
    """Per policy file: `intent <key>` when it holds exactly that intent and nothing else,
    `override <key>` when it holds only overrides of that intent, else `context` (targets,
    sources, guardrails, a mix, or no document at all)."""
    kinds: dict[str, set[str]] = {file: set() for file in policies.file_digests}
    for intent in policies.intents:
        kinds.setdefault(intent.root.loc.file, set()).add(f"intent {intent.key}")
    counts: dict[str, int] = {}
    for intent in policies.intents:
        counts[intent.root.loc.file] = counts.get(intent.root.loc.file, 0) + 1
    for doc in policies.overrides:
        kinds.setdefault(doc.root.loc.file, set()).add(f"override {doc.gateway_key}")
    for target in policies.targets:
        kinds.setdefault(target.origin.location.file, set()).add("context")
    for source in policies.sources:
        kinds.setdefault(source.origin.location.file, set()).add("context")
    for root in policies.guardrails:
        kinds.setdefault(root.loc.file, set()).add("context")
    return {file: next(iter(found)) if len(found) == 1 and counts.get(file, 0) <= 1 and
            "context" not in found else "context" for file, found in kinds.items()}


class Collector:
    """Gathers the facts of one compile (`pipeline.Options.facts`); read by the run record."""

    def __init__(self) -> None:
        self.roles: dict[str, str] = {}
        self.guardrails = False
        self.fetch_problems = False
        self.clusters: dict[str, dict[str, Any]] = {}  # cluster name -> see `cluster`
        # cluster name -> (SHA-256 of the kustomization's bytes, the kustomization as data)
        self.kustomizations: dict[str, tuple[str, dict[str, Any]]] = {}
        self.complete = False

    def policies(self, policies: Policies) -> None:
        self.roles = file_roles(policies)
        self.guardrails = bool(policies.guardrails)

    def fetched(self, problems: Sequence[object]) -> None:
        self.fetch_problems = self.fetch_problems or bool(problems)

    def cluster(self, cluster: ClusterModel, units: Sequence[Unit]) -> None:
        if len(units) != len(cluster.gateways):
            return
        self.clusters[cluster.target.name] = {
            "dir": cluster.target.output_dir,
            "gateways": {gw.key: unit_facts(gw, unit)
                         for gw, unit in zip(cluster.gateways, units, strict=True)},
            "shared": shared_objects(units),
        }

    def kustomization(self, name: str) -> Callable[[dict[str, Any], bytes], None]:
        """What `pipeline.render_cluster` calls with cluster `name`'s kustomization."""
        from ..manifest import digest

        def seen(value: dict[str, Any], data: bytes) -> None:
            self.kustomizations[name] = (digest(data), value)
        return seen
