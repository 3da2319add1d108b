"""Compile against the cluster's implementation profile: refuse what it cannot enforce.

mtlsc's own static Envoy config enforces every part of an intent, but a Gateway is enforced by
the cluster's implementation, and implementations differ (docs/implementations.md). Per
validation written in the intent:
- clientRestrictions (SAN allow-list, certificate hashes): kgateway gets its listener
  `tls.options` keys (rendered in render/gateway_api.py), Envoy Gateway a ClientTrafficPolicy
  per port (render/client_traffic_policy.py; refused where that policy could not mean the same:
  CA bundles in another namespace, a tenant ListenerSet listener on the port, a release before
  1.8) and static-envoy its own config; anywhere else the intent must say where they are
  enforced (`enforcedElsewhere`) or the cluster is refused. With no implementation named, a
  warning says only mtlsc's Envoy checks;
- more CA bundles than the implementation takes (Istio: one) are refused;
- AllowInsecureFallback where the implementation serves it as AllowValidOnly (Istio before
  1.31) is refused, warned about when the version is not given, and NGINX Gateway Fabric's
  "fallback without any CA" is a warning.
Only confirmed profile facts decide; unconfirmed ones are shown by `mtlsc posture`.
"""

from __future__ import annotations

from .diagnostics import Diagnostic, error, warning
from .model import (
    FrontendTLS,
    ImplementationRef,
    Listener,
    Mode,
    PortValidation,
    Protocol,
    Validation,
)
from .precedence import validations
from .profiles import Profile, load_profile, version_tuple

KGATEWAY_SAN_OPTION = "kgateway.dev/verify-subject-alt-names"
KGATEWAY_HASH_OPTION = "kgateway.dev/verify-certificate-hash"
ENFORCING_RESTRICTIONS = frozenset({"envoy", "tls-options"})
POLICY_RESTRICTIONS = "policy"  # Envoy Gateway: a ClientTrafficPolicy mtlsc emits
POLICY_MIN_VERSION = (1, 8)  # clientValidation.mode (needed to repeat the Gateway's mode)


def restriction_options(validation: Validation | None,
                        implementation: str | None) -> dict[str, str]:
    """The kgateway listener `tls.options` that carry a validation's restrictions."""
    profile = load_profile(implementation) if implementation else None
    if validation is None or profile is None or \
            profile.value("restrictions") != "tls-options":
        return {}
    r = validation.restrictions
    out = {}
    if r.san_dns or r.san_uri:
        out[KGATEWAY_SAN_OPTION] = ",".join((*r.san_dns, *r.san_uri))
    if r.certificate_hashes:
        out[KGATEWAY_HASH_OPTION] = ",".join(r.certificate_hashes)
    return out


def check_enforcement(frontend: FrontendTLS | None, impl: ImplementationRef | None,
                      cluster: str, ports: tuple[PortValidation, ...] = (),
                      tenant: list[Listener] | None = None,
                      namespace: str = "") -> list[Diagnostic]:
    profile = load_profile(impl.name) if impl else None
    out: list[Diagnostic] = []
    seen: set[object] = set()
    for label, validation in validations(frontend):
        restrictions = validation.restrictions
        key = restrictions.origin.location if restrictions.origin else label
        if restrictions.any and key not in seen:
            seen.add(key)
            out += _restrictions(label, validation, impl, profile, cluster)
            if profile is not None and impl is not None and \
                    profile.value("restrictions") == POLICY_RESTRICTIONS and \
                    restrictions.enforced_elsewhere is None:
                out += _policy_blockers(label, validation, impl, cluster, ports,
                                        tenant or [], namespace)
        if profile is None or impl is None:
            continue
        if "caBundles" not in validation.inherited:
            out += _ca_count(label, validation, profile, cluster)
        if validation.mode is Mode.ALLOW_INSECURE_FALLBACK and "mode" not in validation.inherited:
            out += _fallback(label, validation, profile, impl, cluster)
    return out


