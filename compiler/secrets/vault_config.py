"""The `vault` block of a CertificateSource, as typed configuration."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..diagnostics import Location
from ..located import Node
from ..model import Origin
from . import SourceError

KV_DEFAULT_FIELDS = {"ca": "ca.crt", "cert": "tls.crt", "key": "tls.key"}


@dataclass(frozen=True, slots=True)
class VaultRef:
    """Where one logical certificate lives in Vault."""

    engine: str  # "kv2" | "kv1" | "pki"
    mount: str
    path: str  # KV path; for PKI the issuer reference ("default", an id or a name)
    version: int | None = None  # a KV v2 version pinned in the intent's source config
    field: str = "ca.crt"
    cert_field: str = "tls.crt"
    key_field: str = "tls.key"
    chain: bool = False  # PKI: the issuer's whole chain
    location: Location | None = None

    def describe(self) -> str:
        if self.engine == "pki":
            return f"pki {self.mount}/issuer/{self.path}"
        return f"{self.engine} {self.mount}/{self.path}"


@dataclass(frozen=True, slots=True)
class VaultAuth:
    """How a Vault source logs in (`auth`): the method, and where its role, secret or token is."""

    method: str
    mount: str | None = None
    role: str | None = None
    role_id: str | None = None
    role_id_env: str | None = None
    secret_id_env: str = "VAULT_SECRET_ID"
    secret_id_file: str | None = None
    token_file: str | None = None
    jwt_file: str | None = None
    jwt_env: str | None = None


@dataclass(frozen=True, slots=True)
class ExternalSecrets:
    """The secret store the emitted ExternalSecrets read from, and how often they refresh."""

    store_name: str
    store_kind: str = "ClusterSecretStore"
    refresh_interval: str = "1h"


@dataclass(frozen=True, slots=True)
class VaultSourceConfig:
    """A CertificateSource of the `vault` kind: the server, how to log in, how many reads at once
    and the run's deadline, and where each logical certificate and CA bundle lives."""

    name: str
    address: str | None
    namespace: str | None
    ca_cert: str | None
    auth: VaultAuth
    concurrency: int
    deadline_seconds: float
    certificates: Mapping[str, VaultRef]
    ca_bundles: Mapping[str, VaultRef]
    external_secrets: ExternalSecrets | None
    location: Location

    @property
    def origin(self) -> Origin:
        return Origin(self.location, "base")

    def ref(self, kind: str, name: str) -> VaultRef:
        """Where logical `name` of `kind` (caBundles or certificates) lives; SourceError
        UnknownCertificateRef when this source does not define it."""
        table = self.ca_bundles if kind == "caBundles" else self.certificates
        where = table.get(name)
        if where is None:
            raise SourceError("UnknownCertificateRef", f"certificate source {self.name!r} has "
                              f"no {kind} entry {name!r}", f"add '{name}' under spec.vault."
                              f"{kind} of CertificateSource {self.name!r}",
                              source_failure=False)
        return where


def _kv(engine: str, node: Node) -> VaultRef:
    version = node.scalar("version")
    return VaultRef(engine, str(node.scalar("mount")), str(node.scalar("path")),
                    int(version) if version is not None else None,
                    str(node.scalar("field", KV_DEFAULT_FIELDS["ca"])),
                    str(node.scalar("certField", KV_DEFAULT_FIELDS["cert"])),
                    str(node.scalar("keyField", KV_DEFAULT_FIELDS["key"])),
                    location=node.loc)


def vault_ref(node: Node) -> VaultRef:
    for engine in ("kv2", "kv1"):
        inner = node.get(engine)
        if inner is not None:
            return _kv(engine, inner)
    pki = node.get("pki")
    assert pki is not None  # the schema requires exactly one engine
    return VaultRef("pki", str(pki.scalar("mount")), str(pki.scalar("issuer", "default")),
                    chain=bool(pki.scalar("chain", False)), location=pki.loc)


def _auth(node: Node) -> VaultAuth:
    def opt(key: str) -> str | None:
        value = node.scalar(key)
        return None if value is None else str(value)

    return VaultAuth(method=str(node.scalar("method")), mount=opt("mount"), role=opt("role"),
                     role_id=opt("roleId"), role_id_env=opt("roleIdEnv"),
                     secret_id_env=opt("secretIdEnv") or "VAULT_SECRET_ID",
                     secret_id_file=opt("secretIdFile"), token_file=opt("tokenFile"),
                     jwt_file=opt("jwtFile"), jwt_env=opt("jwtEnv"))


def _external(node: Node | None) -> ExternalSecrets | None:
    if node is None:
        return None
    return ExternalSecrets(str(node.scalar("storeName")),
                           str(node.scalar("storeKind", "ClusterSecretStore")),
                           str(node.scalar("refreshInterval", "1h")))


def vault_config(name: str, node: Node, location: Location) -> VaultSourceConfig:
    auth = node.get("auth")
    assert auth is not None
    certs, cas = node.get("certificates"), node.get("caBundles")
    return VaultSourceConfig(
        name=name,
        address=node.scalar("address"),
        namespace=node.scalar("namespace"),
        ca_cert=node.scalar("caCert"),
        auth=_auth(auth),
        concurrency=int(node.scalar("concurrency", 8)),
        deadline_seconds=float(node.scalar("deadlineSeconds", 30)),
        certificates={k: vault_ref(v) for k, v in (certs.items() if certs else ())},
        ca_bundles={k: vault_ref(v) for k, v in (cas.items() if cas else ())},
        external_secrets=_external(node.get("externalSecrets")),
        location=location,
    )
