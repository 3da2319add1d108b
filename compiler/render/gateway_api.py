"""Render the resolved model into Gateway API objects (plain data, never text templates).

Every object comes with a source map (object path → intent location) so that a schema error in
an emitted object is reported at the intent line that produced it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Location
from ..enforcement import restriction_options
from ..model import (
    CertRef,
    Gateway,
    Listener,
    ListenerSet,
    PerPort,
    Protocol,
    Route,
    Validation,
)

GATEWAY_GROUP = "gateway.networking.k8s.io"
MANAGED_BY = {"app.kubernetes.io/managed-by": "mtlsc"}
ObjPath = tuple[str | int, ...]


@dataclass(slots=True)
class Rendered:
    """One emitted object as plain data, with its source map (object path -> intent location)."""

    obj: dict[str, Any]
    sources: dict[ObjPath, Location] = field(default_factory=dict)

    @property
    def identity(self) -> tuple[str, str, str]:
        meta = self.obj["metadata"]
        return (self.obj["kind"], meta.get("namespace", ""), meta["name"])

    def locate(self, path: ObjPath) -> Location | None:
        """The intent location of the longest mapped prefix of `path`."""
        for end in range(len(path), -1, -1):
            loc = self.sources.get(tuple(path[:end]))
            if loc is not None:
                return loc
        return None


def _meta(name: str, namespace: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(MANAGED_BY)}
    if extra:
        meta["annotations"] = dict(extra)
    return meta


def _ref(ref: CertRef, kind: str, local_ns: str) -> dict[str, Any]:
    out: dict[str, Any] = {"group": "", "kind": kind, "name": ref.name}
    if ref.namespace != local_ns:
        out["namespace"] = ref.namespace
    return out


def _validation(v: Validation, ns: str) -> dict[str, Any]:
    return {"mode": v.mode.value,
            "caCertificateRefs": [_ref(r, "ConfigMap", ns) for r in v.ca_bundles]}


def _listener(lst: Listener, ns: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": lst.name, "port": lst.port, "protocol": lst.protocol.value}
    if lst.hostname:
        out["hostname"] = lst.hostname
    if lst.protocol is Protocol.HTTPS and lst.certificate is not None:
        out["tls"] = {"mode": "Terminate",
                      "certificateRefs": [_ref(lst.certificate, "Secret", ns)]}
    elif lst.protocol is Protocol.TLS:
        out["tls"] = {"mode": "Passthrough"}
    out["allowedRoutes"] = {"namespaces": {"from": lst.allowed_routes}}
    return out


def _per_port_entries(gw: Gateway) -> list[PerPort]:
    assert gw.frontend is not None
    # Without a default, "no validation" is what the port gets anyway: leave the entry out
    # rather than emit a validation-less perPort entry that implementations read differently.
    return [e for e in gw.frontend.per_port
            if e.validation is not None or gw.frontend.default is not None]


def _frontend(gw: Gateway, r: Rendered) -> dict[str, Any]:
    assert gw.frontend is not None
    base: ObjPath = ("spec", "tls", "frontend")
    default: dict[str, Any] = {}
    if gw.frontend.default is not None:
        v = gw.frontend.default
        default["validation"] = _validation(v, gw.namespace)
        if gw.frontend.default_origin is not None:
            r.sources[(*base, "default")] = gw.frontend.default_origin.location
        r.sources[(*base, "default", "validation", "mode")] = v.mode_origin.location
        r.sources[(*base, "default", "validation", "caCertificateRefs")] = v.ca_origin.location
    out: dict[str, Any] = {"default": default}
    entries = _per_port_entries(gw)
    if entries:
        out["perPort"] = [_per_port(e, gw.namespace, r, (*base, "perPort", i))
                          for i, e in enumerate(entries)]
    return out


def _per_port(entry: PerPort, ns: str, r: Rendered, path: ObjPath) -> dict[str, Any]:
    r.sources[path] = entry.origin.location
    tls: dict[str, Any] = {}
    if entry.validation is not None:
        tls["validation"] = _validation(entry.validation, ns)
        r.sources[(*path, "tls", "validation", "caCertificateRefs")] = \
            entry.validation.ca_origin.location
    return {"port": entry.port, "tls": tls}


def _listeners(listeners: tuple[Listener, ...], gw: Gateway, ns: str, r: Rendered,
               base: ObjPath) -> list[dict[str, Any]]:
    """Listeners of a Gateway or a ListenerSet; a port's restrictions go to every HTTPS
    listener on it as the implementation's own tls.options keys (kgateway)."""
    ports = {p.port: p.validation for p in gw.ports}
    out = []
    for i, lst in enumerate(listeners):
        rendered = _listener(lst, ns)
        r.sources[(*base, i)] = lst.origin.location
        validation = ports.get(lst.port) if lst.protocol is Protocol.HTTPS else None
        options = restriction_options(validation, gw.implementation)
        if options and validation is not None:
            rendered["tls"]["options"] = options
            if validation.restrictions.origin is not None:
                r.sources[(*base, i, "tls", "options")] = validation.restrictions.origin.location
        out.append(rendered)
    return out


def render_gateway(gw: Gateway) -> Rendered:
    r = Rendered({})
    r.sources[()] = gw.origin.location
    spec: dict[str, Any] = {"gatewayClassName": gw.class_name,
                            "listeners": _listeners(gw.own_listeners, gw, gw.namespace, r,
                                                    ("spec", "listeners"))}
    if gw.allowed_listeners is not None:
        spec["allowedListeners"] = {"namespaces": {"from": gw.allowed_listeners}}
        if gw.allowed_listeners_origin is not None:
            r.sources[("spec", "allowedListeners")] = gw.allowed_listeners_origin.location
    if gw.frontend is not None:
        spec["tls"] = {"frontend": _frontend(gw, r)}
    r.obj.update({"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "Gateway",
                  "metadata": _meta(gw.name, gw.namespace), "spec": spec})
    return r


