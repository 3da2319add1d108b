"""pytest fixtures for the Vault tests: one real OpenBao per session (or the server at
VAULT_ADDR/VAULT_TOKEN), configured through the API, and a fault proxy per test.

Everything the tests create lives under a unique prefix (mounts `mtlsc-<hex>-...`, per-test paths
`t<n>/...`), so a shared server works. Import the fixtures in a conftest with
``from tests.vault.fixtures import openbao, openbao_tls, vault  # noqa: F401``.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import hvac  # type: ignore[import-untyped, unused-ignore]
import pytest

from tests.vault.openbao import JwtSigner, OpenBaoServer, TokenReviewStandIn
from tests.vault.proxy import FaultProxy

JWT_ISSUER = "https://token.actions.mtlsc.test"
K8S_ISSUER = "kubernetes/serviceaccount"


@dataclass
class World:
    """The server and what the session configured on it."""

    url: str
    token: str
    ca_file: str | None
    external: bool
    prefix: str
    client: hvac.Client
    signer: JwtSigner = field(default_factory=JwtSigner)
    tokenreview: TokenReviewStandIn | None = None
    namespaces: bool = False
    counter: Iterator[int] = field(default_factory=itertools.count)

    def mount(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    @property
    def kv2(self) -> str:
        return self.mount("secret")

    @property
    def kv1(self) -> str:
        return self.mount("kv")

    @property
    def policy(self) -> str:
        return self.mount("read")


def _configure(world: World) -> None:
    c = world.client
    enable_kv(c, world.kv2, world.kv1)
    c.sys.create_or_update_policy(world.policy, read_policy(world.kv2, world.kv1, world.prefix))
    c.sys.enable_auth_method("approle", path=world.mount("approle"))
    c.sys.enable_auth_method("jwt", path=world.mount("jwt"))
    c.write(f"auth/{world.mount('jwt')}/config", jwt_validation_pubkeys=[world.signer.public_pem],
            bound_issuer=JWT_ISSUER)
    c.sys.enable_auth_method("kubernetes", path=world.mount("k8s"))
    world.tokenreview = TokenReviewStandIn()
    c.write(f"auth/{world.mount('k8s')}/config", kubernetes_host=world.tokenreview.url,
            disable_local_ca_jwt=True, kubernetes_ca_cert=world.tokenreview.ca_pem())
    world.namespaces = _namespaces_work(c, world)


def _namespaces_work(c: hvac.Client, world: World) -> bool:
    """OpenBao (and Vault Enterprise) have namespaces; Vault Community Edition answers 404."""
    probe = world.mount("probe")
    try:
        c.sys.create_namespace(probe)
    except hvac.exceptions.VaultError:
        return False
    c.sys.delete_namespace(probe)
    return True


def enable_kv(c: hvac.Client, kv2: str, kv1: str) -> None:
    c.sys.enable_secrets_engine("kv", path=kv2, options={"version": "2"})
    c.sys.enable_secrets_engine("kv", path=kv1, options={"version": "1"})


def read_policy(kv2: str, kv1: str, prefix: str) -> str:
    return f"""
path "{kv2}/data/*" {{ capabilities = ["read"] }}
path "{kv2}/metadata/*" {{ capabilities = ["read"] }}
path "{kv1}/*" {{ capabilities = ["read"] }}
path "{prefix}-pki-*" {{ capabilities = ["read", "list"] }}
"""


def _teardown(world: World) -> None:
    c = world.client
    if world.namespaces:
        cleanup_namespaces(world)
    for mount in c.sys.list_mounted_secrets_engines()["data"]:
        if mount.startswith(world.prefix):
            c.sys.disable_secrets_engine(mount.rstrip("/"))
    for mount in c.sys.list_auth_methods()["data"]:
        if mount.startswith(world.prefix):
            c.sys.disable_auth_method(mount.rstrip("/"))
    c.sys.delete_policy(world.policy)
    if world.tokenreview is not None:
        world.tokenreview.close()
    c.adapter.close()


@pytest.fixture(scope="session")
def openbao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The session's Vault-API server: VAULT_ADDR/VAULT_TOKEN when both are set, otherwise an
    OpenBao dev server started here (and stopped by PID at the end)."""
    address, token = os.environ.get("VAULT_ADDR"), os.environ.get("VAULT_TOKEN")
    server = None
    if not (address and token):
        server = OpenBaoServer(tmp_path_factory.mktemp("openbao")).start()
        address, token = server.url, server.token
    ca = os.environ.get("VAULT_CACERT") if server is None else None
    client = hvac.Client(url=address, token=token, verify=ca or True, timeout=30)
    world = World(address, token, ca or None, server is None,
                  f"mtlsc-{secrets.token_hex(3)}", client)
    try:
        _configure(world)
        yield world
    finally:
        try:
            _teardown(world)
        finally:
            if server is not None:
                server.stop()


