"""What each compiled cluster offers: its Gateway API capabilities and ReferenceGrant version
(read from the cluster's schemas), and the checks of its ClusterTarget (a known certificate
source, a Gateway API version mtlsc has schemas for). Pure."""

from __future__ import annotations

from collections.abc import Sequence

from .diagnostics import Diagnostic, error, for_cluster
from .k8s.validate import SchemaStore
from .load import Policies
from .model import Target
from .precedence import Capabilities


def capabilities(store: SchemaStore, target: Target) -> Capabilities | None:
    schema = store.get(target.gateway_api_version, target.channel,
                       "gateway.networking.k8s.io/v1", "Gateway")
    if schema is None:
        return None
    spec = schema.document["properties"]["spec"]["properties"]
    frontend = spec.get("tls", {}).get("properties", {}).get("frontend")
    if frontend is None:
        return Capabilities(frontend_tls=False, max_ca_refs=None)
    refs = frontend["properties"]["default"]["properties"]["validation"]["properties"][
        "caCertificateRefs"]
    return Capabilities(frontend_tls=True, max_ca_refs=refs.get("maxItems"))


def reference_grant_version(store: SchemaStore, target: Target) -> str:
    """v1 where the cluster's Gateway API serves ReferenceGrant v1 (v1.5 and later), else
    v1beta1."""
    served = store.get(target.gateway_api_version, target.channel,
                       "gateway.networking.k8s.io/v1", "ReferenceGrant")
    return "v1" if served is not None else "v1beta1"


def check_targets(targets: Sequence[Target], policies: Policies,
                   store: SchemaStore) -> tuple[dict[str, Capabilities], list[Diagnostic]]:
    sources = {s.name for s in policies.sources}
    caps: dict[str, Capabilities] = {}
    out: list[Diagnostic] = []
    for target in targets:
        found_here: list[Diagnostic] = []
        if target.certificate_source not in sources:
            found_here.append(error(
                "UnknownCertificateSource", f"ClusterTarget {target.name!r} uses "
                f"unknown CertificateSource {target.certificate_source!r}",
                target.source_location, "known: " + (", ".join(sorted(sources)) or "(none)")))
        found = capabilities(store, target)
        if found is None:
            found_here.append(error(
                "UnsupportedGatewayAPIVersion", f"no Gateway API schema for "
                f"{target.gateway_api_version}/{target.channel}", target.api_location,
                "use one of: " + ", ".join(f"{v}/{c}" for v, c in store.available()) +
                "; or add it with `mtlsc schemas import <CRD files>`"))
        else:
            caps[target.name] = found
        out += for_cluster(found_here, target.name)
    return caps, out
