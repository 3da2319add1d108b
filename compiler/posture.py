"""The effective mTLS posture: per cluster → gateway → port, what the implementation enforces.

Computed once from the resolved model, the certificate materials and the implementation
profiles, as plain frozen data; `mtlsc posture` prints it (posture_render.py), `mtlsc diff`
compares two of them (`compare`), and later consumers (guardrails) read the same values.
Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from .fetch import Materials
from .model import ClusterModel, Gateway, ImplementationRef, Mode, PortValidation, Validation
from .profiles import Profile, load_profile
from .render.client_traffic_policy import CTP_KIND, policy_name, restricted_listeners

# Enforced modes, weakest first (the order `compare` uses).
NONE = "none"
FALLBACK_NO_CA = "AllowInsecureFallback (no CA: nothing validated)"
FALLBACK = "AllowInsecureFallback"
VALID_ONLY = "AllowValidOnly"
STRENGTH = {NONE: 0, FALLBACK_NO_CA: 1, FALLBACK: 2, VALID_ONLY: 3}


@dataclass(frozen=True, slots=True)
class Anchor:
    """A trust anchor: one CA certificate of a CA bundle a port validates clients against."""

    bundle: str  # namespace/name of the CA bundle ConfigMap
    subject: str
    fingerprint: str  # SHA-256 of the DER certificate, lowercase hex
    not_after: str  # ISO 8601, UTC


@dataclass(frozen=True, slots=True)
class Restriction:
    """A client restriction of a port (SANs or certificate hashes): whether and by what it is
    enforced."""

    kind: str  # "subjectAltName" | "certificateHash"
    values: tuple[str, ...]
    enforced: str  # "yes" | "elsewhere" | "no"
    by: str


@dataclass(frozen=True, slots=True)
class Condition:
    """A status condition the posture predicts the implementation reports on the gateway or a
    listener."""

    scope: str  # "Gateway" or "Listener <name>"
    type: str
    status: str
    reason: str


@dataclass(frozen=True, slots=True)
class PortPosture:
    """What one port enforces on clients: the mode the intent asks for and the one served, its
    trust anchors, restrictions, predicted conditions and notes."""

    port: int
    listeners: tuple[str, ...]
    source: str  # default | perPort | none
    intended_mode: str  # what the intent asks (or "none")
    enforced_mode: str  # one of the STRENGTH keys
    anchors: tuple[Anchor, ...]
    restrictions: tuple[Restriction, ...]
    conditions: tuple[Condition, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class GatewayPosture:
    """One gateway's posture on one cluster: the implementation serving it and each port's."""

    namespace: str
    name: str
    class_name: str
    implementation: str  # profile name, "other" or "unknown"
    version: str | None
    ports: tuple[PortPosture, ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ClusterPosture:
    """The posture of every gateway compiled for one cluster."""

    name: str
    gateways: tuple[GatewayPosture, ...]


@lru_cache(maxsize=256)
def _bundle_facts(pem: bytes) -> tuple[tuple[str, str, str], ...]:
    """(subject, SHA-256 fingerprint, notAfter) of each certificate of a CA bundle: parsed
    once per distinct bundle, not once per gateway that trusts it."""
    return tuple((cert.subject.rfc4514_string(),
                  hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest(),
                  cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"))
                 for cert in x509.load_pem_x509_certificates(pem))


def anchors_of(validation: Validation, ca_pems: Mapping[str, bytes]) -> tuple[Anchor, ...]:
    out = []
    for ref in validation.ca_bundles:
        pem = ca_pems.get(ref.name)
        if pem is None:
            continue
        for subject, fingerprint, not_after in _bundle_facts(pem):
            out.append(Anchor(f"{ref.namespace}/{ref.name}", subject, fingerprint, not_after))
    return tuple(out)


def _enforced_mode(v: Validation | None, profile: Profile | None,
                   impl: ImplementationRef | None, notes: list[str]) -> str:
    if v is None:
        return NONE
    if v.mode is Mode.ALLOW_VALID_ONLY:
        return VALID_ONLY
    if profile is None or impl is None:
        notes.append("implementation not named: fallback assumed as the Gateway API spec says")
        return FALLBACK
    if profile.versioned("insecureFallback") and impl.version is None:
        notes.append(f"{impl.name}: fallback support depends on the version, which is not "
                     "given; assumed supported")
    support = profile.value("insecureFallback", impl.version)
    if support == "unsupported":
        notes.append(f"{impl.name} {impl.version or ''}".rstrip() +
                     " serves AllowInsecureFallback as AllowValidOnly")
        return VALID_ONLY
    if support == "no-ca":
        return FALLBACK_NO_CA
    if support is None:
        notes.append(f"{impl.name}: fallback handling not confirmed")
    return FALLBACK


def _restrictions(v: Validation | None, profile: Profile | None,
                  policy: str | None) -> tuple[Restriction, ...]:
    if v is None or not v.restrictions.any:
        return ()
    r = v.restrictions
    mechanism = profile.value("restrictions") if profile else None
    if mechanism == "envoy":
        enforced, by = "yes", "static Envoy validation context"
    elif mechanism == "tls-options":
        enforced, by = "yes", "kgateway listener tls.options"
    elif r.enforced_elsewhere is not None:
        enforced, by = "elsewhere", r.enforced_elsewhere
    elif mechanism == "policy" and policy is not None:
        enforced, by = "yes", f"{CTP_KIND} {policy}"
    else:
        enforced, by = "no", "not in the Gateway (only mtlsc's static Envoy config)"
    out = []
    if r.san_dns or r.san_uri:
        out.append(Restriction("subjectAltName", (*r.san_dns, *r.san_uri), enforced, by))
    if r.certificate_hashes:
        out.append(Restriction("certificateHash", r.certificate_hashes, enforced, by))
    return tuple(out)


def _conditions(port: PortValidation, enforced: str) -> tuple[Condition, ...]:
    out = [Condition(f"Listener {name}", "ResolvedRefs", "True", "ResolvedRefs")
           for name in port.listeners]
    if enforced in (FALLBACK, FALLBACK_NO_CA):
        out.append(Condition("Gateway", "InsecureFrontendValidationMode", "True",
                             "ConfigurationChanged"))
    return tuple(out)


def _corner_notes(profile: Profile | None, v: Validation | None) -> list[str]:
    if profile is None or v is None:
        return []
    notes = []
    fact = profile.fact("unresolvedCARef")
    if fact is not None:
        state = "" if fact.confirmed else " (unconfirmed)"
        notes.append(f"if a CA ref does not resolve: {fact.value}{state}")
    return notes


def _port(port: PortValidation, profile: Profile | None, impl: ImplementationRef | None,
          ca_pems: Mapping[str, bytes], policy: str | None = None) -> PortPosture:
    v = port.validation
    notes: list[str] = []
    enforced = _enforced_mode(v, profile, impl, notes)
    notes += _corner_notes(profile, v)
    trusted = v is not None and enforced != FALLBACK_NO_CA
    if v is not None and not trusted:
        notes.append("the intent's CA bundles are not used on this port")
    if policy is not None:
        notes.append(f"{CTP_KIND} {policy} must be the only one naming these listeners: a "
                     "gateway-wide policy stops applying to them, another one naming them "
                     "conflicts (one of the two is not applied)")
    return PortPosture(
        port=port.port, listeners=port.listeners, source=port.source.value,
        intended_mode=v.mode.value if v else NONE, enforced_mode=enforced,
        anchors=anchors_of(v, ca_pems) if v is not None and trusted else (),
        restrictions=_restrictions(v, profile, policy),
        conditions=_conditions(port, enforced), notes=tuple(notes))


def gateway_posture(gw: Gateway, impl: ImplementationRef | None,
                    ca_pems: Mapping[str, bytes]) -> GatewayPosture:
    """Reads the implementation's name and version only (`compute_posture` relies on it)."""
    profile = load_profile(impl.name) if impl else None
    return GatewayPosture(gw.namespace, gw.name, gw.class_name,
                          impl.name if impl else "unknown", impl.version if impl else None,
                          tuple(_port(p, profile, impl, ca_pems, _policy(gw, p))
                                for p in gw.ports))


