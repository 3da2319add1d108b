"""Stage 3: turn one placement (a layered intent for one cluster) into a model Gateway."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from .diagnostics import Diagnostic, error, warning
from .enforcement import check_enforcement
from .layering import Placement
from .listener_sets import check_listener_sets
from .located import Node
from .model import Backend, Gateway, Listener, ListenerSet, Protocol, Route
from .precedence import (
    Capabilities,
    cert_ref,
    check_frontend,
    effective_ports,
    frontend_tls,
    origin,
)


def resolve(placement: Placement, caps: Capabilities) -> tuple[Gateway, list[Diagnostic]]:
    part = _resolve_spec(placement, placement.target.implementation_for(
        _class_name(placement.spec)))
    return _finish(part, None if part.broken else _frontend_checks(part, caps), placement)


@dataclass(frozen=True, slots=True)
class _SpecPart:
    """What `resolve` finds from the spec and the implementation's name alone; the same on
    every cluster where the implementation's name is the same. The checks that depend on the
    capabilities (`_frontend_checks`) or name the cluster (`_finish`) are made apart."""

    gateway: Gateway
    head: tuple[Diagnostic, ...]  # listeners, listener sets, conflicts, clientValidation
    broken: bool  # clientValidation has errors: its other checks would only follow on
    listeners: tuple[Listener, ...]  # the gateway's and the tenants', as written
    client_validation: Node | None
    tail: tuple[Diagnostic, ...]  # routes
    sets: tuple[ListenerSet, ...]  # as written (the order of their diagnostics)
    tenant: tuple[Listener, ...]
    allowed: str | None


class SpecMemo:
    """`resolve` for the placements of one compile, with the part of the work that does not
    depend on the cluster done once per (spec object, implementation name), and the frontend
    checks once per (spec object, implementation name, capabilities): an intent without
    overrides has the same spec on every cluster it is placed on. The diagnostics and the
    gateway are exactly those of `resolve`."""

    def __init__(self) -> None:
        # by id(spec): the spec (kept alive, so that the id stays its own) and what it gave
        self.parts: dict[tuple[int, str | None], tuple[Node, _SpecPart]] = {}
        self.checks: dict[tuple[int, str | None, Capabilities],
                          tuple[Node, tuple[Diagnostic, ...]]] = {}

    def resolve(self, placement: Placement,
                caps: Capabilities) -> tuple[Gateway, list[Diagnostic]]:
        spec = placement.spec
        implementation = placement.target.implementation_for(_class_name(spec))
        found = self.parts.get((id(spec), implementation))
        if found is None or found[0] is not spec:
            found = self.parts[id(spec), implementation] = \
                (spec, _resolve_spec(placement, implementation))
        part = found[1]
        if part.broken:
            return _finish(part, None, placement)
        checked = self.checks.get((id(spec), implementation, caps))
        if checked is None or checked[0] is not spec:
            checked = self.checks[id(spec), implementation, caps] = \
                (spec, _frontend_checks(part, caps))
        return _finish(part, checked[1], placement)


def _class_name(spec: Node) -> str:
    return str(spec.scalar("gatewayClassName"))


def _resolve_spec(placement: Placement, implementation: str | None) -> _SpecPart:
    """Everything of `resolve` that reads neither the capabilities nor the cluster's name or
    implementation reference (only the implementation's name)."""
    spec = placement.spec
    intent = placement.intent
    class_name = _class_name(spec)
    listeners, problems = _listeners(spec.seq("listeners"), intent.namespace)
    sets, tenant, found = _listener_sets(spec.seq("listenerSets"))
    problems += found
    problems += _listener_conflicts([*listeners, *tenant])
    cv_node = spec.get("clientValidation")
    frontend, found = frontend_tls(cv_node, intent.namespace)
    problems += found
    ports = effective_ports([*listeners, *tenant], frontend)
    allowed = spec.scalar("allowedListeners")
    allowed_node = spec.get("allowedListeners")
    routes, tail = _routes(spec.seq("routes"), listeners, intent.namespace, sets, tenant)
    gateway = Gateway(
        name=intent.name,
        namespace=intent.namespace,
        class_name=class_name,
        implementation=implementation,
        listeners=tuple(sorted([*listeners, *tenant],
                               key=lambda lst: (lst.port, lst.listener_set or "", lst.name))),
        frontend=frontend,
        ports=ports,
        routes=tuple(sorted(routes, key=lambda r: (r.namespace, r.name))),
        origin=origin(intent.root),
        listener_sets=tuple(sorted(sets, key=lambda ls: (ls.namespace, ls.name))),
        allowed_listeners=str(allowed) if allowed is not None else None,
        allowed_listeners_origin=origin(allowed_node) if allowed_node is not None else None,
    )
    return _SpecPart(gateway, tuple(problems), bool(found), (*listeners, *tenant), cv_node,
                     tuple(tail), tuple(sets), tuple(tenant), allowed)


def _frontend_checks(part: _SpecPart, caps: Capabilities) -> tuple[Diagnostic, ...]:
    gw = part.gateway
    return tuple(check_frontend(gw.frontend, gw.ports, list(part.listeners), caps,
                                gw.implementation, gw.class_name, part.client_validation))


def _finish(part: _SpecPart, checked: tuple[Diagnostic, ...] | None,
            placement: Placement) -> tuple[Gateway, list[Diagnostic]]:
    """The gateway and the diagnostics of `placement`, in `resolve`'s order, with the checks
    that name the cluster. `checked`: the frontend checks (None when clientValidation is
    broken)."""
    gw = part.gateway
    target = placement.target
    impl_ref = target.implementation_ref(gw.class_name)
    problems = list(part.head)
    problems += check_listener_sets(part.sets, part.tenant, gw.ports, part.allowed,
                                    gw.namespace, impl_ref, target.name)
    if checked is not None:
        problems += checked
        problems += check_enforcement(gw.frontend, impl_ref, target.name, gw.ports,
                                      list(part.tenant), gw.namespace)
    problems += part.tail
    return gw, problems


def _listener_sets(nodes: Sequence[Node]) -> tuple[list[ListenerSet], list[Listener],
                                                   list[Diagnostic]]:
    """Tenant ListenerSets and their listeners (certificates in the set's namespace)."""
    sets, listeners, problems = [], [], []
    for node in nodes:
        name, namespace = str(node.scalar("name")), str(node.scalar("namespace"))
        sets.append(ListenerSet(name, namespace,
                                str(node.scalar("requireClientValidation", "AllowValidOnly")),
                                origin(node)))
        for item in node.seq("listeners"):
            lst, found = _listener(item, namespace)
            problems += found
            listeners.append(replace(lst, listener_set=name))
    return sets, listeners, problems


def _listener(node: Node, namespace: str) -> tuple[Listener, list[Diagnostic]]:
    protocol = Protocol(node.scalar("protocol", "HTTPS"))
    cert_node = node.get("certificate")
    problems: list[Diagnostic] = []
    name = str(node.scalar("name"))
    if node.get("port") is None:
        problems.append(error("MissingField", f"listener {name!r} has no port", node.loc,
                              "add 'port: <1-65535>'"))
    if protocol is Protocol.HTTPS and cert_node is None:
        problems.append(error("MissingServerCertificate", f"HTTPS listener {name!r} has no "
                              "certificate", node.loc, "add 'certificate: <name>' (a logical "
                              "server certificate served by the cluster's certificate source)"))
    if protocol is not Protocol.HTTPS and cert_node is not None:
        problems.append(error("UnexpectedCertificate", f"{protocol.value} listener {name!r} "
                              "cannot have a certificate", cert_node.loc,
                              "HTTP listeners do not use TLS and TLS listeners pass TLS through; "
                              "use protocol HTTPS to terminate TLS"))
    listener = Listener(
        name=name,
        port=int(node.scalar("port", 0)),
        protocol=protocol,
        hostname=node.scalar("hostname"),
        certificate=cert_ref(cert_node, namespace) if cert_node and protocol is
        Protocol.HTTPS else None,
        allowed_routes=str(node.scalar("allowedRoutes", "Same")),
        origin=origin(node),
    )
    return listener, problems


def _listeners(nodes: Sequence[Node], namespace: str) -> tuple[list[Listener], list[Diagnostic]]:
    listeners: list[Listener] = []
    problems: list[Diagnostic] = []
    for node in nodes:
        listener, found = _listener(node, namespace)
        problems += found
        listeners.append(listener)
    return listeners, problems


def _listener_conflicts(listeners: Sequence[Listener]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    by_port: dict[int, Listener] = {}
    seen: dict[tuple[int, str | None], Listener] = {}
    for lst in listeners:
        first = by_port.setdefault(lst.port, lst)
        if _kind(first) != _kind(lst):
            out.append(error("ProtocolConflict", f"listener {lst.name!r} uses "
                             f"{lst.protocol.value} on port {lst.port}, where listener "
                             f"{first.name!r} uses {first.protocol.value}", lst.origin.location,
                             "use a different port: one port serves one protocol"))
            continue
        prior = seen.setdefault((lst.port, lst.hostname), lst)
        if prior is not lst:
            out.append(error("HostnameConflict", f"listeners {prior.name!r} and {lst.name!r} "
                             f"both serve port {lst.port} for hostname "
                             f"{lst.hostname or '(any)'}", lst.origin.location,
                             "give each listener on a port a distinct hostname"))
    return out


def _kind(listener: Listener) -> str:
    # HTTPS and TLS listeners can share a port (both start with a TLS handshake); HTTP cannot.
    return "http" if listener.protocol is Protocol.HTTP else "tls"


def _routes(nodes: Sequence[Node], listeners: Sequence[Listener], gw_namespace: str,
            sets: Sequence[ListenerSet],
            tenant: Sequence[Listener]) -> tuple[list[Route], list[Diagnostic]]:
    by_name = {lst.name: lst for lst in listeners}
    set_ns = {ls.name: ls.namespace for ls in sets}
    routes: list[Route] = []
    problems: list[Diagnostic] = []
    for node in nodes:
        set_name = node.scalar("listenerSet")
        if set_name is not None and set_name not in set_ns:
            problems.append(error("UnknownListenerSet", f"route {node.scalar('name')!r} "
                                  f"attaches to unknown ListenerSet {set_name!r}",
                                  node.find(("listenerSet",)).loc,
                                  "known: " + (", ".join(sorted(set_ns)) or "none")))
            continue
        if set_name is None:
            route, found = _route(node, by_name, gw_namespace)
        else:  # attached to a tenant ListenerSet: its listeners, its namespace
            members = {lst.name: lst for lst in tenant if lst.listener_set == set_name}
            route, found = _route(node, members, set_ns[set_name])
            route = replace(route, listener_set=str(set_name)) if route else None
        problems += found
        if route is not None:
            routes.append(route)
    return routes, problems


def _route(node: Node, listeners: dict[str, Listener],
           gw_namespace: str) -> tuple[Route | None, list[Diagnostic]]:
    name = str(node.scalar("name"))
    namespace = str(node.scalar("namespace", gw_namespace))
    backends = [_backend(b, namespace) for b in node.seq("backends")]
    if not backends:
        return None, [error("MissingBackend", f"route {name!r} has no backends", node.loc,
                            "add 'backends: [{service: <name>, port: <port>}]'")]
    section_nodes = node.seq("listeners")
    problems: list[Diagnostic] = []
    for section in section_nodes:
        if section.value not in listeners:
            problems.append(error("UnknownListener", f"route {name!r} attaches to unknown "
                                  f"listener {section.value!r}", section.loc,
                                  "known: " + ", ".join(sorted(listeners))))
    sections = tuple(str(s.value) for s in section_nodes)
    attached = [listeners[s] for s in sections if s in listeners] if sections else \
        [lst for lst in listeners.values() if lst.protocol is not Protocol.TLS]
    problems += _route_attachment(name, namespace, gw_namespace, attached, node)
    route = Route(name, namespace, tuple(str(h.value) for h in node.seq("hostnames")), sections,
                  str(node.scalar("pathPrefix", "/")), tuple(backends), origin(node))
    return route, problems


def _route_attachment(name: str, namespace: str, gw_namespace: str,
                      attached: Sequence[Listener], node: Node) -> list[Diagnostic]:
    if any(lst.protocol is Protocol.TLS for lst in attached):
        return [error("RouteOnTLSListener", f"HTTPRoute {name!r} cannot attach to a TLS "
                      "passthrough listener", node.loc, "attach it to HTTP or HTTPS listeners")]
    if namespace == gw_namespace:
        return []
    if not any(lst.allowed_routes == "All" for lst in attached):
        return [error("RouteNotAllowed", f"route {name!r} lives in namespace {namespace!r}, "
                      f"but no listener it attaches to admits routes from other namespaces",
                      node.loc, "set 'allowedRoutes: All' on the listener(s) it attaches to")]
    if any(lst.allowed_routes != "All" for lst in attached):
        return [warning("RoutePartiallyAttached", f"route {name!r} in namespace {namespace!r} "
                        "is refused by listeners with 'allowedRoutes: Same'", node.loc,
                        "name the listeners it should attach to in 'listeners'")]
    return []


def _backend(node: Node, namespace: str) -> Backend:
    weight = node.scalar("weight")
    return Backend(str(node.scalar("service")), str(node.scalar("namespace", namespace)),
                   int(node.scalar("port")), int(weight) if weight is not None else None,
                   origin(node))
