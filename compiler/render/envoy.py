"""Render the resolved model into a static Envoy v3 bootstrap per gateway (plain data).

The mapping of GEP-91 onto Envoy (docs/envoy.md), checked against Envoy 1.40:
- AllowValidOnly: require_client_certificate true, trusted_ca = the CA bundles, default
  (VERIFY_TRUST_CHAIN) verification;
- AllowInsecureFallback: require_client_certificate false, the same trusted_ca, and
  trust_chain_verification ACCEPT_UNTRUSTED (without it Envoy would still reject bad
  certificates, which is not a fallback);
- every filter chain of a port carries the identical validation context: connections are
  reused across hostnames of one port (GEP-3567);
- the backend learns whether the certificate was validated from a request header that Envoy
  always overwrites (route match on tls_context.validated), never from XFCC alone;
- ports with client validation turn off TLS session resumption (tickets and the session
  cache): Envoy reports a resumed session as not validated, which would flip that header.
Private keys are referenced as files, never inlined.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from typing import Any

from ..model import (
    Backend,
    CertRef,
    EnvoySettings,
    Gateway,
    Listener,
    Mode,
    PortValidation,
    Protocol,
    Route,
    Validation,
)

TYPES = "type.googleapis.com/envoy.extensions"
DOWNSTREAM_TLS = f"{TYPES}.transport_sockets.tls.v3.DownstreamTlsContext"
HCM = f"{TYPES}.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = f"{TYPES}.filters.http.router.v3.Router"
TLS_INSPECTOR = f"{TYPES}.filters.listener.tls_inspector.v3.TlsInspector"


def server_cert_paths(ref: CertRef, settings: EnvoySettings) -> tuple[str, str]:
    base = f"{settings.cert_directory}/{ref.namespace}/{ref.name}"
    return f"{base}/tls.crt", f"{base}/tls.key"


def ca_bundle_bytes(validation: Validation, ca_pems: Mapping[str, bytes]) -> bytes:
    """The trust anchors of one validation: its bundles concatenated in order."""
    parts = [ca_pems[ref.name].rstrip(b"\n") + b"\n" for ref in validation.ca_bundles]
    return b"".join(parts)


def ca_file_path(bundle: bytes, settings: EnvoySettings) -> str:
    return f"{settings.cert_directory}/ca/{hashlib.sha256(bundle).hexdigest()[:16]}.crt"


def ca_files(gw: Gateway, ca_pems: Mapping[str, bytes],
             settings: EnvoySettings) -> dict[str, bytes]:
    """CA file path → bytes for the configs that reference CA files instead of inlining."""
    if settings.inline_ca:
        return {}
    return {ca_file_path(b, settings): b for b in (
        ca_bundle_bytes(p.validation, ca_pems) for p in gw.ports if p.validation)}


def validation_context(validation: Validation, ca_pems: Mapping[str, bytes],
                       settings: EnvoySettings) -> dict[str, Any]:
    bundle = ca_bundle_bytes(validation, ca_pems)
    trusted: dict[str, Any] = {"inline_string": bundle.decode("ascii")} if settings.inline_ca \
        else {"filename": ca_file_path(bundle, settings)}
    ctx: dict[str, Any] = {"trusted_ca": trusted}
    if validation.mode is Mode.ALLOW_INSECURE_FALLBACK:
        ctx["trust_chain_verification"] = "ACCEPT_UNTRUSTED"
    restrictions = validation.restrictions
    sans = [{"san_type": "DNS", "matcher": {"exact": name}} for name in restrictions.san_dns]
    sans += [{"san_type": "URI", "matcher": {"exact": uri}} for uri in restrictions.san_uri]
    if sans:
        ctx["match_typed_subject_alt_names"] = sans
    if restrictions.certificate_hashes:
        ctx["verify_certificate_hash"] = list(restrictions.certificate_hashes)
    return ctx


def _tls_socket(listener: Listener, port: PortValidation, ca_pems: Mapping[str, bytes],
                settings: EnvoySettings) -> dict[str, Any]:
    assert listener.certificate is not None
    chain, key = server_cert_paths(listener.certificate, settings)
    common: dict[str, Any] = {"tls_certificates": [{"certificate_chain": {"filename": chain},
                                                    "private_key": {"filename": key}}],
                              "alpn_protocols": ["h2", "http/1.1"]}
    context: dict[str, Any] = {"common_tls_context": common}
    validation = port.validation
    if validation is not None:
        common["validation_context"] = validation_context(validation, ca_pems, settings)
        # Envoy reports a resumed session as not validated (tls_context.validated is false),
        # so a client verified on its first handshake would lose the verified header on the
        # next connection. Every connection to a validated port does a full handshake.
        context["disable_stateless_session_resumption"] = True
        context["disable_stateful_session_resumption"] = True
    context["require_client_certificate"] = bool(
        validation is not None and validation.mode is Mode.ALLOW_VALID_ONLY)
    return {"name": "envoy.transport_sockets.tls",
            "typed_config": {"@type": DOWNSTREAM_TLS, **context}}


def cluster_name(backend: Backend) -> str:
    return f"{backend.service}.{backend.namespace}.{backend.port}"


def _hostname_matches(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and host.count(".") >= pattern.count(".")
    return False


def _domains(route: Route, listener: Listener) -> list[str]:
    """Route hostnames that the listener accepts (Gateway API hostname intersection)."""
    if listener.hostname is None:
        return list(route.hostnames) or ["*"]
    if not route.hostnames:
        return [listener.hostname]
    return [h for h in route.hostnames
            if _hostname_matches(listener.hostname, h) or _hostname_matches(h, listener.hostname)]


def _routes_for(listener: Listener, routes: Sequence[Route]) -> dict[str, list[Route]]:
    by_domain: dict[str, list[Route]] = {}
    for route in routes:
        # A route attaches to the Gateway's listeners or to one ListenerSet's (its parentRef).
        if route.listener_set != listener.listener_set:
            continue
        if route.listeners and listener.name not in route.listeners:
            continue
        for domain in _domains(route, listener):
            by_domain.setdefault(domain, []).append(route)
    return by_domain


def _action(route: Route) -> dict[str, Any]:
    if len(route.backends) == 1:
        return {"cluster": cluster_name(route.backends[0])}
    return {"weighted_clusters": {"clusters": [
        {"name": cluster_name(b), "weight": 1 if b.weight is None else b.weight}
        for b in route.backends]}}


def _verified_header(settings: EnvoySettings, value: str) -> dict[str, Any]:
    # OVERWRITE: a client can never set this header itself.
    return {"header": {"key": settings.verified_header, "value": value},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _envoy_routes(route: Route, tls: bool, settings: EnvoySettings) -> list[dict[str, Any]]:
    match: dict[str, Any] = {"prefix": route.path_prefix}
    out = []
    if tls:
        verified_match: dict[str, Any] = {**match, "tls_context": {"validated": True}}
        out.append({"name": f"{route.namespace}/{route.name}/verified",
                    "match": verified_match,
                    "route": _action(route),
                    "request_headers_to_add": [_verified_header(settings, "true")]})
    out.append({"name": f"{route.namespace}/{route.name}",
                "match": match, "route": _action(route),
                "request_headers_to_add": [_verified_header(settings, "false")]})
    return out


def _route_config(listeners: Sequence[Listener], routes: Sequence[Route],
                  settings: EnvoySettings) -> dict[str, Any]:
    """Virtual hosts for the listeners one filter chain serves (several only for plain HTTP,
    where there is no SNI to tell them apart)."""
    tls = listeners[0].protocol is Protocol.HTTPS
    by_domain: dict[str, dict[str, Route]] = {}
    for listener in listeners:
        for domain, matched in _routes_for(listener, routes).items():
            by_domain.setdefault(domain, {}).update({f"{r.namespace}/{r.name}": r
                                                     for r in matched})
    hosts = []
    for domain, named in sorted(by_domain.items()):
        ordered = sorted(named.values(), key=lambda r: (-len(r.path_prefix), r.namespace,
                                                        r.name))
        hosts.append({"name": domain, "domains": [domain],
                      "routes": [r for route in ordered for r in
                                 _envoy_routes(route, tls, settings)]})
    if tls and listeners[0].hostname and not any(h["domains"] == ["*"] for h in hosts):
        # A request for another hostname on a connection opened for this one (HTTP/2
        # coalescing, GEP-3567) gets 421 so the client retries on a fresh connection.
        hosts.append({"name": "misdirected", "domains": ["*"],
                      "routes": [{"match": {"prefix": "/"},
                                  "direct_response": {"status": 421}}]})
    return {"name": listeners[0].key, "virtual_hosts": hosts}


def _hcm(listeners: Sequence[Listener], routes: Sequence[Route],
         settings: EnvoySettings) -> dict[str, Any]:
    listener = listeners[0]
    config: dict[str, Any] = {
        "@type": HCM,
        "stat_prefix": listener.key,
        "strip_any_host_port": True,
        "route_config": _route_config(listeners, routes, settings),
        "http_filters": [{"name": "envoy.filters.http.router",
                          "typed_config": {"@type": ROUTER}}],
    }
    if listener.protocol is Protocol.HTTPS:
        config["forward_client_cert_details"] = "SANITIZE_SET"
        config["set_current_client_cert_details"] = {"subject": True, "cert": True,
                                                     "uri": True, "dns": True}
    else:
        config["forward_client_cert_details"] = "SANITIZE"
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": config}


def _filter_chain(listeners: Sequence[Listener], port: PortValidation | None, gw: Gateway,
                  ca_pems: Mapping[str, bytes], settings: EnvoySettings) -> dict[str, Any]:
    listener = listeners[0]
    chain: dict[str, Any] = {"name": listener.key}
    if listener.protocol is Protocol.HTTPS and listener.hostname:
        chain["filter_chain_match"] = {"server_names": [listener.hostname]}
    if listener.protocol is Protocol.HTTPS:
        assert port is not None
        chain["transport_socket"] = _tls_socket(listener, port, ca_pems, settings)
    chain["filters"] = [_hcm(listeners, gw.routes, settings)]
    return chain


def _chains(members: Sequence[Listener]) -> list[list[Listener]]:
    """HTTPS: a filter chain per listener (SNI tells them apart); HTTP: one for all."""
    if members[0].protocol is Protocol.HTTP:
        return [list(members)]
    return [[m] for m in members]


def _socket(address: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": address, "port_value": port}}


def _listeners(gw: Gateway, ca_pems: Mapping[str, bytes],
               settings: EnvoySettings) -> list[dict[str, Any]]:
    ports = {p.port: p for p in gw.ports}
    by_port: dict[int, list[Listener]] = {}
    for lst in gw.listeners:
        if lst.protocol is not Protocol.TLS:  # passthrough needs TLSRoutes: not rendered
            by_port.setdefault(lst.port, []).append(lst)
    out = []
    for port_number, members in sorted(by_port.items()):
        members.sort(key=lambda lst: (lst.hostname is None, lst.hostname or "", lst.key))
        listener: dict[str, Any] = {
            "name": f"port-{port_number}",
            "address": _socket(settings.listen_address, port_number),
            "filter_chains": [_filter_chain(chain, ports.get(port_number), gw, ca_pems,
                                            settings) for chain in _chains(members)],
        }
        if members[0].protocol is Protocol.HTTPS:
            # SNI-based filter chain matching needs the TLS inspector to read the ClientHello.
            listener["listener_filters"] = [{"name": "envoy.filters.listener.tls_inspector",
                                             "typed_config": {"@type": TLS_INSPECTOR}}]
        out.append(listener)
    return out


def _cluster(backend: Backend, settings: EnvoySettings) -> dict[str, Any]:
    default = f"{backend.service}.{backend.namespace}.svc.{settings.cluster_domain}"
    address = settings.backend_address(backend.namespace, backend.service, default)
    try:
        ipaddress.ip_address(address)
        kind = "STATIC"
    except ValueError:
        kind = "STRICT_DNS"
    name = cluster_name(backend)
    return {"name": name, "type": kind, "connect_timeout": "5s",
            "dns_lookup_family": "V4_PREFERRED",
            "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _socket(address, backend.port)}}]}]}}


def render_envoy(gw: Gateway, cluster: str, ca_pems: Mapping[str, bytes],
                 settings: EnvoySettings) -> dict[str, Any]:
    """The bootstrap for one gateway on one cluster."""
    backends = {cluster_name(b): b for r in gw.routes for b in r.backends}
    entries = envoy_node(gw, cluster, settings)
    return {
        "node": entries.pop("node"),
        "static_resources": {
            "listeners": _listeners(gw, ca_pems, settings),
            "clusters": [_cluster(backends[k], settings) for k in sorted(backends)],
        },
        **entries,
    }


def envoy_node(gw: Gateway, cluster: str, settings: EnvoySettings) -> dict[str, Any]:
    """The bootstrap's entries besides `static_resources` (which is a function of the gateway,
    the CA bundles and the settings alone): `node`, which names the cluster, and `admin`."""
    entries: dict[str, Any] = {
        "node": {"id": f"{cluster}/{gw.namespace}/{gw.name}", "cluster": f"{gw.namespace}/"
                 f"{gw.name}"}}
    if settings.admin_port is not None:
        entries["admin"] = {"address": _socket("127.0.0.1", settings.admin_port)}
    return entries


def envoy_file(gw: Gateway) -> str:
    return f"envoy/{gw.namespace}/{gw.name}.yaml"