def _policy(gw: Gateway, port: PortValidation) -> str | None:
    """The ClientTrafficPolicy mtlsc emits for the port, if any (Envoy Gateway)."""
    if gw.implementation != "envoy-gateway" or not restricted_listeners(gw, port):
        return None
    return f"{gw.namespace}/{policy_name(gw, port.port)}"


def compute_posture(clusters: Sequence[ClusterModel],
                    materials: Materials | None) -> tuple[ClusterPosture, ...]:
    out = []
    # A gateway is one object on every cluster where it resolved alike (`model_share`): its
    # posture is computed once per (object, implementation name and version, CA bundles);
    # where the cluster maps the class to its implementation does not enter it.
    seen: dict[int, tuple[Gateway, tuple[str, str | None] | None,
                          frozenset[tuple[str, bytes]], GatewayPosture]] = {}
    for cluster in sorted(clusters, key=lambda c: c.target.name):
        target = cluster.target
        pems = materials.ca_pems_for(target.certificate_source) if materials else {}
        bundles = frozenset(pems.items())
        found = []
        for gw in sorted(cluster.gateways, key=lambda g: g.key):
            impl = target.implementation_ref(gw.class_name)
            served = (impl.name, impl.version) if impl is not None else None
            known = seen.get(id(gw))
            if known is None or known[0] is not gw or known[1] != served or \
                    known[2] != bundles:
                known = seen[id(gw)] = (gw, served, bundles, gateway_posture(gw, impl, pems))
            found.append(known[3])
        out.append(ClusterPosture(target.name, tuple(found)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Change:
    """A difference between two postures at one port: weaker, stronger or otherwise changed."""

    cluster: str
    gateway: str
    port: int
    direction: str  # "weaker" | "stronger" | "changed"
    what: str


def _index(postures: Sequence[ClusterPosture]) -> dict[tuple[str, str, int], PortPosture]:
    return {(c.name, g.key, p.port): p for c in postures for g in c.gateways for p in g.ports}


def _port_changes(old: PortPosture | None, new: PortPosture | None) -> list[tuple[str, str]]:
    if old is None or new is None:
        present = new or old
        assert present is not None
        state = "added" if old is None else "removed"
        return [("changed", f"port {state} ({present.enforced_mode})")]
    out = []
    before, after = STRENGTH[old.enforced_mode], STRENGTH[new.enforced_mode]
    if before != after:
        out.append(("weaker" if after < before else "stronger",
                    f"mode {old.enforced_mode} → {new.enforced_mode}"))
    old_fp = {a.fingerprint: a for a in old.anchors}
    new_fp = {a.fingerprint: a for a in new.anchors}
    for fp in sorted(set(new_fp) - set(old_fp)):
        out.append(("weaker", f"trusts {new_fp[fp].subject} (sha256 {fp[:16]}...)"))
    for fp in sorted(set(old_fp) - set(new_fp)):
        out.append(("stronger", f"no longer trusts {old_fp[fp].subject} (sha256 {fp[:16]}...)"))
    enforced = {r.kind: r for r in old.restrictions}, {r.kind: r for r in new.restrictions}
    for kind in sorted(set(enforced[0]) | set(enforced[1])):
        was, now = enforced[0].get(kind), enforced[1].get(kind)
        was_on = was is not None and was.enforced == "yes"
        now_on = now is not None and now.enforced == "yes"
        if was_on != now_on:
            out.append(("stronger" if now_on else "weaker",
                        f"{kind} restriction {'enforced' if now_on else 'no longer enforced'}"))
        elif was is not None and now is not None and was.values != now.values:
            out.append(("changed", f"{kind} restriction values changed"))
    return out


def compare(old: Sequence[ClusterPosture], new: Sequence[ClusterPosture]) -> tuple[Change, ...]:
    """What got weaker or stronger per port, per cluster (sorted)."""
    before, after = _index(old), _index(new)
    out = []
    for key in sorted(set(before) | set(after)):
        for direction, what in _port_changes(before.get(key), after.get(key)):
            out.append(Change(key[0], key[1], key[2], direction, what))
    return tuple(out)
