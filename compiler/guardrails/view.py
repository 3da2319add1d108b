"""The typed view guardrail rules read: cluster → gateway → port, as plain CEL values.

Built from the effective posture (compiler/posture.py, computed once per run) plus what the
posture does not carry: the cluster's environment and labels, the gateway's listeners, each
trust anchor's issuer and source path, and the server certificates. docs/guardrails.md
documents every field; `samples` is the same shape filled with typed sample values, which is
how rules are type-checked before any cluster is compiled. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..anchors import Anchor as Facts
from ..anchors import bundle_anchors
from ..fetch import Materials
from ..load import LocalSourceConfig, SourceConfig
from ..model import ClusterModel, Gateway, PortValidation, Target
from ..posture import FALLBACK, FALLBACK_NO_CA, ClusterPosture, GatewayPosture, PortPosture

# Variables each scope's expression may use.
SCOPES: dict[str, frozenset[str]] = {
    "cluster": frozenset({"cluster"}),
    "gateway": frozenset({"cluster", "gateway"}),
    "port": frozenset({"cluster", "gateway", "port"}),
}
# Fields that exist only once certificates are fetched: `validate` skips rules that read them.
CERTIFICATE_FIELDS = frozenset({"anchors", "certificates"})


@dataclass(frozen=True, slots=True)
class PortView:
    """One port in the typed view: its model and CEL value (`port` in rules)."""

    model: PortValidation
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class GatewayView:
    """One gateway in the typed view: its model, CEL value (`gateway` in rules) and ports."""

    model: Gateway
    value: dict[str, Any]
    ports: tuple[PortView, ...]


@dataclass(frozen=True, slots=True)
class ClusterView:
    """One cluster in the typed view: its target, CEL value (`cluster` in rules) and gateways."""

    target: Target
    value: dict[str, Any]
    gateways: tuple[GatewayView, ...]
    # False when a listener's server certificate was not fetched (`check --offline`: they live
    # in Vault only): rules reading `certificates` are skipped for this cluster.
    server_certificates_complete: bool = True


def _days_left(not_after: datetime, now: datetime) -> int:
    return math.floor((not_after - now).total_seconds() / 86400)


def _where(source: SourceConfig | None, name: str, ca: bool) -> dict[str, str]:
    """Where a certificate or CA bundle is read from: kind (local, kv1, kv2, pki), mount and
    path as the CertificateSource names them."""
    if source is None:
        return {"sourceKind": "", "sourceMount": "", "sourcePath": ""}
    if isinstance(source, LocalSourceConfig):
        table = source.ca_bundles if ca else {k: v[0] for k, v in source.certificates.items()}
        file = table.get(name)
        path = f"{source.directory.rstrip('/')}/{file}" if file else ""
        return {"sourceKind": "local", "sourceMount": "", "sourcePath": path}
    ref = (source.ca_bundles if ca else source.certificates).get(name)
    if ref is None:
        return {"sourceKind": "", "sourceMount": "", "sourcePath": ""}
    return {"sourceKind": ref.engine, "sourceMount": ref.mount,
            "sourcePath": f"{ref.mount}/{ref.path}"}


def _facts(facts: Facts, now: datetime) -> dict[str, Any]:
    return {"subject": facts.subject, "issuer": facts.issuer, "fingerprint": facts.fingerprint,
            "notAfter": f"{facts.not_after:%Y-%m-%dT%H:%M:%SZ}",
            "daysLeft": _days_left(facts.not_after, now)}


class _Inputs:
    """What one cluster's view is built from."""

    def __init__(self, target: Target, materials: Materials | None,
                 source: SourceConfig | None, now: datetime):
        self.target, self.source, self.now = target, source, now
        src = target.certificate_source
        self.ca_pems = materials.ca_pems_for(src) if materials else {}
        self.servers = {name: cert for (s, name), cert in
                        (materials.server_certs.items() if materials else ()) if s == src}
        self.issuers: dict[str, Facts] = {f.fingerprint: f for pem in self.ca_pems.values()
                                          for f in bundle_anchors(pem)}
        # Each server certificate's leaf, parsed once: a fleet's listeners share a handful of
        # certificates (parsing one per listener was most of a 10,000-gateway compile's view).
        self.leaves: dict[str, Facts | None] = {}
        self.complete = True

    def leaf(self, name: str) -> Facts | None:
        if name not in self.leaves:
            found = bundle_anchors(self.servers[name].chain_pem)
            self.leaves[name] = found[0] if found else None
        return self.leaves[name]

    def certificate(self, gw: Gateway, listener: str) -> dict[str, Any] | None:
        lst = next(x for x in gw.listeners if x.key == listener)
        ref = lst.certificate
        if ref is None:
            return None
        if ref.name not in self.servers:
            self.complete = False
            return None
        leaf = self.leaf(ref.name)
        if leaf is None:
            return None
        return {"name": ref.name, "namespace": ref.namespace, "listener": listener,
                **_facts(leaf, self.now), **_where(self.source, ref.name, ca=False)}


def _mode(enforced: str) -> str:
    return FALLBACK if enforced == FALLBACK_NO_CA else enforced


