"""Generate a realistic fleet repository: N GatewayIntents x C ClusterTargets.

Deterministic for given (N, C): the same arguments write the same policy files (certificates are
derived from fixed seeds). What varies across intents, each chosen by a per-intent RNG:
- 1 to 4 listeners: HTTPS on 443 (always), HTTPS admin on 8443, plain HTTP on 80, TLS
  passthrough on 9443;
- client validation in both modes, against a shared corporate CA, a per-namespace CA in the
  gateway's namespace, or a per-namespace CA kept in a shared namespace (ReferenceGrants);
  perPort overrides on the admin port, some clientRestrictions;
- 0 to 3 routes, some in other namespaces, some with cross-namespace backends;
- environment overrides (staging) and cluster overrides on a share of the intents.
Clusters cycle through Gateway API v1.6.1/standard, v1.5.1/experimental, v1.4.0/experimental,
v1.5.1/standard and v1.6.1/experimental: every one of them supports frontend TLS (v1.4.0
standard does not, so a fleet that validates client certificates cannot target it). Odd
clusters reference CA files instead of inlining them into the Envoy configs. Certificates come
from a local PEM source (`pki/`).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from compiler.pki import derive_private_key, issue_certificate, make_ca

API_VERSIONS = (("v1.6.1", "standard"), ("v1.5.1", "experimental"), ("v1.4.0", "experimental"),
                ("v1.5.1", "standard"), ("v1.6.1", "experimental"))
NAMESPACES = 40
HEADER = "apiVersion: mtlsc.dev/v1alpha1\n"
NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2045, 1, 1, tzinfo=UTC)


def _pem(cert: object) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined]


def _key(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def write_pki(directory: Path) -> None:
    """A corporate CA (which also issues the server certificates) and one CA per namespace."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca("Fleet Corp CA", not_before=NOT_BEFORE, not_after=NOT_AFTER,
                         key=derive_private_key("fleet", "corp"), serial=1)
    (directory / "corp-ca.pem").write_bytes(_pem(ca))
    for role in ("srv-a", "srv-b"):
        cert, key = issue_certificate(ca, ca_key, common_name=f"{role}.fleet.example",
                                      dns_names=["*.fleet.example"], server=True,
                                      not_before=NOT_BEFORE, not_after=NOT_AFTER,
                                      key=derive_private_key("fleet", role), serial=2)
        (directory / f"{role}.pem").write_bytes(_pem(cert) + _pem(ca))
        (directory / f"{role}-key.pem").write_bytes(_key(key))
    for n in range(NAMESPACES):
        cert, _ = make_ca(f"Namespace {n} CA", not_before=NOT_BEFORE, not_after=NOT_AFTER,
                          key=derive_private_key("fleet", f"ns-{n}"), serial=10 + n)
        (directory / f"ns-ca-{n}.pem").write_bytes(_pem(cert))


def source_yaml() -> str:
    cas = "".join(f"      ns-ca-{n}: {{file: ns-ca-{n}.pem}}\n" for n in range(NAMESPACES))
    return (HEADER + "kind: CertificateSource\nmetadata: {name: fleet-pki}\nspec:\n  local:\n"
            "    directory: pki\n    certificates:\n"
            "      srv-a: {certificate: srv-a.pem, privateKey: srv-a-key.pem}\n"
            "      srv-b: {certificate: srv-b.pem, privateKey: srv-b-key.pem}\n"
            "    caBundles:\n      corp-ca: {file: corp-ca.pem}\n" + cas)


def clusters_yaml(clusters: int) -> str:
    docs = []
    for j in range(clusters):
        version, channel = API_VERSIONS[j % len(API_VERSIONS)]
        env = "staging" if j == 0 else "prod"
        envoy = "  envoy: {caBundles: file, adminPort: 9901}\n" if j % 2 else ""
        docs.append(HEADER + f"kind: ClusterTarget\nmetadata: {{name: c{j}}}\nspec:\n"
                    f"  environment: {env}\n"
                    f"  gatewayAPI: {{version: {version}, channel: {channel}}}\n"
                    "  implementations: {envoy-gateway: envoy-gateway}\n"
                    "  namespaces: [shared-cas]\n"
                    f"  certificateSource: fleet-pki\n{envoy}")
    return "---\n".join(docs)


def _ca_ref(rng: random.Random, n: int) -> str:
    pick = rng.random()
    if pick < 0.5:
        return "corp-ca"
    if pick < 0.8:
        return f"ns-ca-{n}"
    return f"{{name: ns-ca-{n}, namespace: shared-cas}}"


