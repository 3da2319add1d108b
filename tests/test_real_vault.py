"""A whole-repository round trip against the session's real server (OpenBao started by the
fixture, or the Vault at VAULT_ADDR/VAULT_TOKEN, e.g. HashiCorp Vault in the GitHub workflow),
talking to it directly (no proxy). Everything is created through the API under unique names and
removed afterwards."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac  # type: ignore[import-untyped, unused-ignore]
import pytest
from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from compiler.cli import main
from compiler.pki import generate_dev_pki
from tests.vault.fixtures import World

pytestmark = pytest.mark.real_vault


@dataclass(frozen=True)
class Setup:
    world: World
    client: hvac.Client
    kv2: str
    kv1: str
    pki: str
    approle: str
    policy: str
    pems: dict[str, str]


@pytest.fixture
def real_vault(openbao: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    suffix = uuid.uuid4().hex[:8]
    client = hvac.Client(url=openbao.url, token=openbao.token, verify=openbao.ca_file or True)
    names = Setup(openbao, client, f"mtlsc-kv2-{suffix}", f"mtlsc-kv1-{suffix}",
                  f"mtlsc-pki-{suffix}", f"mtlsc-approle-{suffix}", f"mtlsc-read-{suffix}",
                  {k: v.decode() for k, v in generate_dev_pki().items()})
    client.sys.enable_secrets_engine("kv", path=names.kv2, options={"version": "2"})
    client.sys.enable_secrets_engine("kv", path=names.kv1, options={"version": "1"})
    client.sys.enable_secrets_engine("pki", path=names.pki)
    client.sys.enable_auth_method("approle", path=names.approle)
    client.sys.create_or_update_policy(names.policy, f"""
path "{names.kv2}/data/*" {{ capabilities = ["read"] }}
path "{names.kv2}/metadata/*" {{ capabilities = ["read"] }}
path "{names.kv1}/*" {{ capabilities = ["read"] }}
path "{names.pki}/issuer/*" {{ capabilities = ["read"] }}
path "{names.pki}/config/issuers" {{ capabilities = ["read"] }}
""")
    try:
        yield names
    finally:
        for mount in (names.kv2, names.kv1, names.pki):
            client.sys.disable_secrets_engine(mount)
        client.sys.disable_auth_method(names.approle)
        client.sys.delete_policy(names.policy)
        client.adapter.close()


def _seed(s: Setup) -> str:
    kv2 = s.client.secrets.kv.v2
    kv2.create_or_update_secret("gw/https", {"tls.crt": s.pems["server-cert.pem"],
                                             "tls.key": s.pems["server-key.pem"]},
                                mount_point=s.kv2)
    kv2.create_or_update_secret("gw/ca", {"ca.crt": s.pems["ca-cert.pem"]}, mount_point=s.kv2)
    s.client.secrets.kv.v1.create_or_update_secret("partners/ca",
                                                   {"ca.crt": s.pems["ca-cert.pem"]},
                                                   mount_point=s.kv1)
    generated = s.client.write(f"{s.pki}/root/generate/internal",
                               common_name="mtlsc real-vault test", ttl="24h")
    return str(generated["data"]["issuer_id"])


def _repo(tmp_path: Path, s: Setup, auth: str) -> Path:
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "all.yaml").write_text(f"""
apiVersion: mtlsc.dev/v1alpha1
kind: ClusterTarget
metadata: {{name: prod}}
spec:
  gatewayAPI: {{version: v1.6.1, channel: standard}}
  certificateSource: vault
---
apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {{name: vault}}
spec:
  vault:
    auth: {auth}
    certificates:
      https-cert: {{kv2: {{mount: {s.kv2}, path: gw/https}}}}
    caBundles:
      ca-cert: {{kv2: {{mount: {s.kv2}, path: gw/ca}}}}
      partner-ca: {{kv1: {{mount: {s.kv1}, path: partners/ca}}}}
      internal-ca: {{pki: {{mount: {s.pki}, issuer: default}}}}
    externalSecrets: {{storeName: vault-backend}}
---
apiVersion: mtlsc.dev/v1alpha1
kind: GatewayIntent
metadata: {{name: gw, namespace: edge}}
spec:
  gatewayClassName: envoy-gateway
  clusters: [prod]
  listeners:
  - {{name: a, port: 8443, protocol: HTTPS, certificate: https-cert, hostname: example.com}}
  clientValidation:
    default: {{caBundles: [ca-cert, partner-ca, internal-ca]}}
""")
    return root


def _run(s: Setup, root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    command = args[0].split()
    base = {"VAULT_ADDR": s.world.url, "VAULT_CACERT": s.world.ca_file or "",
            "VAULT_NAMESPACE": ""}
    return CliRunner().invoke(main, [*command, "--root", str(root), *args[1:]],
                              env={**base, **(env or {})})


def test_compile_lock_rotate_with_token(tmp_path: Path, real_vault: Setup) -> None:
    issuer = _seed(real_vault)
    root = _repo(tmp_path, real_vault, "{method: token}")
    result = _run(real_vault, root, "compile", env={"VAULT_TOKEN": real_vault.world.token})
    assert result.exit_code == 0, result.output
    lock = YAML(typ="safe").load((root / "mtlsc.lock").read_text())["sources"]["vault"]
    assert lock["certificates"]["https-cert"]["version"] == 1
    assert lock["caBundles"]["internal-ca"]["issuerId"] == issuer
    real_vault.client.secrets.kv.v2.create_or_update_secret(
        "gw/ca", {"ca.crt": real_vault.pems["ca-cert.pem"] + real_vault.pems["ca-cert.pem"]},
        mount_point=real_vault.kv2)
    token = {"VAULT_TOKEN": real_vault.world.token}
    assert _run(real_vault, root, "check", env=token).exit_code == 0
    updated = _run(real_vault, root, "lock update", "--ref", "ca-cert",
                   env={"VAULT_TOKEN": real_vault.world.token})
    assert updated.exit_code == 0, updated.output
    lock = YAML(typ="safe").load((root / "mtlsc.lock").read_text())["sources"]["vault"]
    assert lock["caBundles"]["ca-cert"]["version"] == 2
    for path in root.rglob("*"):
        if path.is_file() and "policies" not in path.parts:
            assert "PRIVATE KEY" not in path.read_text()


def test_approle_login_and_a_deleted_version(tmp_path: Path, real_vault: Setup) -> None:
    _seed(real_vault)
    client = real_vault.client
    client.write(f"auth/{real_vault.approle}/role/mtlsc", token_policies=real_vault.policy,
                 token_ttl="10m")
    role_id = client.read(f"auth/{real_vault.approle}/role/mtlsc/role-id")["data"]["role_id"]
    secret_id = client.write(f"auth/{real_vault.approle}/role/mtlsc/secret-id")["data"][
        "secret_id"]
    auth = f"{{method: approle, mount: {real_vault.approle}, roleId: {role_id}}}"
    root = _repo(tmp_path, real_vault, auth)
    env = {"VAULT_SECRET_ID": secret_id, "VAULT_TOKEN": ""}
    result = _run(real_vault, root, "compile", env=env)
    assert result.exit_code == 0, result.output
    assert secret_id not in result.output
    client.secrets.kv.v2.delete_secret_versions("gw/ca", versions=[1],
                                                mount_point=real_vault.kv2)
    failed = _run(real_vault, root, "check", env=env)
    assert failed.exit_code == 3 and "VaultVersionDeleted" in failed.output