def _port(p: PortPosture, gw: Gateway, inputs: _Inputs) -> dict[str, Any]:
    anchors = []
    for a in p.anchors:
        facts = inputs.issuers.get(a.fingerprint)
        bundle = a.bundle.split("/", 1)[1]
        anchors.append({"bundle": a.bundle, "subject": a.subject, "fingerprint": a.fingerprint,
                        "issuer": facts.issuer if facts else "", "notAfter": a.not_after,
                        "daysLeft": _days_left(facts.not_after, inputs.now) if facts else 0,
                        **_where(inputs.source, bundle, ca=True)})
    certs = [c for c in (inputs.certificate(gw, name) for name in p.listeners) if c]
    return {
        "number": p.port, "listeners": list(p.listeners), "source": p.source,
        "mode": _mode(p.enforced_mode), "intendedMode": p.intended_mode,
        "caUsed": p.enforced_mode not in (FALLBACK_NO_CA, "none"),
        "anchors": anchors,
        "restrictions": [{"kind": r.kind, "values": list(r.values), "enforced": r.enforced}
                         for r in p.restrictions],
        "conditions": [{"scope": c.scope, "type": c.type, "status": c.status,
                        "reason": c.reason} for c in p.conditions],
        "notes": list(p.notes), "certificates": certs}


def _gateway(g: GatewayPosture, gw: Gateway, inputs: _Inputs) -> GatewayView:
    ports = tuple(PortView(m, _port(p, gw, inputs)) for p, m in zip(g.ports, gw.ports,
                                                                      strict=True))
    listeners = [{"name": lst.key, "port": lst.port, "protocol": lst.protocol.value,
                  "hostname": lst.hostname or "", "listenerSet": lst.listener_set or "",
                  "certificate": lst.certificate.name if lst.certificate else ""}
                 for lst in gw.listeners]
    certs = [c for c in (inputs.certificate(gw, lst.key) for lst in gw.listeners) if c]
    value = {"name": g.name, "namespace": g.namespace, "key": g.key, "className": g.class_name,
             "implementation": g.implementation, "implementationVersion": g.version or "",
             "listeners": listeners, "certificates": certs, "ports": [p.value for p in ports]}
    return GatewayView(gw, value, ports)


def build_views(postures: Sequence[ClusterPosture], clusters: Sequence[ClusterModel],
                materials: Materials | None, sources: Mapping[str, SourceConfig],
                now: datetime) -> tuple[ClusterView, ...]:
    """One view per compiled cluster, from its posture (not recomputed) and its model."""
    models = {c.target.name: c for c in clusters}
    out = []
    for posture in postures:
        cluster = models[posture.name]
        target = cluster.target
        inputs = _Inputs(target, materials, sources.get(target.certificate_source), now)
        by_key = {gw.key: gw for gw in cluster.gateways}
        gateways = tuple(_gateway(g, by_key[g.key], inputs) for g in posture.gateways)
        value = {"name": target.name, "environment": target.environment or "",
                 "labels": dict(target.labels), "gateways": [g.value for g in gateways]}
        out.append(ClusterView(target, value, gateways, inputs.complete))
    return tuple(out)


class _AnyLabels(dict[str, str]):
    """Sample labels: every key is present (its value a string), so `cluster.labels['x']`
    type-checks without knowing which labels clusters have."""

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)

    def __missing__(self, key: str) -> str:
        return "sample"


def _sample_tree(mode: str, environment: str) -> dict[str, Any]:
    where = {"sourceKind": "pki", "sourceMount": "pki", "sourcePath": "pki/issuer/default"}
    facts = {"subject": "CN=sample", "issuer": "CN=sample", "fingerprint": "00" * 32,
             "notAfter": "2030-01-01T00:00:00Z", "daysLeft": 30}
    cert = {"name": "sample", "namespace": "sample", "listener": "https", **facts, **where}
    port = {"number": 443, "listeners": ["https"], "source": "default", "mode": mode,
            "intendedMode": mode, "caUsed": True,
            "anchors": [{"bundle": "sample/sample", **facts, **where}],
            "restrictions": [{"kind": "subjectAltName", "values": ["a"], "enforced": "yes"}],
            "conditions": [{"scope": "Gateway", "type": "Accepted", "status": "True",
                            "reason": "Accepted"}],
            "notes": ["sample"], "certificates": [cert]}
    gateway = {"name": "sample", "namespace": "sample", "key": "sample/sample",
               "className": "sample",
               "implementation": "envoy-gateway", "implementationVersion": "",
               "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                              "hostname": "", "listenerSet": "", "certificate": "sample"}],
               "certificates": [cert], "ports": [port]}
    cluster = {"name": "sample", "environment": environment, "labels": _AnyLabels(),
               "gateways": [gateway]}
    return {"cluster": cluster, "gateway": gateway, "port": port}


def samples(scope: str) -> list[dict[str, Any]]:
    """Typed sample environments for `scope` (two, so that common branches flip)."""
    wanted = SCOPES[scope]
    return [{k: v for k, v in _sample_tree(mode, env).items() if k in wanted}
            for mode, env in (("AllowValidOnly", "prod"), ("AllowInsecureFallback", ""))]
