"""Envoy Gateway ClientTrafficPolicy objects carrying a port's clientRestrictions.

Envoy Gateway checks a SAN allow-list or certificate hashes only through a
ClientTrafficPolicy's `tls.clientValidation`. Its translator applies the policy after the
Gateway's `spec.tls.frontend` and *replaces* the listener's validation mode and CA set with the
policy's own (docs/implementations.md), so every policy repeats the port's CA bundles and mode
exactly: whichever of the two Envoy Gateway ends up using, the listener means what the intent
says. One policy per restricted port, targeting every HTTPS listener of the Gateway on it;
none where the intent says the restrictions are enforced elsewhere.
"""

from __future__ import annotations

from typing import Any

from ..model import Gateway, Listener, Mode, PortValidation, Protocol
from .gateway_api import GATEWAY_GROUP, MANAGED_BY, Rendered

CTP_GROUP = "gateway.envoyproxy.io"
CTP_API_VERSION = f"{CTP_GROUP}/v1alpha1"
CTP_KIND = "ClientTrafficPolicy"
# Envoy Gateway's frontendValidationMode (internal/gatewayapi/helpers.go): the same mapping it
# applies to the Gateway's own spec.tls.frontend.
CTP_MODES = {Mode.ALLOW_VALID_ONLY: "RequireAndVerify",
             Mode.ALLOW_INSECURE_FALLBACK: "Request"}


def policy_name(gw: Gateway, port: int) -> str:
    return f"{gw.name}-mtls-{port}"


def restricted_listeners(gw: Gateway, port: PortValidation) -> tuple[Listener, ...]:
    """The Gateway's own HTTPS listeners on a port whose validation has restrictions that
    the intent does not say are enforced elsewhere (then the user's own policy may exist)."""
    v = port.validation
    if v is None or not v.restrictions.any or v.restrictions.enforced_elsewhere is not None:
        return ()
    return tuple(lst for lst in gw.own_listeners
                 if lst.port == port.port and lst.protocol is Protocol.HTTPS)


def render_client_traffic_policies(gw: Gateway) -> list[Rendered]:
    """One ClientTrafficPolicy per restricted port (Envoy Gateway clusters only)."""
    if gw.implementation != "envoy-gateway":
        return []
    return [_policy(gw, port) for port in gw.ports if restricted_listeners(gw, port)]


def _policy(gw: Gateway, port: PortValidation) -> Rendered:
    v = port.validation
    assert v is not None
    r = v.restrictions
    validation: dict[str, Any] = {
        "mode": CTP_MODES[v.mode],
        "caCertificateRefs": [_ca_ref(ref.name) for ref in v.ca_bundles],
    }
    sans: dict[str, Any] = {}
    if r.san_dns:
        sans["dnsNames"] = [{"type": "Exact", "value": name} for name in r.san_dns]
    if r.san_uri:
        sans["uris"] = [{"type": "Exact", "value": uri} for uri in r.san_uri]
    if sans:
        validation["subjectAltNames"] = sans
    if r.certificate_hashes:
        validation["certificateHashes"] = list(r.certificate_hashes)
    targets = [{"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw.name,
                "sectionName": lst.name} for lst in restricted_listeners(gw, port)]
    out = Rendered({"apiVersion": CTP_API_VERSION, "kind": CTP_KIND,
                    "metadata": {"name": policy_name(gw, port.port), "namespace": gw.namespace,
                                 "labels": dict(MANAGED_BY)},
                    "spec": {"targetRefs": targets, "tls": {"clientValidation": validation}}})
    out.sources[()] = (r.origin or v.mode_origin).location
    out.sources[("spec", "tls", "clientValidation", "caCertificateRefs")] = v.ca_origin.location
    return out


def _ca_ref(name: str) -> dict[str, Any]:
    # Same namespace as the Gateway: enforcement refuses cross-namespace CA bundles on a
    # restricted Envoy Gateway port (the policy would need its own ReferenceGrant).
    return {"group": "", "kind": "ConfigMap", "name": name}


def policy_differences(gateway: dict[str, Any], policy: dict[str, Any]) -> list[str]:
    """Self-check on the emitted objects: a policy's CA refs and mode must equal the Gateway's
    spec.tls.frontend validation of every listener it targets (it replaces that validation)."""
    spec = gateway["spec"]
    ports = {lst["name"]: lst["port"] for lst in spec["listeners"]}
    frontend = spec.get("tls", {}).get("frontend", {})
    per_port = {e["port"]: e["tls"].get("validation") for e in frontend.get("perPort", [])}
    default = frontend.get("default", {}).get("validation")
    mine = policy["spec"]["tls"]["clientValidation"]
    name = policy["metadata"]["name"]
    out = []
    for ref in policy["spec"]["targetRefs"]:
        port = ports.get(ref["sectionName"])
        theirs = per_port.get(port, default) if port is not None else None
        if theirs is None:
            out.append(f"ClientTrafficPolicy {name} targets {ref['sectionName']}, which has "
                       "no frontend validation in the Gateway")
            continue
        mode = CTP_MODES[Mode(theirs.get("mode", Mode.ALLOW_VALID_ONLY.value))]
        if mine["mode"] != mode or mine["caCertificateRefs"] != theirs["caCertificateRefs"]:
            out.append(f"ClientTrafficPolicy {name} validates {ref['sectionName']} with "
                       f"{mine['mode']} {mine['caCertificateRefs']}, the Gateway with "
                       f"{mode} {theirs['caCertificateRefs']}")
    return out
