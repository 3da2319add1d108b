"""GEP-91 client-certificate validation: default versus perPort, resolved per port.

The rules (GEP-91, GEP-3567, docs/precedence.md):
- a perPort entry applies to every listener that serves HTTPS on its port;
- `default` applies to HTTPS listeners on ports without a perPort entry;
- HTTP and TLS-passthrough listeners are never affected;
- a perPort entry replaces the default for its port as a whole. In the API an omitted perPort
  `mode` means AllowValidOnly. In the intent language an omitted `mode` or `caBundles` of a perPort
  entry is inherited from the intent's default, and the emitted Gateway states it explicitly;
- validation is per port, not per hostname: all HTTPS listeners on a port share one validation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .diagnostics import Diagnostic, error, warning
from .located import Node
from .model import (
    CertRef,
    ClientRestrictions,
    FrontendTLS,
    Listener,
    Mode,
    Origin,
    PerPort,
    PortValidation,
    Protocol,
    Validation,
    ValidationSource,
)
from .profiles import load_profile


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the target's Gateway API version/channel supports (read from its schema)."""

    frontend_tls: bool
    max_ca_refs: int | None


def origin(node: Node) -> Origin:
    """Where the node's value comes from; the same object for every call on one node (the
    resolved gateways of every cluster share it)."""
    memo = node.origin_memo
    if memo is not None and memo.location is node.loc and memo.layer == node.layer:
        return memo
    made = node.origin_memo = Origin(node.loc, node.layer)
    return made


def cert_ref(node: Node, namespace: str) -> CertRef:
    if node.is_map:
        return CertRef(str(node.scalar("name")), str(node.scalar("namespace", namespace)),
                       origin(node))
    return CertRef(str(node.value), namespace, origin(node))


def _restrictions(node: Node | None) -> ClientRestrictions:
    if node is None:
        return ClientRestrictions()
    sans = node.get("subjectAltNames")
    elsewhere = node.scalar("enforcedElsewhere")
    return ClientRestrictions(
        san_dns=tuple(str(n.value) for n in (sans.seq("dns") if sans else [])),
        san_uri=tuple(str(n.value) for n in (sans.seq("uri") if sans else [])),
        certificate_hashes=tuple(
            str(n.value).replace(":", "").lower() for n in node.seq("certificateHashes")),
        enforced_elsewhere=str(elsewhere) if elsewhere is not None else None,
        origin=origin(node),
    )


def _default(node: Node, namespace: str) -> tuple[Validation | None, list[Diagnostic]]:
    cas = node.get("caBundles")
    if cas is None:
        return None, [error("MissingCACertificate", "clientValidation.default has no caBundles",
                            node.loc, "add 'caBundles: [<ca-name>]': a validation without a CA "
                            "would trust whatever the implementation trusts by default")]
    mode = node.get("mode")
    validation = Validation(
        mode=Mode(mode.value) if mode else Mode.ALLOW_VALID_ONLY,
        ca_bundles=tuple(cert_ref(n, namespace) for n in cas.value),
        mode_origin=origin(mode or node),
        ca_origin=origin(cas),
        restrictions=_restrictions(node.get("clientRestrictions")),
    )
    return validation, []