def render_listener_set(gw: Gateway, ls: ListenerSet) -> Rendered:
    """A tenant ListenerSet: its listeners, attached to the gateway (which gives them its
    spec.tls.frontend by port)."""
    r = Rendered({})
    r.sources[()] = ls.origin.location
    spec = {"parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw.name,
                          "namespace": gw.namespace},
            "listeners": _listeners(gw.set_listeners(ls.name), gw, ls.namespace, r,
                                    ("spec", "listeners"))}
    r.obj.update({"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "ListenerSet",
                  "metadata": _meta(ls.name, ls.namespace), "spec": spec})
    return r


def render_route(route: Route, gw: Gateway) -> Rendered:
    r = Rendered({})
    r.sources[()] = route.origin.location
    parent: dict[str, Any] = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw.name,
                              "namespace": gw.namespace}
    if route.listener_set is not None:
        ls = next(s for s in gw.listener_sets if s.name == route.listener_set)
        parent = {"group": GATEWAY_GROUP, "kind": "ListenerSet", "name": ls.name,
                  "namespace": ls.namespace}
    parents = [{**parent, "sectionName": s} for s in route.listeners] or [parent]
    backends = []
    for i, b in enumerate(route.backends):
        ref: dict[str, Any] = {"group": "", "kind": "Service", "name": b.service, "port": b.port}
        if b.namespace != route.namespace:
            ref["namespace"] = b.namespace
        if b.weight is not None:
            ref["weight"] = b.weight
        backends.append(ref)
        r.sources[("spec", "rules", 0, "backendRefs", i)] = b.origin.location
    spec: dict[str, Any] = {"parentRefs": parents}
    if route.hostnames:
        spec["hostnames"] = list(route.hostnames)
    spec["rules"] = [{"matches": [{"path": {"type": "PathPrefix", "value": route.path_prefix}}],
                      "backendRefs": backends}]
    r.obj.update({"apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "HTTPRoute",
                  "metadata": _meta(route.name, route.namespace), "spec": spec})
    return r


def render_ca_configmap(ref: CertRef, pem: bytes) -> Rendered:
    digest = hashlib.sha256(pem).hexdigest()
    obj = {"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": _meta(ref.name, ref.namespace, {"mtlsc.dev/ca-bundle-sha256": digest}),
           "data": {"ca.crt": pem.decode("ascii")}}
    return Rendered(obj, {(): ref.origin.location})


def _grants(gw: Gateway) -> dict[tuple[str, str, str], list[tuple[str, str, CertRef | None]]]:
    """(target ns, from kind, from ns) → [(to kind, to name)] for every cross-namespace ref."""
    wanted: dict[tuple[str, str, str], list[tuple[str, str, CertRef | None]]] = {}
    set_ns = {ls.name: ls.namespace for ls in gw.listener_sets}
    for lst in gw.listeners:
        kind, from_ns = ("ListenerSet", set_ns[lst.listener_set]) if lst.listener_set else \
            ("Gateway", gw.namespace)
        if lst.certificate and lst.certificate.namespace != from_ns:
            key = (lst.certificate.namespace, kind, from_ns)
            wanted.setdefault(key, []).append(("Secret", lst.certificate.name, lst.certificate))
    for ref in gw.ca_refs():
        if ref.namespace != gw.namespace:
            wanted.setdefault((ref.namespace, "Gateway", gw.namespace), []).append(
                ("ConfigMap", ref.name, ref))
    for route in gw.routes:
        for b in route.backends:
            if b.namespace != route.namespace:
                wanted.setdefault((b.namespace, "HTTPRoute", route.namespace), []).append(
                    ("Service", b.service, None))
    return wanted


def render_reference_grants(gw: Gateway, version: str = "v1beta1") -> list[Rendered]:
    """`version` is the newest ReferenceGrant version the cluster's Gateway API serves
    (v1 from Gateway API v1.5, v1beta1 before)."""
    out = []
    for (target_ns, kind, from_ns), targets in sorted(_grants(gw).items()):
        to = [{"group": "", "kind": k, "name": n} for k, n in sorted({(k, n) for k, n, _ in
                                                                       targets})]
        group = GATEWAY_GROUP
        obj = {"apiVersion": f"{GATEWAY_GROUP}/{version}", "kind": "ReferenceGrant",
               "metadata": _meta(f"mtlsc-{kind.lower()}-{from_ns}", target_ns),
               "spec": {"from": [{"group": group, "kind": kind, "namespace": from_ns}],
                        "to": to}}
        out.append(Rendered(obj, {(): gw.origin.location}))
    return out


def render_gateway_objects(gw: Gateway, ca_pems: Mapping[str, bytes],
                           grant_version: str = "v1beta1") -> list[Rendered]:
    """Everything one gateway needs: Gateway, CA ConfigMaps, HTTPRoutes, ReferenceGrants."""
    out = [render_gateway(gw)]
    for ref in gw.ca_refs():
        pem = ca_pems.get(ref.name)
        if pem is not None:
            out.append(render_ca_configmap(ref, pem))
    out += [render_listener_set(gw, ls) for ls in gw.listener_sets]
    out += [render_route(route, gw) for route in gw.routes]
    out += render_reference_grants(gw, grant_version)
    return out
