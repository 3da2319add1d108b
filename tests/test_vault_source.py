"""Vault as the certificate source, end to end through the CLI against a real OpenBao (or the
server at VAULT_ADDR): engines, pins and the lockfile, namespaces, TLS and ExternalSecrets
(authentication: test_vault_auth.py). Unmodified hvac, real HTTP (through the fault proxy, which
only counts here)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from compiler.cli import main
from tests.support import REPO
from tests.vault.fixtures import Bao
from tests.vault.openbao import OpenBaoServer
from tests.vault.repo import (
    INTENT,
    TARGET,
    assert_no_secrets,
    lock_of,
    repo,
    run,
    seed,
    snapshot,
    source_yaml,
)

pytestmark = pytest.mark.real_vault


def test_example_compiles_byte_identical_from_vault_and_local(tmp_path: Path,
                                                              vault: Bao) -> None:
    local = tmp_path / "local"
    shutil.copytree(REPO / "policies", local / "policies")
    assert CliRunner().invoke(main, ["compile", "--root", str(local)]).exit_code == 0
    pki = local / ".mtlsc" / "dev-pki"
    pems = {n: (pki / f"{n}.pem").read_text() for n in ("ca-cert", "server-cert", "server-key")}
    vault.put_kv2("dev/https-cert", {"tls.crt": pems["server-cert"],
                                     "tls.key": pems["server-key"]})
    vault.put_kv2("dev/ca-cert", {"ca.crt": pems["ca-cert"]})
    remote = tmp_path / "remote"
    shutil.copytree(REPO / "policies", remote / "policies")
    (remote / "policies" / "sources" / "dev-pki.yaml").write_text(f"""
apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {{name: dev-pki}}
spec:
  vault:
    auth: {{method: token}}
    certificates:
      https-cert: {{kv2: {{mount: {vault.kv2}, path: {vault.path('dev/https-cert')}}}}}
    caBundles:
      ca-cert: {{kv2: {{mount: {vault.kv2}, path: {vault.path('dev/ca-cert')}}}}}
      partner-ca: {{kv2: {{mount: {vault.kv2}, path: {vault.path('dev/ca-cert')}}}}}