def _per_port(node: Node, default: Validation | None,
              namespace: str) -> tuple[PerPort | None, list[Diagnostic]]:
    port = int(node.scalar("port"))
    if node.scalar("disabled"):
        extra = [k for k in ("mode", "caBundles", "clientRestrictions") if node.get(k)]
        if extra:
            return None, [error("ConflictingPerPort", f"perPort {port}: 'disabled: true' "
                                f"cannot be combined with {', '.join(extra)}", node.loc,
                                "remove 'disabled' or the validation fields")]
        return PerPort(port, None, origin(node)), []
    mode_node, cas = node.get("mode"), node.get("caBundles")
    inherited: set[str] = set()
    if cas is None and default is None:
        return None, [error("MissingCACertificate", f"perPort {port} has no caBundles and "
                            "there is no default to inherit them from", node.loc,
                            "add 'caBundles: [<ca-name>]' to this perPort entry")]
    if mode_node is not None:
        mode, mode_origin = Mode(mode_node.value), origin(mode_node)
    elif default is not None:
        mode, mode_origin = default.mode, default.mode_origin
        inherited.add("mode")
    else:
        mode, mode_origin = Mode.ALLOW_VALID_ONLY, origin(node)  # the API's own default
    if cas is not None:
        refs, ca_origin = tuple(cert_ref(n, namespace) for n in cas.value), origin(cas)
    else:
        assert default is not None
        refs, ca_origin = default.ca_bundles, default.ca_origin
        inherited.add("caBundles")
    restr_node = node.get("clientRestrictions")
    restrictions = _restrictions(restr_node) if restr_node is not None else (
        default.restrictions if default is not None else ClientRestrictions())
    validation = Validation(mode, refs, mode_origin, ca_origin, restrictions,
                            frozenset(inherited))
    return PerPort(port, validation, origin(node)), []


def frontend_tls(node: Node | None, namespace: str) -> tuple[FrontendTLS | None, list[Diagnostic]]:
    """The intent's clientValidation as an explicit FrontendTLS (None when absent)."""
    if node is None or (node.get("default") is None and not node.seq("perPort")):
        return None, []
    problems: list[Diagnostic] = []
    default: Validation | None = None
    default_node = node.get("default")
    if default_node is not None:
        default, problems = _default(default_node, namespace)
    entries: list[PerPort] = []
    for item in node.seq("perPort"):
        entry, found = _per_port(item, default, namespace)
        problems += found
        if entry is not None:
            entries.append(entry)
    entries.sort(key=lambda e: e.port)
    return FrontendTLS(default, origin(default_node) if default_node else None,
                       tuple(entries)), problems


def effective_ports(listeners: Sequence[Listener],
                    frontend: FrontendTLS | None) -> tuple[PortValidation, ...]:
    """GEP-91: the validation each HTTPS port gets from the emitted Gateway."""
    https: dict[int, list[str]] = {}
    for listener in listeners:
        if listener.protocol is Protocol.HTTPS:
            https.setdefault(listener.port, []).append(listener.key)
    per_port = {e.port: e for e in frontend.per_port} if frontend else {}
    out = []
    for port in sorted(https):
        names = tuple(sorted(https[port]))
        if port in per_port:
            out.append(PortValidation(port, ValidationSource.PER_PORT,
                                      per_port[port].validation, names))
        elif frontend is not None and frontend.default is not None:
            out.append(PortValidation(port, ValidationSource.DEFAULT, frontend.default, names))
        else:
            out.append(PortValidation(port, ValidationSource.NONE, None, names))
    return tuple(out)


