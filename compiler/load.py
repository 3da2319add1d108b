"""Stage 1: read policy files into checked, located documents.

`load_texts` is pure (file name → text in, documents and diagnostics out); `read_policy_files`
(from `policy_files`, re-exported here) is the only part that touches the disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from .diagnostics import Diagnostic, error
from .intent_schema import check_document
from .located import Document, Node, parse_documents
from .model import EnvoySettings, ImplementationRef, Origin, Target
from .policy_files import PolicyFiles, read_policy_files
from .schema_memo import file_digest
from .secrets.vault_config import VaultSourceConfig, vault_config

if TYPE_CHECKING:
    from .schema_memo import CleanFiles

DEFAULT_EXPIRY_WARNING_DAYS = 30
__all__ = ["Policies", "PolicyFiles", "load_texts", "read_policy_files"]


@dataclass(frozen=True, slots=True)
class IntentDoc:
    """A GatewayIntent as loaded: name, namespace, its located tree, and its `clusters` and
    `environments` sections by name."""

    name: str
    namespace: str
    root: Node
    clusters: tuple[tuple[str, Node], ...]
    environments: tuple[tuple[str, Node], ...]

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class OverrideDoc:
    """A GatewayOverride as loaded: the intent it patches (`gateway_key`), the environment or
    cluster it is for, and its located tree."""

    name: str
    gateway_key: str
    environment: str | None
    cluster: str | None
    root: Node

    @property
    def patch(self) -> Node:
        node = self.root.find(("spec", "patch"))
        return node


@dataclass(frozen=True, slots=True)
class LocalSourceConfig:
    """A CertificateSource of the `local` kind: a PEM directory, and per logical name the files
    of a certificate (certificate, private key) or of a CA bundle."""

    name: str
    directory: str
    create_dev_pki: bool
    certificates: Mapping[str, tuple[str, str]]
    ca_bundles: Mapping[str, str]
    origin: Origin


SourceConfig = LocalSourceConfig | VaultSourceConfig


@dataclass(slots=True)
class Policies:
    """Everything the policy files hold, by kind: what stage 1 hands to the rest of the
    pipeline."""

    intents: list[IntentDoc] = field(default_factory=list)
    overrides: list[OverrideDoc] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    sources: list[SourceConfig] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    guardrails: list[Node] = field(default_factory=list)  # Guardrail roots (compiler/guardrails)
    # SHA-256 over each file's display name and content (`schema_memo.file_digest`; None for
    # text that cannot be encoded): what the documents of that file are a function of.
    file_digests: dict[str, str | None] = field(default_factory=dict)


def load_texts(texts: Mapping[str, str | bytes],
               clean: CleanFiles | None = None) -> tuple[Policies, list[Diagnostic]]:
    """Parse and check policy files (text or bytes by display path).

    Given the result of `read_policy_files`, the files it could not read are reported too.
    With `clean` (`schema_memo`), files known to pass the intent schema check skip it, and
    files found clean are added.
    """
    policies = Policies()
    diagnostics: list[Diagnostic] = list(texts.problems) if isinstance(texts, PolicyFiles) else []
    for file in sorted(texts):
        text = texts[file]
        docs, problems = parse_documents(text, file)
        diagnostics += problems
        digest = policies.file_digests[file] = file_digest(file, text)
        known = digest is not None and clean is not None and digest in clean
        file_clean = True
        for doc in docs:
            problems = [] if known else check_document(doc.root)
            diagnostics += problems
            if not problems:
                policies.documents.append(doc)
                _classify(doc.root, policies)
            file_clean = file_clean and not problems
        if clean is not None and digest is not None and file_clean:
            clean.add(digest)
    diagnostics += _check_unique(policies)
    return policies, diagnostics


def _origin(node: Node) -> Origin:
    return Origin(node.loc, node.layer)


def _named(node: Node | None) -> tuple[tuple[str, Node], ...]:
    if node is None:
        return ()
    return tuple((str(item.value), item) for item in node.value)


def _classify(root: Node, policies: Policies) -> None:
    kind = root.scalar("kind")
    meta = root.get("metadata")
    spec = root.get("spec")
    assert meta is not None and spec is not None  # guaranteed by the schema
    name = str(meta.scalar("name"))
    if kind == "GatewayIntent":
        policies.intents.append(IntentDoc(name, str(meta.scalar("namespace")), root,
                                          _named(spec.get("clusters")),
                                          _named(spec.get("environments"))))
    elif kind == "GatewayOverride":
        gw = spec.get("gateway")
        assert gw is not None
        policies.overrides.append(OverrideDoc(
            name, f"{gw.scalar('namespace')}/{gw.scalar('name')}",
            spec.scalar("environment"), spec.scalar("cluster"), root))
    elif kind == "ClusterTarget":
        policies.targets.append(_target(name, root, spec))
    elif kind == "CertificateSource":
        policies.sources.append(_source(name, root, spec))
    elif kind == "Guardrail":
        policies.guardrails.append(root)


def _target(name: str, root: Node, spec: Node) -> Target:
    api = spec.get("gatewayAPI")
    assert api is not None
    impls = spec.get("implementations")
    pairs = tuple(sorted((k, _impl_name(v)) for k, v in impls.items())) if impls else ()
    versions = tuple(sorted((k, str(v.scalar("version"))) for k, v in impls.items()
                            if v.is_map and v.get("version") is not None)) if impls else ()
    checks = spec.get("certificateChecks")
    days = checks.scalar("expiryWarningDays", DEFAULT_EXPIRY_WARNING_DAYS) if checks else \
        DEFAULT_EXPIRY_WARNING_DAYS
    overlap = checks.scalar("rotationOverlapDays") if checks else None
    labels = spec.get("labels")
    return Target(
        name=name,
        environment=spec.scalar("environment"),
        gateway_api_version=str(api.scalar("version")),
        channel=str(api.scalar("channel")),
        output_dir=str(spec.scalar("outputDir", f"overlays/{name}")).rstrip("/"),
        implementations=pairs,
        implementation=_implementation(spec.get("implementation")),
        implementation_versions=versions,
        certificate_source=str(spec.scalar("certificateSource")),
        expiry_warning=timedelta(days=int(days)),
        origin=_origin(root),
        source_location=spec.find(("certificateSource",)).loc,
        api_location=api.loc,
        envoy=_envoy_settings(spec.get("envoy")),
        external_secrets=_external_secrets(spec.get("externalSecrets")),
        namespaces=tuple(sorted(str(n.value) for n in spec.seq("namespaces"))),
        rotation_overlap=timedelta(days=int(overlap)) if overlap is not None else None,
        labels=tuple(sorted((k, str(v.value)) for k, v in labels.items())) if labels else (),
    )


def _impl_name(node: Node) -> str:
    return str(node.scalar("name")) if node.is_map else str(node.value)


def _implementation(node: Node | None) -> ImplementationRef | None:
    if node is None:
        return None
    version = node.scalar("version") if node.is_map else None
    return ImplementationRef(_impl_name(node), str(version) if version is not None else None,
                             node.loc)


def _external_secrets(node: Node | None) -> tuple[str, str, str] | Literal[False] | None:
    if node is None:
        return None
    if not node.is_map:
        return False  # the schema only allows `false` here
    return (str(node.scalar("storeName")), str(node.scalar("storeKind", "ClusterSecretStore")),
            str(node.scalar("refreshInterval", "1h")))


def _envoy_settings(node: Node | None) -> EnvoySettings:
    if node is None:
        return EnvoySettings()
    defaults = EnvoySettings()
    addresses = node.get("backendAddresses")
    return EnvoySettings(
        enabled=bool(node.scalar("enabled", True)),
        cert_directory=str(node.scalar("certDirectory", defaults.cert_directory)).rstrip("/"),
        inline_ca=node.scalar("caBundles", "inline") == "inline",
        cluster_domain=str(node.scalar("clusterDomain", defaults.cluster_domain)),
        listen_address=str(node.scalar("listenAddress", defaults.listen_address)),
        admin_port=node.scalar("adminPort"),
        verified_header=str(node.scalar("verifiedHeader", defaults.verified_header)),
        backend_addresses=tuple(sorted((k, str(v.value)) for k, v in addresses.items()))
        if addresses else (),
    )


def _source(name: str, root: Node, spec: Node) -> SourceConfig:
    vault = spec.get("vault")
    if vault is not None:
        return vault_config(name, vault, root.loc)
    local = spec.get("local")
    assert local is not None
    certs = local.get("certificates")
    cas = local.get("caBundles")
    return LocalSourceConfig(
        name=name,
        directory=str(local.scalar("directory")),
        create_dev_pki=bool(local.scalar("createDevPki", False)),
        certificates={k: (str(v.scalar("certificate")), str(v.scalar("privateKey")))
                      for k, v in (certs.items() if certs else ())},
        ca_bundles={k: str(v.scalar("file")) for k, v in (cas.items() if cas else ())},
        origin=_origin(root),
    )


def _check_unique(policies: Policies) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    groups: list[tuple[str, list[tuple[str, Node]]]] = [
        ("GatewayIntent", [(i.key, i.root) for i in policies.intents]),
        ("GatewayOverride", [(o.name, o.root) for o in policies.overrides]),
    ]
    for kind, entries in groups:
        out += _duplicates(kind, entries)
    out += _duplicates("ClusterTarget", [(t.name, _node_at(t.origin)) for t in policies.targets])
    out += _duplicates("Guardrail", [(str(g.find(("metadata", "name")).value), g)
                                     for g in policies.guardrails])
    out += _duplicates("CertificateSource",
                       [(s.name, _node_at(s.origin)) for s in policies.sources])
    return out


def _node_at(origin: Origin) -> Node:
    return Node(None, origin.location)


def _duplicates(kind: str, entries: list[tuple[str, Node]]) -> list[Diagnostic]:
    seen: dict[str, Node] = {}
    out: list[Diagnostic] = []
    for key, node in sorted(entries, key=lambda e: (e[0], e[1].loc.file, e[1].loc.line)):
        if key in seen:
            first = seen[key].loc
            out.append(error(f"Duplicate{kind}", f"{kind} {key!r} is defined twice (first at "
                             f"{first})", node.loc, "rename one of them or merge the two files"))
        else:
            seen[key] = node
    return out