@pytest.fixture(scope="session")
def openbao_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBaoServer]:
    """A second OpenBao with `-dev-tls` (its own generated CA), always started here."""
    server = OpenBaoServer(tmp_path_factory.mktemp("openbao-tls"), tls=True).start()
    try:
        yield server
    finally:
        server.stop()


class Bao:
    """One test's view: per-test paths, helpers that configure the real server through the API,
    and the fault proxy every request of the code under test goes through."""

    def __init__(self, world: World, proxy: FaultProxy) -> None:
        self.world = world
        self.proxy = proxy
        self.tag = f"t{next(world.counter)}"
        self.kv2, self.kv1 = world.kv2, world.kv1
        self.url = proxy.url
        self.root_token = world.token
        self._clients: dict[str, hvac.Client] = {"": world.client}
        self._pki = itertools.count()
        self.secrets: list[str] = []  # credentials handed out: must never show in output

    def path(self, name: str) -> str:
        return f"{self.tag}/{name}"

    def client(self, namespace: str = "") -> hvac.Client:
        if namespace not in self._clients:
            self._clients[namespace] = hvac.Client(url=self.world.url, token=self.world.token,
                                                   verify=self.world.ca_file or True,
                                                   namespace=namespace, timeout=30)
        return self._clients[namespace]

    # --- KV ----------------------------------------------------------------------------------

    def put_kv2(self, name: str, data: dict[str, str], namespace: str = "") -> int:
        answer = self.client(namespace).secrets.kv.v2.create_or_update_secret(
            self.path(name), data, mount_point=self.kv2)
        return int(answer["data"]["version"])

    def put_kv1(self, name: str, data: dict[str, str], namespace: str = "") -> None:
        self.client(namespace).secrets.kv.v1.create_or_update_secret(
            self.path(name), data, mount_point=self.kv1)

    def delete_kv2(self, name: str, versions: list[int]) -> None:
        self.client().secrets.kv.v2.delete_secret_versions(self.path(name), versions,
                                                           mount_point=self.kv2)

    def destroy_kv2(self, name: str, versions: list[int]) -> None:
        self.client().secrets.kv.v2.destroy_secret_versions(self.path(name), versions,
                                                            mount_point=self.kv2)

    # --- PKI ---------------------------------------------------------------------------------

    def pki_mount(self) -> str:
        mount = self.world.mount(f"pki-{self.tag}-{next(self._pki)}")
        self.client().sys.enable_secrets_engine("pki", path=mount,
                                                config={"max_lease_ttl": "87600h"})
        return mount

    def root_issuer(self, mount: str, name: str) -> tuple[str, str]:
        """Generate a root CA issuer in `mount`; (issuer id, certificate PEM)."""
        data = self.client().write(f"{mount}/root/generate/internal", common_name=f"{name} CA",
                                   issuer_name=name, ttl="8760h", key_type="ec",
                                   key_bits=256)["data"]
        return str(data["issuer_id"]), str(data["certificate"])

    def intermediate_issuer(self, mount: str, parent: str, name: str) -> str:
        c = self.client()
        csr = c.write(f"{mount}/intermediate/generate/internal", common_name=f"{name} CA",
                      key_type="ec", key_bits=256)["data"]["csr"]
        signed = c.write(f"{mount}/issuer/{parent}/sign-intermediate", csr=csr,
                         common_name=f"{name} CA", ttl="4380h")["data"]["certificate"]
        imported = c.write(f"{mount}/intermediate/set-signed", certificate=signed)["data"]
        issuer = str(imported["imported_issuers"][0])
        c.write(f"{mount}/issuer/{issuer}", issuer_name=name)
        return issuer

    def set_default_issuer(self, mount: str, issuer: str) -> None:
        self.client().write(f"{mount}/config/issuers", default=issuer)

    # --- identities --------------------------------------------------------------------------

    def token(self, policy_hcl: str | None = None) -> str:
        """A token with the session's read policy, or with `policy_hcl` only."""
        policy = self.world.policy
        if policy_hcl is not None:
            policy = self.world.mount(f"policy-{self.tag}")
            self.client().sys.create_or_update_policy(policy, policy_hcl)
        answer = self.client().auth.token.create(policies=[policy], ttl="30m")
        self.secrets.append(str(answer["auth"]["client_token"]))
        return self.secrets[-1]

    def approle(self, role_id: str, secret_id: str) -> str:
        mount, role = self.world.mount("approle"), f"mtlsc-{self.tag}"
        c = self.client()
        c.write(f"auth/{mount}/role/{role}", token_policies=self.world.policy, token_ttl="10m")
        c.write(f"auth/{mount}/role/{role}/role-id", role_id=role_id)
        c.write(f"auth/{mount}/role/{role}/custom-secret-id", secret_id=secret_id)
        self.secrets.append(secret_id)
        return mount

    def jwt_role(self, audience: str = "mtlsc") -> tuple[str, str, str]:
        """A JWT role and a valid token for it: (mount, role, jwt)."""
        mount, role = self.world.mount("jwt"), f"ci-{self.tag}"
        subject = f"repo:example/gitops:ref:refs/heads/{self.tag}"
        self.client().write(f"auth/{mount}/role/{role}", role_type="jwt", user_claim="sub",
                            bound_audiences=[audience], bound_subject=subject,
                            token_policies=[self.world.policy], token_ttl="10m")
        jwt = self.world.signer.sign({"iss": JWT_ISSUER, "sub": subject, "aud": audience})
        self.secrets.append(jwt)
        return mount, role, jwt

    def kubernetes_role(self) -> tuple[str, str, str]:
        """A Kubernetes role and a service-account JWT the TokenReview stand-in accepts."""
        assert self.world.tokenreview is not None
        mount, role, namespace, account = self.world.mount("k8s"), f"gw-{self.tag}", "ci", \
            f"mtlsc-{self.tag}"
        self.client().write(f"auth/{mount}/role/{role}", bound_service_account_names=[account],
                            bound_service_account_namespaces=[namespace],
                            token_policies=[self.world.policy], token_ttl="10m")
        uid = f"uid-{self.tag}"
        jwt = self.world.signer.sign({
            "iss": K8S_ISSUER, "sub": f"system:serviceaccount:{namespace}:{account}",
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/service-account.name": account,
            "kubernetes.io/serviceaccount/service-account.uid": uid})
        self.world.tokenreview.accept(jwt, namespace, account, uid)
        self.secrets.append(jwt)
        return mount, role, jwt

    def namespace(self) -> str:
        """A child namespace with the same KV mounts (skips only on a server without
        namespaces, e.g. Vault Community Edition; OpenBao has them)."""
        if not self.world.namespaces:
            pytest.skip("this Vault server has no namespaces (OpenBao and Vault Enterprise do)")
        name = self.world.mount(f"ns-{self.tag}")
        self.client().sys.create_namespace(name)
        enable_kv(self.client(name), self.kv2, self.kv1)
        return name

    def close(self) -> None:
        for namespace, client in self._clients.items():
            if namespace:
                client.adapter.close()