def intent_yaml(i: int) -> str:
    rng = random.Random(i)
    n = i % NAMESPACES
    ns = f"team-{n}"
    lines = [HEADER + f"kind: GatewayIntent\nmetadata:\n  name: gw-{i}\n  namespace: {ns}\n"
             "spec:\n  gatewayClassName: envoy-gateway\n  environments: [prod, staging]\n"
             "  listeners:\n"
             f"  - {{name: https, port: 443, protocol: HTTPS, hostname: gw-{i}.fleet.example, "
             "certificate: srv-a, allowedRoutes: All}\n"]
    admin = rng.random() < 0.6
    if admin:
        lines.append(f"  - {{name: admin, port: 8443, protocol: HTTPS, hostname: "
                     f"admin-{i}.fleet.example, certificate: srv-b}}\n")
    if rng.random() < 0.3:
        lines.append("  - {name: plain, port: 80, protocol: HTTP, allowedRoutes: All}\n")
    if rng.random() < 0.2:
        lines.append(f"  - {{name: passthrough, port: 9443, protocol: TLS, hostname: "
                     f"tls-{i}.fleet.example}}\n")
    mode = "AllowValidOnly" if rng.random() < 0.85 else "AllowInsecureFallback"
    cas = ", ".join(dict.fromkeys(_ca_ref(rng, n) for _ in range(rng.choice((1, 1, 2)))))
    lines.append(f"  clientValidation:\n    default:\n      mode: {mode}\n"
                 f"      caBundles: [{cas}]\n")
    if rng.random() < 0.1:
        lines.append("      clientRestrictions:\n        subjectAltNames:\n"
                     f"          uri: [\"spiffe://fleet.example/ns/{ns}/sa/client-{i}\"]\n"
                     "        enforcedElsewhere: mesh authorization policy\n")
    if admin and rng.random() < 0.5:
        other = "AllowInsecureFallback" if mode == "AllowValidOnly" else "AllowValidOnly"
        lines.append(f"    perPort:\n    - port: 8443\n      mode: {other}\n"
                     f"      caBundles: [corp-ca]\n")
    routes = rng.choice((0, 1, 1, 2, 3))
    if routes:
        lines.append("  routes:\n")
    for r in range(routes):
        route_ns = ns if rng.random() < 0.7 else f"app-{n}"
        # One ReferenceGrant per (route namespace, backend namespace) lists every Service; at
        # 10,000 intents a shared namespace collects ~58, more than the 16 `to` entries Gateway
        # API allows, so mtlsc splits it (docs/output.md#referencegrant).
        cross = rng.random() >= 0.8
        backend_ns = f", namespace: shared-{n}" if cross else ""
        lines.append(f"  - name: route-{i}-{r}\n    namespace: {route_ns}\n"
                     f"    hostnames: [gw-{i}.fleet.example]\n    pathPrefix: /r{r}\n"
                     f"    backends:\n    - {{service: svc-{i}-{r}, port: 8080{backend_ns}}}\n")
        if rng.random() < 0.3:
            lines.append(f"    - {{service: svc-{i}-{r}-canary, port: 8080, weight: 5}}\n")
    return "".join(lines)


def override_yaml(i: int, clusters: int) -> str | None:
    rng = random.Random(-i - 1)
    gateway = f"{{name: gw-{i}, namespace: team-{i % NAMESPACES}}}"
    pick = rng.random()
    if pick < 0.1:
        return (HEADER + f"kind: GatewayOverride\nmetadata: {{name: gw-{i}-staging}}\nspec:\n"
                f"  gateway: {gateway}\n  environment: staging\n  patch:\n"
                "    clientValidation:\n      default: {mode: AllowInsecureFallback}\n")
    if pick < 0.15 and clusters > 1:
        cluster = f"c{1 + i % (clusters - 1)}"
        return (HEADER + f"kind: GatewayOverride\nmetadata: {{name: gw-{i}-{cluster}}}\nspec:\n"
                f"  gateway: {gateway}\n  cluster: {cluster}\n  patch:\n"
                "    listeners:\n    - {name: https, hostname: edge-"
                f"{i}.fleet.example}}\n")
    return None


def write_fleet(root: Path, intents: int, clusters: int) -> None:
    """Write policies/ and pki/ of a fleet of `intents` x `clusters` under `root`."""
    pol = root / "policies"
    (pol / "gateways").mkdir(parents=True, exist_ok=True)
    (pol / "overrides").mkdir(parents=True, exist_ok=True)
    write_pki(root / "pki")
    (pol / "clusters.yaml").write_text(clusters_yaml(clusters))
    (pol / "source.yaml").write_text(source_yaml())
    for i in range(intents):
        group = pol / "gateways" / f"team-{i % NAMESPACES}"
        group.mkdir(exist_ok=True)
        (group / f"gw-{i}.yaml").write_text(intent_yaml(i))
        override = override_yaml(i, clusters)
        if override is not None:
            (pol / "overrides" / f"gw-{i}.yaml").write_text(override)


def intent_path(root: Path, i: int) -> Path:
    return root / "policies" / "gateways" / f"team-{i % NAMESPACES}" / f"gw-{i}.yaml"
