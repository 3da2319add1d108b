"""Vault as the certificate source, end to end through the CLI, unmodified hvac and real HTTP
(and HTTPS) to the test Vault-API server. No hvac patching or mocking anywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from compiler.cli import main
from compiler.pki import create_dev_pki
from tests.support import REPO
from tests.vault.conftest import write_tls_files
from tests.vault.server import FakeVault

TOKEN = "s.mtlsc-test-root-token"
SECRET_MARKERS = ("PRIVATE KEY", TOKEN, "approle-secret-id", "k8s-jwt-value", "oidc-jwt-value")

TARGET = """
apiVersion: mtlsc.dev/v1alpha1
kind: ClusterTarget
metadata: {name: prod}
spec:
  gatewayAPI: {version: v1.6.1, channel: standard}
  certificateSource: vault
"""
INTENT = """
apiVersion: mtlsc.dev/v1alpha1
kind: GatewayIntent
metadata: {name: gw, namespace: edge}
spec:
  gatewayClassName: envoy-gateway
  clusters: [prod]
  listeners:
  - {name: a, port: 8443, protocol: HTTPS, certificate: https-cert, hostname: example.com}
  - {name: b, port: 8444, protocol: HTTPS, certificate: https-cert, hostname: example.com}
  clientValidation:
    default: {caBundles: [ca-cert]}
    perPort:
    - {port: 8444, caBundles: [ca-cert, partner-ca]}
"""


def source_yaml(auth: str = "{method: token}", extra: str = "", ca: str = "",
                partner: str = "kv1: {mount: kv, path: partners/ca}") -> str:
    return f"""
apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {{name: vault}}
spec:
  vault:
    auth: {auth}
    deadlineSeconds: 2{ca}
    certificates:
      https-cert:
        kv2: {{mount: secret, path: gateways/https-cert}}
    caBundles:
      ca-cert:
        kv2: {{mount: secret, path: gateways/client-ca}}
      partner-ca:
        {partner}{extra}
"""


@pytest.fixture(scope="module")
def pems(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("vault-pki")
    create_dev_pki(directory)
    other = tmp_path_factory.mktemp("vault-pki-2")
    create_dev_pki(other, seed="rotated")
    names = ("ca-cert", "server-cert", "server-key")
    out = {n: (directory / f"{n}.pem").read_text() for n in names}
    out.update({f"rotated-{n}": (other / f"{n}.pem").read_text() for n in names})
    return out


@pytest.fixture
def vault(monkeypatch: pytest.MonkeyPatch, pems: dict[str, str]) -> Iterator[FakeVault]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeVault() as server:
        seed(server, pems)
        yield server


def seed(server: FakeVault, pems: dict[str, str], namespace: str = "") -> None:
    if namespace:
        server.create_namespace(namespace)
    server.enable_kv1("kv", namespace=namespace)
    server.add_token(TOKEN, namespace=namespace)
    server.put_kv2("secret", "gateways/https-cert", {"tls.crt": pems["server-cert"],
                                                     "tls.key": pems["server-key"]},
                   namespace=namespace)
    server.put_kv2("secret", "gateways/client-ca", {"ca.crt": pems["ca-cert"]},
                   namespace=namespace)
    server.put_kv1("kv", "partners/ca", {"ca.crt": pems["ca-cert"]}, namespace=namespace)


def repo(tmp_path: Path, source: str, intent: str = INTENT) -> Path:
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "policies" / "target.yaml").write_text(TARGET)
    (root / "policies" / "source.yaml").write_text(source)
    (root / "policies" / "intent.yaml").write_text(intent)
    return root


def run(root: Path, vault: FakeVault, *args: str, env: dict[str, str] | None = None) -> Result:
    base = {"VAULT_ADDR": vault.url, "VAULT_TOKEN": TOKEN, "VAULT_NAMESPACE": "",
            "VAULT_CACERT": ""}
    command = args[0].split()  # "lock update" is a subcommand
    return CliRunner().invoke(main, [*command, "--root", str(root), *args[1:]],
                              env={**base, **(env or {})})


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "policies" not in p.parts}


def assert_no_secrets(*texts: str | bytes) -> None:
    for text in texts:
        body = text.decode() if isinstance(text, bytes) else text
        for marker in SECRET_MARKERS:
            assert marker not in body


# --- the example through Vault ----------------------------------------------------------------


def test_example_compiles_byte_identical_from_vault_and_local(tmp_path: Path,
                                                              vault: FakeVault) -> None:
    local = tmp_path / "local"
    shutil.copytree(REPO / "policies", local / "policies")
    assert CliRunner().invoke(main, ["compile", "--root", str(local)]).exit_code == 0
    pki = local / ".mtlsc" / "dev-pki"
    pems = {n: (pki / f"{n}.pem").read_text() for n in ("ca-cert", "server-cert", "server-key")}
    vault.put_kv2("secret", "dev/https-cert", {"tls.crt": pems["server-cert"],
                                               "tls.key": pems["server-key"]})
    vault.put_kv2("secret", "dev/ca-cert", {"ca.crt": pems["ca-cert"]})
    remote = tmp_path / "remote"
    shutil.copytree(REPO / "policies", remote / "policies")
    (remote / "policies" / "sources" / "dev-pki.yaml").write_text("""
apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {name: dev-pki}
spec:
  vault:
    auth: {method: token}
    certificates:
      https-cert: {kv2: {mount: secret, path: dev/https-cert}}
    caBundles:
      ca-cert: {kv2: {mount: secret, path: dev/ca-cert}}
      partner-ca: {kv2: {mount: secret, path: dev/ca-cert}}
""")
    result = run(remote, vault, "compile")
    assert result.exit_code == 0, result.output
    remote_files = {k: v for k, v in snapshot(remote).items()
                    if k != "mtlsc.lock" and not k.startswith(".mtlsc/")}  # local state
    local_files = {k: v for k, v in snapshot(local).items() if not k.startswith(".mtlsc/")}
    assert remote_files == local_files
    assert (remote / "mtlsc.lock").is_file()


# --- engines, pins and the lockfile -----------------------------------------------------------


def lock_of(root: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML

    data: dict[str, Any] = YAML(typ="safe").load((root / "mtlsc.lock").read_text())
    return data


def test_lockfile_round_trip_and_rotation(tmp_path: Path, vault: FakeVault,
                                          pems: dict[str, str]) -> None:
    root = repo(tmp_path, source_yaml())
    assert run(root, vault, "compile").exit_code == 0
    lock = lock_of(root)["sources"]["vault"]
    assert lock["certificates"]["https-cert"]["version"] == 1
    assert lock["caBundles"]["partner-ca"]["engine"] == "kv1"
    assert len(lock["caBundles"]["ca-cert"]["fingerprints"]) == 1
    before = snapshot(root)
    # Rotation in Vault: the locked version keeps the output reproducible...
    vault.put_kv2("secret", "gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]})
    assert run(root, vault, "compile").exit_code == 0
    assert snapshot(root) == before
    assert run(root, vault, "check").exit_code == 0
    # ...until the lock is moved forward, which the diff then shows.
    result = run(root, vault, "lock update", "--ref", "ca-cert")
    assert result.exit_code == 0, result.output
    after = lock_of(root)["sources"]["vault"]
    assert after["caBundles"]["ca-cert"]["version"] == 2
    assert after["caBundles"]["ca-cert"]["fingerprints"] != lock["caBundles"]["ca-cert"][
        "fingerprints"]
    assert after["certificates"] == lock["certificates"]
    changed = {k for k in snapshot(root) if snapshot(root)[k] != before.get(k)}
    assert "mtlsc.lock" in changed and "overlays/prod/edge/configmap-ca-cert.yaml" in changed
    assert_no_secrets(*snapshot(root).values())


def test_pinned_version_in_source_config(tmp_path: Path, vault: FakeVault,
                                         pems: dict[str, str]) -> None:
    vault.put_kv2("secret", "gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]})
    source = source_yaml().replace("path: gateways/client-ca}",
                                   "path: gateways/client-ca, version: 1}")
    root = repo(tmp_path, source)
    assert run(root, vault, "compile").exit_code == 0
    ca = (root / "overlays/prod/edge/configmap-ca-cert.yaml").read_text()
    assert pems["ca-cert"].splitlines()[1] in ca


def test_check_fails_when_the_locked_version_is_deleted_or_destroyed(
        tmp_path: Path, vault: FakeVault) -> None:
    root = repo(tmp_path, source_yaml())
    assert run(root, vault, "compile").exit_code == 0
    before = snapshot(root)
    vault.delete_kv2("secret", "gateways/client-ca", [1])
    result = run(root, vault, "check")
    assert result.exit_code == 3
    assert "VaultVersionDeleted" in result.output and "intent.yaml:" in result.output
    vault.destroy_kv2("secret", "gateways/client-ca", [1])
    result = run(root, vault, "compile")
    assert result.exit_code == 3 and "VaultVersionDestroyed" in result.output
    assert snapshot(root) == before


def test_kv1_change_at_the_same_place_is_a_lock_mismatch(tmp_path: Path, vault: FakeVault,
                                                         pems: dict[str, str]) -> None:
    root = repo(tmp_path, source_yaml())
    assert run(root, vault, "compile").exit_code == 0
    vault.put_kv1("kv", "partners/ca", {"ca.crt": pems["rotated-ca-cert"]})
    result = run(root, vault, "compile")
    assert result.exit_code == 3 and "LockMismatch" in result.output


def test_pki_issuer_is_pinned_by_id(tmp_path: Path, vault: FakeVault,
                                    pems: dict[str, str]) -> None:
    first = vault.add_pki_issuer("pki", pems["ca-cert"], name="first", default=True)
    root = repo(tmp_path, source_yaml(partner="pki: {mount: pki, issuer: default}"))
    assert run(root, vault, "compile").exit_code == 0
    assert lock_of(root)["sources"]["vault"]["caBundles"]["partner-ca"]["issuerId"] == first
    before = snapshot(root)
    vault.add_pki_issuer("pki", pems["rotated-ca-cert"], name="second", default=True)
    assert run(root, vault, "compile").exit_code == 0
    assert snapshot(root) == before  # still the locked issuer
    assert run(root, vault, "lock update").exit_code == 0
    assert lock_of(root)["sources"]["vault"]["caBundles"]["partner-ca"]["issuerId"] != first


# --- authentication, namespaces and TLS -------------------------------------------------------


@pytest.mark.parametrize("method", ["token-file", "approle", "kubernetes", "jwt"])
def test_auth_methods(tmp_path: Path, vault: FakeVault, method: str) -> None:
    paths = ["secret/", "kv/"]
    env: dict[str, str] = {"VAULT_TOKEN": ""}
    if method == "token-file":
        (tmp_path / "token").write_text(TOKEN + "\n")
        auth = f"{{method: token, tokenFile: {tmp_path / 'token'}}}"
    elif method == "approle":
        vault.add_approle("role-123", "approle-secret-id", paths)
        auth = "{method: approle, roleId: role-123}"
        env["VAULT_SECRET_ID"] = "approle-secret-id"
    elif method == "kubernetes":
        vault.add_kubernetes_role("mtlsc", "k8s-jwt-value", paths)
        (tmp_path / "sa-token").write_text("k8s-jwt-value")
        auth = f"{{method: kubernetes, role: mtlsc, jwtFile: {tmp_path / 'sa-token'}}}"
    else:
        vault.add_jwt_role("mtlsc-ci", "oidc-jwt-value", paths, mount="github")
        auth = "{method: jwt, role: mtlsc-ci, mount: github, jwtEnv: VAULT_JWT}"
        env["VAULT_JWT"] = "oidc-jwt-value"
    root = repo(tmp_path, source_yaml(auth=auth))
    result = run(root, vault, "compile", env=env)
    assert result.exit_code == 0, result.output
    assert_no_secrets(result.output, *snapshot(root).values())


def test_wrong_credentials_fail_with_a_clear_error(tmp_path: Path, vault: FakeVault) -> None:
    vault.add_approle("role-123", "approle-secret-id", ["secret/"])
    root = repo(tmp_path, source_yaml(auth="{method: approle, roleId: role-123}"))
    result = run(root, vault, "compile", env={"VAULT_SECRET_ID": "wrong"})
    assert result.exit_code == 3 and "VaultAuthFailed" in result.output
    assert "wrong" not in result.output
    assert not (root / "overlays").exists()


def test_namespaces(tmp_path: Path, vault: FakeVault, pems: dict[str, str]) -> None:
    seed(vault, pems, namespace="team-a")
    vault.put_kv2("secret", "gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]},
                  namespace="team-a")
    root = repo(tmp_path, source_yaml())
    assert run(root, vault, "compile", env={"VAULT_NAMESPACE": "team-a"}).exit_code == 0
    ca = (root / "overlays/prod/edge/configmap-ca-cert.yaml").read_text()
    assert pems["rotated-ca-cert"].splitlines()[1] in ca
    assert vault.count("secret/", namespace="team-a") == 2
    assert vault.count("secret/", namespace="") == 0


def test_tls_with_custom_ca_and_refusal_of_an_unverified_server(
        tmp_path: Path, pems: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    files = write_tls_files(tmp_path)
    with FakeVault(tls=(files.cert, files.key)) as server:
        seed(server, pems)
        root = repo(tmp_path, source_yaml())
        refused = run(root, server, "compile")
        assert refused.exit_code == 3 and "VaultTLSError" in refused.output
        ok = run(root, server, "compile", env={"VAULT_CACERT": str(files.ca)})
        assert ok.exit_code == 0, ok.output


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["503", "429", "500", "502", "drop", "malformed", "latency"])
def test_transient_faults_are_retried(tmp_path: Path, vault: FakeVault, fault: str) -> None:
    root = repo(tmp_path, source_yaml().replace("deadlineSeconds: 2", "deadlineSeconds: 20"))
    if fault.isdigit():
        vault.fail_every(2, int(fault))
    elif fault == "drop":
        vault.drop_connections(3)
    elif fault == "malformed":
        vault.malformed_json(2)
    else:
        vault.latency(0.05)
    result = run(root, vault, "compile")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("fault", ["forbidden", "missing", "sealed"])
def test_permanent_faults_fail_closed(tmp_path: Path, vault: FakeVault, fault: str) -> None:
    root = repo(tmp_path, source_yaml())
    assert run(root, vault, "compile").exit_code == 0
    before = snapshot(root)
    env: dict[str, str] = {}
    if fault == "forbidden":
        vault.add_token("narrow-token", paths=["kv/"])
        env["VAULT_TOKEN"] = "narrow-token"
        expected = "VaultPermissionDenied"
    elif fault == "missing":
        (root / "policies" / "source.yaml").write_text(
            source_yaml().replace("gateways/client-ca", "gateways/nope"))
        expected = "VaultSecretNotFound"
    else:
        vault.seal()
        expected = "VaultUnavailable"
    result = run(root, vault, "compile", env=env)
    assert result.exit_code == 3, result.output
    assert expected in result.output and "policies/intent.yaml:" in result.output
    assert snapshot(root) == before


def test_each_distinct_secret_is_read_once(tmp_path: Path, vault: FakeVault) -> None:
    two_clusters = TARGET + "---" + TARGET.replace("name: prod", "name: prod-2")
    root = repo(tmp_path, source_yaml(), INTENT.replace("[prod]", "[prod, prod-2]"))
    (root / "policies" / "target.yaml").write_text(two_clusters)
    vault.reset_counts()
    assert run(root, vault, "compile").exit_code == 0
    reads = {path for (_, path, _) in vault.requests if path.startswith(("secret/", "kv/"))}
    assert sorted(reads) == ["kv/partners/ca", "secret/data/gateways/client-ca",
                             "secret/data/gateways/https-cert"]
    assert sum(n for (_, path, _), n in vault.requests.items()
               if path.startswith(("secret/", "kv/"))) == 3


def test_no_secret_in_any_output_format(tmp_path: Path, vault: FakeVault) -> None:
    root = repo(tmp_path, source_yaml())
    for fmt in ("text", "json", "github"):
        result = run(root, vault, "compile", "--format", fmt)
        assert result.exit_code == 0
        assert_no_secrets(result.output)
    vault.seal()
    for fmt in ("text", "json", "github"):
        result = run(root, vault, "check", "--format", fmt)
        assert result.exit_code == 3
        assert_no_secrets(result.output)
    assert_no_secrets(*snapshot(root).values())


# --- ExternalSecret ---------------------------------------------------------------------------


def test_external_secret_maps_the_locked_version(tmp_path: Path, vault: FakeVault,
                                                 pems: dict[str, str]) -> None:
    vault.put_kv2("secret", "gateways/https-cert", {"tls.crt": pems["server-cert"],
                                                    "tls.key": pems["server-key"]})
    extra = "\n    externalSecrets: {storeName: vault-backend}"
    root = repo(tmp_path, source_yaml(extra=extra))
    result = run(root, vault, "compile", "--format", "json")
    assert result.exit_code == 0, result.output
    path = root / "overlays/prod/edge/externalsecret-https-cert.yaml"
    from ruamel.yaml import YAML

    obj = YAML(typ="safe").load(path.read_text())
    assert obj["spec"]["target"] == {"name": "https-cert", "creationPolicy": "Owner",
                                     "template": {"type": "kubernetes.io/tls"}}
    assert obj["spec"]["secretStoreRef"] == {"name": "vault-backend",
                                             "kind": "ClusterSecretStore"}
    assert [d["remoteRef"] for d in obj["spec"]["data"]] == [
        {"key": "gateways/https-cert", "property": "tls.crt", "version": "2"},
        {"key": "gateways/https-cert", "property": "tls.key", "version": "2"}]
    listed = json.loads(result.output)["files"]
    assert "overlays/prod/edge/externalsecret-https-cert.yaml" in listed
    assert_no_secrets(path.read_bytes())


def test_unknown_pki_issuer_is_not_retried(tmp_path: Path, vault: FakeVault,
                                           pems: dict[str, str]) -> None:
    vault.add_pki_issuer("pki", pems["ca-cert"], name="first", default=True)
    root = repo(tmp_path, source_yaml(partner="pki: {mount: pki, issuer: nope}")
                .replace("deadlineSeconds: 2", "deadlineSeconds: 60"))
    vault.reset_counts()
    result = run(root, vault, "compile")
    assert result.exit_code == 3 and "VaultSecretNotFound" in result.output
    assert vault.count("pki/issuer/nope") == 1


def test_diff_with_a_vault_source_shows_no_secret(tmp_path: Path, vault: FakeVault,
                                                  pems: dict[str, str]) -> None:
    root = repo(tmp_path, source_yaml())
    assert run(root, vault, "compile").exit_code == 0
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", "-C", str(root), *args], check=True,
                       env={**os.environ, **env}, capture_output=True)
    vault.put_kv2("secret", "gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]})
    assert run(root, vault, "lock update").exit_code == 0
    for fmt in ("text", "json", "markdown"):
        result = run(root, vault, "diff", "--base", "HEAD", "--format", fmt)
        assert result.exit_code == 0, result.output
        assert "TrustAnchorAdded" in result.output or "trust anchors" in result.output
        assert "BEGIN CERTIFICATE" not in result.output
        assert_no_secrets(result.output)


def test_external_secrets_chosen_per_cluster(tmp_path: Path, vault: FakeVault) -> None:
    extra = "\n    externalSecrets: {storeName: vault-backend}"
    root = repo(tmp_path, source_yaml(extra=extra), INTENT.replace("[prod]", "[prod, a, b]"))
    others = (TARGET.replace("name: prod", "name: a").replace(
        "certificateSource: vault", "certificateSource: vault\n  externalSecrets: "
        "{storeName: team-a-store, storeKind: SecretStore}") + "---" + TARGET.replace(
        "name: prod", "name: b").replace("certificateSource: vault", "certificateSource: "
                                         "vault\n  externalSecrets: false"))
    (root / "policies" / "others.yaml").write_text(others)
    assert run(root, vault, "compile").exit_code == 0
    from ruamel.yaml import YAML

    def store(cluster: str) -> object:
        path = root / f"overlays/{cluster}/edge/externalsecret-https-cert.yaml"
        return YAML(typ="safe").load(path.read_text())["spec"]["secretStoreRef"] \
            if path.exists() else None

    assert store("prod") == {"name": "vault-backend", "kind": "ClusterSecretStore"}
    assert store("a") == {"name": "team-a-store", "kind": "SecretStore"}
    assert store("b") is None