def _restrictions(label: str, v: Validation, impl: ImplementationRef | None,
                  profile: Profile | None, cluster: str) -> list[Diagnostic]:
    r = v.restrictions
    where = r.origin.location if r.origin else v.mode_origin.location
    if r.enforced_elsewhere is not None:
        return []
    what = " and ".join(w for w, on in (("a SAN allow-list", r.san_dns or r.san_uri),
                                        ("certificate hashes", r.certificate_hashes)) if on)
    if profile is None:
        return [warning("RestrictionNotInGateway", f"{label}: clientRestrictions ({what}) are "
                        "enforced only by mtlsc's static Envoy config; the Gateway on cluster "
                        f"{cluster!r} carries no such check and its implementation is not named",
                        where, "name it in the ClusterTarget (spec.implementation or "
                        "spec.implementations), or say where the check happens with "
                        "'enforcedElsewhere: <where>'")]
    mechanism = profile.value("restrictions")
    if mechanism in ENFORCING_RESTRICTIONS or mechanism == POLICY_RESTRICTIONS:
        return []
    assert impl is not None
    how = "not from Gateway API at all"
    return [error("RestrictionNotEnforced", f"{label}: clientRestrictions ({what}) cannot be "
                  f"enforced by {impl.name} on cluster {cluster!r}: it checks them {how}, so "
                  "the emitted Gateway would accept clients the intent refuses", where,
                  "enforce them elsewhere (backend or mesh authorization on the client "
                  "identity) and say so with 'enforcedElsewhere: <where>', or compile this "
                  "gateway for an implementation that can (kgateway, envoy-gateway, static-envoy)")]


def _policy_blockers(label: str, v: Validation, impl: ImplementationRef, cluster: str,
                     ports: tuple[PortValidation, ...], tenant: list[Listener],
                     namespace: str) -> list[Diagnostic]:
    """Why the ClientTrafficPolicy mtlsc would emit could not mean what the intent says."""
    r = v.restrictions
    where = r.origin.location if r.origin else v.mode_origin.location
    on = [p.port for p in ports if p.validation == v]
    reasons = []
    release = version_tuple(impl.version) if impl.version else None
    if release is not None and release[:2] < POLICY_MIN_VERSION:
        reasons.append(f"{impl.name} {impl.version} has no clientValidation.mode (1.8 added "
                       "it), so the policy could not repeat the port's mode")
    foreign = sorted({ref.namespace for ref in v.ca_bundles if ref.namespace != namespace})
    if foreign:
        reasons.append(f"its CA bundles live in {', '.join(foreign)}: the policy would "
                       "resolve them under its own ReferenceGrant, which mtlsc does not emit")
    sets = sorted({f"{lst.listener_set}/{lst.name}" for lst in tenant
                   if lst.port in on and lst.protocol is Protocol.HTTPS})
    if sets:
        reasons.append(f"tenant ListenerSet listener(s) {', '.join(sets)} share the port and "
                       "a policy on the Gateway's listeners does not reach them")
    if not reasons:
        return []
    return [error("RestrictionNotEnforced", f"{label}: clientRestrictions cannot be enforced "
                  f"by {impl.name} on cluster {cluster!r} through a ClientTrafficPolicy: "
                  + "; ".join(reasons), where,
                  "remove the cause named, or enforce the restriction elsewhere and say so "
                  "with 'enforcedElsewhere: <where>'")]


def _ca_count(label: str, v: Validation, profile: Profile,
              cluster: str) -> list[Diagnostic]:
    limit = profile.value("maxCARefs")
    if not isinstance(limit, int) or len(v.ca_bundles) <= limit:
        return []
    return [error("TooManyCACertificateRefs", f"{label}: {len(v.ca_bundles)} CA bundles, but "
                  f"{profile.name} on cluster {cluster!r} accepts at most {limit} "
                  "caCertificateRef per validation and rejects the listener otherwise",
                  v.ca_origin.location, "merge the CA certificates into one bundle (one "
                  "bundle may hold several certificates)")]


def _fallback(label: str, v: Validation, profile: Profile, impl: ImplementationRef,
              cluster: str) -> list[Diagnostic]:
    where = v.mode_origin.location
    if profile.versioned("insecureFallback") and impl.version is None:
        return [warning("ImplementationVersionUnknown", f"{label}: whether {impl.name} on "
                        f"cluster {cluster!r} honours AllowInsecureFallback depends on its "
                        "version (older lines serve it as AllowValidOnly)", where,
                        f"give the version: implementation: {{name: {impl.name}, version: "
                        "<x.y.z>} in the ClusterTarget")]
    support = profile.value("insecureFallback", impl.version)
    if support == "unsupported":
        version = f" {impl.version}" if impl.version else ""
        return [error("FallbackNotSupported", f"{label}: {impl.name}{version} on cluster "
                      f"{cluster!r} serves AllowInsecureFallback as AllowValidOnly: clients "
                      "without a valid certificate would be refused, unlike the intent", where,
                      "use AllowValidOnly for this cluster (a cluster override) or upgrade "
                      "the implementation (docs/implementations.md)")]
    if support == "no-ca":
        return [warning("ImplementationDivergence", f"{label}: {impl.name} on cluster "
                        f"{cluster!r} serves AllowInsecureFallback without any CA: a presented "
                        "certificate is never validated, so nothing tells the backend whether "
                        "it was valid", where, "use AllowValidOnly on this cluster, or do not "
                        "authorize on the client certificate behind it")]
    return []
