"""Checks on the resolved model that need no certificate and no secret, so `validate` (the
pre-commit hook) finds them too: every logical certificate or CA bundle name a cluster uses is
defined by that cluster's certificate source, and every CA bundle lives in a namespace the
cluster knows. Pure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from .diagnostics import Diagnostic, error, warning
from .load import LocalSourceConfig, SourceConfig
from .model import CertRef, ClusterModel, Gateway


def _defined(source: SourceConfig, section: str) -> Mapping[str, object]:
    return source.certificates if section == "certificates" else source.ca_bundles


def _source_kind(source: SourceConfig) -> str:
    return "local" if isinstance(source, LocalSourceConfig) else "vault"


def gateway_uses(gw: Gateway) -> Iterable[tuple[str, CertRef]]:
    """Every certificate and CA bundle reference an intent line makes (a bundle named on
    several lines is reported at each)."""
    for lst in gw.listeners:
        if lst.certificate is not None:
            yield "certificates", lst.certificate
    if gw.frontend is not None:
        validations = [gw.frontend.default] + [p.validation for p in gw.frontend.per_port]
        for v in validations:
            for ref in v.ca_bundles if v else ():
                yield "caBundles", ref


def undefined_references(cluster: ClusterModel,
                         sources: Mapping[str, SourceConfig]) -> list[Diagnostic]:
    """`UnknownCertificateRef` for every name the cluster's source does not define (the same
    diagnostic the source itself gives when it is asked for the name)."""
    source = sources.get(cluster.target.certificate_source)
    if source is None:
        return []  # UnknownCertificateSource is reported already
    out: dict[tuple[str, str, object], Diagnostic] = {}
    for gw in cluster.gateways:
        for section, ref in gateway_uses(gw):
            known = _defined(source, section)
            if ref.name in known:
                continue
            close = difflib.get_close_matches(ref.name, sorted(known), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            out.setdefault((section, ref.name, ref.origin.location), error(
                "UnknownCertificateRef", f"certificate source {source.name!r} has no "
                f"{section} entry {ref.name!r}", ref.origin.location,
                f"{hint}add '{ref.name}' under spec.{_source_kind(source)}.{section} of "
                f"CertificateSource {source.name!r}"))
    return list(out.values())


def known_namespaces(cluster: ClusterModel) -> set[str]:
    """Where the cluster's gateways, routes, backends and server certificates live, plus the
    ClusterTarget's `namespaces`."""
    known = set(cluster.target.namespaces)
    for gw in cluster.gateways:
        known.update(gateway_namespaces(gw))
    return known


def gateway_namespaces(gw: Gateway) -> set[str]:
    """The namespaces one gateway makes known on its cluster (`known_namespaces`)."""
    known = {gw.namespace}
    known.update(lst.certificate.namespace for lst in gw.listeners if lst.certificate)
    for route in gw.routes:
        known.add(route.namespace)
        known.update(b.namespace for b in route.backends)
    return known


def unknown_ca_namespaces(cluster: ClusterModel,
                          known: set[str] | None = None) -> list[Diagnostic]:
    """`UnknownNamespace` for a CA bundle in a namespace nothing else on the cluster uses:
    most often a typo, which would publish the bundle where no Gateway can read it.
    `known`: the cluster's known namespaces when `cluster` holds only some of its gateways
    (a delta compile)."""
    if known is None:
        known = known_namespaces(cluster)
    choices = sorted(known)
    hints: dict[str, str] = {}  # per distinct unknown namespace: the search is not cheap
    out: dict[tuple[str, object], Diagnostic] = {}
    for gw in cluster.gateways:
        for section, ref in gateway_uses(gw):
            if section != "caBundles" or ref.namespace in known:
                continue
            hint = hints.get(ref.namespace)
            if hint is None:
                close = difflib.get_close_matches(ref.namespace, choices, n=1)
                hint = hints[ref.namespace] = (f"did you mean {close[0]!r}? " if close else "") \
                    + f"if the namespace exists, list it in ClusterTarget " \
                    f"{cluster.target.name!r} spec.namespaces"
            out.setdefault((ref.namespace, ref.origin.location), warning(
                "UnknownNamespace", f"CA bundle {ref.name!r} is read from namespace "
                f"{ref.namespace!r}, which no gateway, route, backend or certificate on "
                f"cluster {cluster.target.name!r} uses", ref.origin.location, hint))
    return list(out.values())


def check_references_offline(clusters: Iterable[ClusterModel],
                             sources: Iterable[SourceConfig]) -> list[Diagnostic]:
    by_name = {s.name: s for s in sources}
    out: list[Diagnostic] = []
    for cluster in clusters:
        found = undefined_references(cluster, by_name) + unknown_ca_namespaces(cluster)
        out += [d.in_clusters(cluster.target.name) for d in found]
    return out