@pytest.fixture
def vault(openbao: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Bao]:
    """The session's server behind a fresh fault proxy (request counts start at zero)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FaultProxy(openbao.url, ca_file=openbao.ca_file) as proxy:
        proxy.wait_listening()
        bao = Bao(openbao, proxy)
        try:
            yield bao
        finally:
            bao.close()


@pytest.fixture
def seeded(vault: Bao, pems: dict[str, str]) -> Bao:
    """The test server with the usual certificates and CA bundles written (tests.vault.repo)."""
    from tests.vault.repo import seed

    seed(vault, pems)
    return vault


def cleanup_namespaces(world: World) -> None:
    """Namespaces must be removed before their parent mounts; best effort."""
    answer: Any = world.client.adapter.list("/v1/sys/namespaces", raise_exception=False)
    keys = (answer or {}).get("data", {}).get("keys", []) if isinstance(answer, dict) else []
    for key in keys:
        if key.startswith(world.prefix):
            world.client.adapter.delete(f"/v1/sys/namespaces/{key.rstrip('/')}",
                                        raise_exception=False)



@pytest.fixture(scope="session")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two dev PKIs (the second "rotated"), made at test time."""
    from compiler.pki import create_dev_pki

    out: dict[str, str] = {}
    for prefix, seed in (("", None), ("rotated-", "rotated")):
        directory = tmp_path_factory.mktemp(f"vault-pki-{prefix or 'first'}")
        create_dev_pki(directory, seed=seed) if seed else create_dev_pki(directory)
        for name in ("ca-cert", "server-cert", "server-key"):
            out[f"{prefix}{name}"] = (directory / f"{name}.pem").read_text()
    return out
