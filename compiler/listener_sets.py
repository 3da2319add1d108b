"""Tenant ListenerSets attached to a platform gateway (Gateway API v1.5+, docs/listenersets.md).

A ListenerSet's listeners inherit the parent Gateway's spec.tls.frontend by port (GEP-91 is per
port of the parent), so a tenant listener can land on a port with a weaker posture than the
tenant asks for. Checked here, per placement:
- the gateway's allowedListeners admits the set's namespace (Same or All);
- the posture of each tenant HTTPS listener's port is at least the set's
  requireClientValidation (warning; --strict makes it an error);
- implementations that resolve the parent's CA refs in the ListenerSet's namespace
  (agentgateway, from its profile) get a warning naming the namespace.
"""

from __future__ import annotations

from collections.abc import Sequence

from .diagnostics import Diagnostic, error, warning
from .model import ImplementationRef, Listener, ListenerSet, Mode, PortValidation, Protocol
from .profiles import load_profile

STRENGTH = {"none": 0, Mode.ALLOW_INSECURE_FALLBACK.value: 1, Mode.ALLOW_VALID_ONLY.value: 2}


def _allowed(allowed: str | None, set_ns: str, gw_ns: str) -> bool:
    return allowed == "All" or (allowed == "Same" and set_ns == gw_ns)


def check_listener_sets(sets: Sequence[ListenerSet], listeners: Sequence[Listener],
                        ports: Sequence[PortValidation], allowed: str | None, gw_ns: str,
                        impl: ImplementationRef | None, cluster: str) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    by_port = {p.port: p for p in ports}
    profile = load_profile(impl.name) if impl else None
    ca_namespace = profile.value("listenerSetCANamespace") if profile else None
    seen: set[tuple[str, str]] = set()
    for ls in sets:
        where = ls.origin.location
        if (ls.namespace, ls.name) in seen:
            out.append(error("DuplicateListenerSet", f"ListenerSet {ls.namespace}/{ls.name} is "
                             "declared twice", where, "merge the two entries"))
            continue
        seen.add((ls.namespace, ls.name))
        if not _allowed(allowed, ls.namespace, gw_ns):
            out.append(error("ListenerSetNotAllowed", f"ListenerSet {ls.namespace}/{ls.name} "
                             f"would not be accepted: the gateway's allowedListeners is "
                             f"{allowed or 'None (the default)'}", where,
                             "set 'allowedListeners: All' on the gateway intent (or 'Same' "
                             "for sets in the gateway's namespace)"))
            continue
        for lst in listeners:
            if lst.listener_set != ls.name or lst.protocol is not Protocol.HTTPS:
                continue
            port = by_port.get(lst.port)
            validation = port.validation if port else None
            got = validation.mode.value if validation else "none"
            if STRENGTH[got] < STRENGTH[ls.require]:
                source = port.source.value if port else "none"
                out.append(warning(
                    "ListenerSetWeakerPort", f"listener {lst.name!r} of ListenerSet "
                    f"{ls.namespace}/{ls.name} lands on port {lst.port}, which the gateway "
                    f"gives {got if got != 'none' else 'no client validation'} (from its "
                    f"{source}), weaker than the {ls.require} the set asks for",
                    lst.origin.location, "move the listener to a port with the validation it "
                    "needs, or ask the platform team for a perPort entry for this port"))
            if validation is not None and ca_namespace == "listenerset" and \
                    ls.namespace != gw_ns and impl is not None:
                out.append(warning(
                    "ImplementationDivergence", f"{impl.name} on cluster {cluster!r} resolves "
                    f"the gateway's caCertificateRefs for ListenerSet {ls.namespace}/{ls.name} "
                    f"in namespace {ls.namespace!r}, not the gateway's: listener "
                    f"{lst.name!r} fails validation unless the CA bundles exist there too",
                    lst.origin.location, "put the CA bundle ConfigMaps in the tenant "
                    "namespace as well, or keep the set in the gateway's namespace"))
    return out