def check_frontend(frontend: FrontendTLS | None, ports: Sequence[PortValidation],
                   listeners: Sequence[Listener], caps: Capabilities,
                   implementation: str | None, class_name: str,
                   cv_node: Node | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    if frontend is not None and not caps.frontend_tls:
        assert cv_node is not None
        out.append(error("FrontendTLSUnsupported", "this cluster's Gateway API version/channel "
                         "has no spec.tls.frontend (client certificate validation)",
                         cv_node.key_loc or cv_node.loc,
                         "upgrade the cluster to Gateway API v1.5 (standard) or use the "
                         "experimental channel, or remove clientValidation for this cluster"))
        return out
    out += _check_ca_limits(frontend, caps)
    out += _check_unused_per_port(frontend, listeners)
    out += _check_disabled(frontend, implementation, class_name)
    out += _check_effective(ports, {lst.key: lst for lst in listeners})
    return out


def validations(frontend: FrontendTLS | None) -> list[tuple[str, Validation]]:
    if frontend is None:
        return []
    found = [("default", frontend.default)] if frontend.default else []
    found += [(f"perPort {e.port}", e.validation) for e in frontend.per_port if e.validation]
    return found


def _check_ca_limits(frontend: FrontendTLS | None, caps: Capabilities) -> list[Diagnostic]:
    if caps.max_ca_refs is None:
        return []
    out = []
    for label, validation in validations(frontend):
        count = len(validation.ca_bundles)
        if count > caps.max_ca_refs and "caBundles" not in validation.inherited:
            out.append(error("TooManyCACertificateRefs", f"{label}: {count} CA bundles, but "
                             f"this cluster's Gateway API allows at most {caps.max_ca_refs} "
                             "caCertificateRefs", validation.ca_origin.location,
                             "merge CA certificates into fewer bundles (one bundle may hold "
                             "several certificates) or upgrade the cluster's Gateway API"))
    return out


def _check_unused_per_port(frontend: FrontendTLS | None,
                           listeners: Sequence[Listener]) -> list[Diagnostic]:
    https_ports = {lst.port for lst in listeners if lst.protocol is Protocol.HTTPS}
    return [
        warning("PerPortWithoutHTTPSListener", f"perPort {e.port} matches no HTTPS listener; "
                "it has no effect", e.origin.location,
                "remove the entry or fix the port (perPort only affects HTTPS listeners)")
        for e in (frontend.per_port if frontend else ()) if e.port not in https_ports
    ]


def _check_disabled(frontend: FrontendTLS | None, implementation: str | None,
                    class_name: str) -> list[Diagnostic]:
    if frontend is None or frontend.default is None:
        return []  # without a default, a disabled port is simply left out of perPort
    out = []
    for entry in frontend.per_port:
        if entry.validation is not None:
            continue
        out.append(_disabled_port(entry, implementation, class_name))
    return out


def _disabled_port(entry: PerPort, implementation: str | None, class_name: str) -> Diagnostic:
    where = entry.origin.location
    # What the implementation does with a perPort entry without `validation` comes from its
    # profile (compiler/profiles); an unconfirmed fact counts as unknown.
    profile = load_profile(implementation) if implementation else None
    behaviour = profile.value("perPortWithoutValidation") if profile else None
    if behaviour == "disables":
        return warning("PerPortWithoutValidation", f"perPort {entry.port} is emitted without "
                       f"validation: {implementation} then turns client validation off on "
                       "this port, but other implementations fall back to the default",
                       where, "keep this only if the gateway class stays on "
                       f"{implementation}")
    if behaviour == "falls-back-to-default":
        return error("PerPortWithoutValidation", f"perPort {entry.port} wants no client "
                     f"validation, but {implementation} applies the default validation to a "
                     "perPort entry without validation", where,
                     "move this listener to a Gateway without client validation, or remove "
                     "'disabled: true'")
    if profile is not None:
        return error("UnknownImplementation", f"perPort {entry.port} wants no client "
                     f"validation, but what {implementation} does with a perPort entry without "
                     "validation is not confirmed in its profile", where,
                     "move this listener to a Gateway without client validation, or see "
                     "docs/implementations.md")
    return error("UnknownImplementation", f"perPort {entry.port} wants no client validation, "
                 "but implementations disagree on what a perPort entry without validation "
                 f"means and gatewayClassName {class_name!r} is not mapped to a known one",
                 where, f"add '{class_name}: <implementation>' to the ClusterTarget's "
                 "spec.implementations (agentgateway, envoy-gateway, istio, "
                 "nginx-gateway-fabric)")


def _check_effective(ports: Sequence[PortValidation],
                     listeners: dict[str, Listener]) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for port in ports:
        v = port.validation
        if v is None and port.source is ValidationSource.NONE:
            out.append(warning("NoClientValidation", f"HTTPS port {port.port} (listeners "
                               f"{', '.join(port.listeners)}) gets no client certificate "
                               "validation: the implementation's default trust applies",
                               listeners[port.listeners[0]].origin.location,
                               "add clientValidation.default or a perPort entry with "
                               "caBundles for this port"))
        elif v is not None and v.mode is Mode.ALLOW_INSECURE_FALLBACK:
            out.append(warning("InsecureFrontendValidationMode", f"port {port.port} uses "
                               "AllowInsecureFallback: clients without a valid certificate are "
                               "accepted and authorization is left to the backend",
                               v.mode_origin.location, "use AllowValidOnly outside testing"))
    return out