""")
    result = run(remote, vault, "compile")
    assert result.exit_code == 0, result.output
    remote_files = {k: v for k, v in snapshot(remote).items()
                    if k != "mtlsc.lock" and not k.startswith(".mtlsc/")}  # local state
    local_files = {k: v for k, v in snapshot(local).items() if not k.startswith(".mtlsc/")}
    assert remote_files == local_files
    assert (remote / "mtlsc.lock").is_file()


# --- engines, pins and the lockfile -----------------------------------------------------------


def test_lockfile_round_trip_and_rotation(tmp_path: Path, seeded: Bao,
                                          pems: dict[str, str]) -> None:
    vault = seeded
    root = repo(tmp_path, source_yaml(vault))
    assert run(root, vault, "compile").exit_code == 0
    lock = lock_of(root)["sources"]["vault"]
    assert lock["certificates"]["https-cert"]["version"] == 1
    assert lock["caBundles"]["partner-ca"]["engine"] == "kv1"
    assert len(lock["caBundles"]["ca-cert"]["fingerprints"]) == 1
    before = snapshot(root)
    # Rotation in Vault: the locked version keeps the output reproducible...
    vault.put_kv2("gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]})
    assert run(root, vault, "compile").exit_code == 0
    assert snapshot(root) == before
    assert run(root, vault, "check").exit_code == 0
    # ...until the lock is moved forward, which the overlays then show.
    result = run(root, vault, "lock update", "--ref", "ca-cert")
    assert result.exit_code == 0, result.output
    after = lock_of(root)["sources"]["vault"]
    assert after["caBundles"]["ca-cert"]["version"] == 2
    assert after["caBundles"]["ca-cert"]["fingerprints"] != lock["caBundles"]["ca-cert"][
        "fingerprints"]
    assert after["certificates"] == lock["certificates"]
    now = snapshot(root)
    changed = {k for k in now if now[k] != before.get(k)}
    assert "mtlsc.lock" in changed and "overlays/prod/edge/configmap-ca-cert.yaml" in changed
    assert_no_secrets(vault, *now.values())


def test_pinned_version_in_source_config(tmp_path: Path, seeded: Bao,
                                         pems: dict[str, str]) -> None:
    seeded.put_kv2("gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]})
    root = repo(tmp_path, source_yaml(seeded, ca_extra=", version: 1"))
    assert run(root, seeded, "compile").exit_code == 0
    ca = (root / "overlays/prod/edge/configmap-ca-cert.yaml").read_text()
    assert pems["ca-cert"].splitlines()[1] in ca
    assert seeded.proxy.paths(f"{seeded.kv2}/data/") == {
        f"{seeded.kv2}/data/{seeded.path('gateways/client-ca')}": 1,
        f"{seeded.kv2}/data/{seeded.path('gateways/https-cert')}": 1}


def test_check_fails_when_the_locked_version_is_deleted_or_destroyed(
        tmp_path: Path, seeded: Bao) -> None:
    root = repo(tmp_path, source_yaml(seeded))
    assert run(root, seeded, "compile").exit_code == 0
    before = snapshot(root)
    seeded.delete_kv2("gateways/client-ca", [1])
    result = run(root, seeded, "check")
    assert result.exit_code == 3, result.output
    assert "VaultVersionDeleted" in result.output and "intent.yaml:" in result.output
    seeded.destroy_kv2("gateways/client-ca", [1])
    result = run(root, seeded, "compile")
    assert result.exit_code == 3 and "VaultVersionDestroyed" in result.output
    assert snapshot(root) == before
    # Both answers come from the version read itself: no metadata read is needed.
    assert seeded.proxy.count(f"{seeded.kv2}/metadata/") == 0


def test_kv1_change_at_the_same_place_is_a_lock_mismatch(tmp_path: Path, seeded: Bao,
                                                         pems: dict[str, str]) -> None:
    root = repo(tmp_path, source_yaml(seeded))
    assert run(root, seeded, "compile").exit_code == 0
    seeded.put_kv1("partners/ca", {"ca.crt": pems["rotated-ca-cert"]})
    result = run(root, seeded, "compile")
    assert result.exit_code == 3 and "LockMismatch" in result.output


def test_missing_field_lists_the_field_names_only(tmp_path: Path, seeded: Bao) -> None:
    root = repo(tmp_path, source_yaml(seeded).replace(
        "https-cert')}}}", "https-cert')}, certField: cert.pem}}"))
    root = repo(tmp_path, source_yaml(seeded).replace(
        f"path: {seeded.path('gateways/https-cert')}}}",
        f"path: {seeded.path('gateways/https-cert')}, certField: cert.pem}}"))
    result = run(root, seeded, "compile")
    assert result.exit_code == 1, result.output
    assert "VaultFieldMissing" in result.output
    assert "'cert.pem' (its fields: tls.crt, tls.key)" in result.output
    assert_no_secrets(seeded, result.output)
    assert "BEGIN CERTIFICATE" not in result.output


# --- PKI ----------------------------------------------------------------------------------------


def test_pki_issuer_is_pinned_by_id_and_read_at_its_id(tmp_path: Path, seeded: Bao) -> None:
    mount = seeded.pki_mount()
    first, _ = seeded.root_issuer(mount, "first")
    root = repo(tmp_path, source_yaml(seeded, partner=f"pki: {{mount: {mount}, issuer: default}}"))
    assert run(root, seeded, "compile").exit_code == 0
    assert lock_of(root)["sources"]["vault"]["caBundles"]["partner-ca"]["issuerId"] == first
    assert seeded.proxy.count(f"{mount}/issuer/default") == 0
    assert seeded.proxy.count(f"{mount}/issuer/{first}") == 1
    before = snapshot(root)
    second, _ = seeded.root_issuer(mount, "second")
    seeded.set_default_issuer(mount, second)
    assert run(root, seeded, "compile").exit_code == 0
    assert snapshot(root) == before  # still the locked issuer
    assert run(root, seeded, "lock update").exit_code == 0
    assert lock_of(root)["sources"]["vault"]["caBundles"]["partner-ca"]["issuerId"] == second
    assert seeded.proxy.count(f"{mount}/issuer/default") == 0


def test_pki_issuer_by_name_with_its_chain(tmp_path: Path, seeded: Bao) -> None:
    mount = seeded.pki_mount()
    parent, parent_pem = seeded.root_issuer(mount, "root")
    child = seeded.intermediate_issuer(mount, parent, "issuing")
    partner = f"pki: {{mount: {mount}, issuer: issuing, chain: true}}"
    root = repo(tmp_path, source_yaml(seeded, partner=partner))
    result = run(root, seeded, "compile")
    assert result.exit_code == 0, result.output
    pin = lock_of(root)["sources"]["vault"]["caBundles"]["partner-ca"]
    assert pin["issuerId"] == child and len(pin["fingerprints"]) == 2
    bundle = (root / "overlays/prod/edge/configmap-partner-ca.yaml").read_text()
    assert parent_pem.splitlines()[1] in bundle
    assert seeded.proxy.count(f"{mount}/issuer/{child}") == 1


def test_unknown_pki_issuer_is_not_retried(tmp_path: Path, seeded: Bao) -> None:
    mount = seeded.pki_mount()
    seeded.root_issuer(mount, "first")
    root = repo(tmp_path, source_yaml(seeded, partner=f"pki: {{mount: {mount}, issuer: nope}}",
                                      deadline=60))
    result = run(root, seeded, "compile")
    assert result.exit_code == 3 and "VaultSecretNotFound" in result.output
    assert "no such PKI issuer" in result.output
    assert seeded.proxy.count(f"{mount}/issuers") == 1


# --- namespaces and TLS ------------------------------------------------------------------------


def test_namespaces(tmp_path: Path, vault: Bao, pems: dict[str, str]) -> None:
    namespace = vault.namespace()
    seed(vault, pems, namespace=namespace)
    vault.put_kv2("gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]},
                  namespace=namespace)
    root = repo(tmp_path, source_yaml(vault))
    result = run(root, vault, "compile", env={"VAULT_NAMESPACE": namespace})
    assert result.exit_code == 0, result.output
    ca = (root / "overlays/prod/edge/configmap-ca-cert.yaml").read_text()
    assert pems["rotated-ca-cert"].splitlines()[1] in ca
    assert vault.proxy.count(f"{vault.kv2}/", namespace=namespace) == 2
    assert vault.proxy.count(f"{vault.kv2}/", namespace="") == 0


@pytest.fixture
def tls_repo(tmp_path: Path, openbao_tls: OpenBaoServer, vault: Bao,
             pems: dict[str, str]) -> Path:
    """The TLS server holds the same secrets at the same mounts and paths."""
    import hvac  # type: ignore[import-untyped, unused-ignore]

    client = hvac.Client(url=openbao_tls.url, token=openbao_tls.token,
                         verify=str(openbao_tls.ca_file))
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    if f"{vault.kv2}/" not in mounts:
        client.sys.enable_secrets_engine("kv", path=vault.kv2, options={"version": "2"})
        client.sys.enable_secrets_engine("kv", path=vault.kv1, options={"version": "1"})
    kv2 = client.secrets.kv.v2
    kv2.create_or_update_secret(vault.path("gateways/https-cert"), {
        "tls.crt": pems["server-cert"], "tls.key": pems["server-key"]}, mount_point=vault.kv2)
    kv2.create_or_update_secret(vault.path("gateways/client-ca"), {"ca.crt": pems["ca-cert"]},
                                mount_point=vault.kv2)
    client.secrets.kv.v1.create_or_update_secret(vault.path("partners/ca"),
                                                 {"ca.crt": pems["ca-cert"]},
                                                 mount_point=vault.kv1)
    client.adapter.close()
    return repo(tmp_path, source_yaml(vault))


def test_tls_with_a_custom_ca(tls_repo: Path, openbao_tls: OpenBaoServer, vault: Bao) -> None:
    env = {"VAULT_TOKEN": openbao_tls.token, "VAULT_CACERT": str(openbao_tls.ca_file)}
    result = run(tls_repo, vault, "compile", env=env, url=openbao_tls.url)
    assert result.exit_code == 0, result.output
    assert tls_repo.joinpath("overlays/prod/edge/configmap-ca-cert.yaml").is_file()


@pytest.mark.parametrize("trust", ["system", "other-ca"])
def test_an_untrusted_server_is_refused(tls_repo: Path, openbao_tls: OpenBaoServer,
                                        vault: Bao, pems: dict[str, str], trust: str) -> None:
    env = {"VAULT_TOKEN": openbao_tls.token}
    if trust == "other-ca":
        (tls_repo / "other-ca.pem").write_text(pems["ca-cert"])
        env["VAULT_CACERT"] = "other-ca.pem"
    result = run(tls_repo, vault, "compile", env=env, url=openbao_tls.url)
    assert result.exit_code == 3, result.output
    assert result.output.count("VaultTLSError") == 1
    assert not (tls_repo / "overlays").exists()


# --- ExternalSecret and diff --------------------------------------------------------------------


def test_external_secret_maps_the_locked_version(tmp_path: Path, seeded: Bao,
                                                 pems: dict[str, str]) -> None:
    seeded.put_kv2("gateways/https-cert", {"tls.crt": pems["server-cert"],
                                           "tls.key": pems["server-key"]})
    extra = "\n    externalSecrets: {storeName: vault-backend}"
    root = repo(tmp_path, source_yaml(seeded, extra=extra))
    result = run(root, seeded, "compile", "--format", "json")
    assert result.exit_code == 0, result.output
    path = root / "overlays/prod/edge/externalsecret-https-cert.yaml"
    obj = YAML(typ="safe").load(path.read_text())
    assert obj["spec"]["target"] == {"name": "https-cert", "creationPolicy": "Owner",
                                     "template": {"type": "kubernetes.io/tls"}}
    key = seeded.path("gateways/https-cert")
    assert [d["remoteRef"] for d in obj["spec"]["data"]] == [
        {"key": key, "property": "tls.crt", "version": "2"},
        {"key": key, "property": "tls.key", "version": "2"}]
    listed = json.loads(result.output)["files"]
    assert "overlays/prod/edge/externalsecret-https-cert.yaml" in listed
    assert_no_secrets(seeded, path.read_bytes())


def test_external_secrets_chosen_per_cluster(tmp_path: Path, seeded: Bao) -> None:
    extra = "\n    externalSecrets: {storeName: vault-backend}"
    root = repo(tmp_path, source_yaml(seeded, extra=extra), INTENT.replace("[prod]",
                                                                           "[prod, a, b]"))
    others = (TARGET.replace("name: prod", "name: a").replace(
        "certificateSource: vault", "certificateSource: vault\n  externalSecrets: "
        "{storeName: team-a-store, storeKind: SecretStore}") + "---" + TARGET.replace(
        "name: prod", "name: b").replace("certificateSource: vault", "certificateSource: "
                                         "vault\n  externalSecrets: false"))
    (root / "policies" / "others.yaml").write_text(others)
    assert run(root, seeded, "compile").exit_code == 0

    def store(cluster: str) -> object:
        path = root / f"overlays/{cluster}/edge/externalsecret-https-cert.yaml"
        return YAML(typ="safe").load(path.read_text())["spec"]["secretStoreRef"] \
            if path.exists() else None

    assert store("prod") == {"name": "vault-backend", "kind": "ClusterSecretStore"}
    assert store("a") == {"name": "team-a-store", "kind": "SecretStore"}
    assert store("b") is None


def git_commit_all(root: Path) -> None:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", "-C", str(root), *args], check=True,
                       env={**os.environ, **env}, capture_output=True)


def test_diff_with_a_vault_source_shows_no_secret(tmp_path: Path, seeded: Bao,
                                                  pems: dict[str, str]) -> None:
    root = repo(tmp_path, source_yaml(seeded))
    assert run(root, seeded, "compile").exit_code == 0
    git_commit_all(root)
    seeded.put_kv2("gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]})
    assert run(root, seeded, "lock update").exit_code == 0
    for fmt in ("text", "json", "markdown"):
        result = run(root, seeded, "diff", "--base", "HEAD", "--format", fmt)
        assert result.exit_code == 0, result.output
        assert "TrustAnchorAdded" in result.output or "trust anchors" in result.output
        assert "BEGIN CERTIFICATE" not in result.output
        assert_no_secrets(seeded, result.output)
