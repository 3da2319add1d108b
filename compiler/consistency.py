"""The Gateway manifest and the Envoy config must enforce the same client validation.

Both are rendered from one model, but this check reads only the *emitted* objects: GEP-91
applied to the Gateway (with the CA ConfigMaps' bytes) against the validation contexts of the
Envoy listeners. Any difference is a compiler bug and fails the compile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# (mode, CA bundle bytes) or None for "no client validation"
PortPolicy = tuple[str, bytes] | None


def gateway_policy(gateway: Mapping[str, Any],
                   ca_configmaps: Mapping[tuple[str, str], bytes],
                   listener_sets: Sequence[Mapping[str, Any]] = ()) -> dict[int, PortPolicy]:
    """GEP-91 on an emitted Gateway: per HTTPS port, perPort entry if any, else default.
    Listeners of attached ListenerSets get the Gateway's validation for their port."""
    spec = gateway["spec"]
    namespace = gateway["metadata"]["namespace"]
    frontend = spec.get("tls", {}).get("frontend")
    out: dict[int, PortPolicy] = {}
    attached = [lst for ls in listener_sets for lst in ls["spec"]["listeners"]]
    for listener in [*spec["listeners"], *attached]:
        if listener["protocol"] != "HTTPS":
            continue
        port = listener["port"]
        validation = None
        if frontend is not None:
            entry = next((p for p in frontend.get("perPort", []) if p["port"] == port), None)
            validation = (entry["tls"] if entry else frontend["default"]).get("validation")
        out[port] = None if validation is None else (
            validation.get("mode", "AllowValidOnly"),
            b"".join(ca_configmaps[(r.get("namespace", namespace), r["name"])].rstrip(b"\n")
                     + b"\n" for r in validation["caCertificateRefs"]))
    return out


def _context_policy(chain: Mapping[str, Any],
                    files: Mapping[str, bytes]) -> PortPolicy | str:
    tls = chain.get("transport_socket", {}).get("typed_config", {})
    context = tls.get("common_tls_context", {}).get("validation_context")
    required = bool(tls.get("require_client_certificate", False))
    if context is None:
        return None if not required else "requires a certificate without trust anchors"
    trusted = context["trusted_ca"]
    bundle = trusted["inline_string"].encode("ascii") if "inline_string" in trusted else \
        files.get(trusted.get("filename", ""), b"")
    untrusted = context.get("trust_chain_verification") == "ACCEPT_UNTRUSTED"
    if required and not untrusted:
        return ("AllowValidOnly", bundle)
    if not required and untrusted:
        return ("AllowInsecureFallback", bundle)
    return f"require_client_certificate={required} with untrusted={untrusted}"


def envoy_policy(bootstrap: Mapping[str, Any],
                 files: Mapping[str, bytes]) -> dict[int, PortPolicy | str]:
    """Per TLS port of an Envoy bootstrap; a string describes an inconsistency."""
    out: dict[int, PortPolicy | str] = {}
    for listener in bootstrap["static_resources"]["listeners"]:
        chains = [c for c in listener["filter_chains"] if "transport_socket" in c]
        if not chains:
            continue
        policies = {repr(p): p for p in (_context_policy(c, files) for c in chains)}
        port = listener["address"]["socket_address"]["port_value"]
        out[port] = next(iter(policies.values())) if len(policies) == 1 else \
            "filter chains of one port carry different validation contexts"
    return out


def differences(gateway: Mapping[str, Any], bootstrap: Mapping[str, Any],
                ca_configmaps: Mapping[tuple[str, str], bytes],
                files: Mapping[str, bytes] | None = None,
                listener_sets: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    """Human-readable differences; empty when both outputs enforce the same thing.
    `files` maps CA file paths to their bytes when the config references CA files."""
    expected = gateway_policy(gateway, ca_configmaps, listener_sets)
    actual = envoy_policy(bootstrap, files or {})
    problems = []
    for port in sorted(set(expected) | set(actual)):
        want, got = expected.get(port, "absent"), actual.get(port, "absent")
        if want != got:
            problems.append(f"port {port}: Gateway gives {_show(want)}, Envoy {_show(got)}")
    return problems


def _show(policy: PortPolicy | str) -> str:
    if policy is None:
        return "no client validation"
    if isinstance(policy, str):
        return policy
    return f"{policy[0]} with {policy[1].count(b'BEGIN CERTIFICATE')} CA certificate(s)"
