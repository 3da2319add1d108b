"""FakeVault driven only through an unmodified hvac over real HTTP(S).

Each assertion states what real Vault answers and how hvac 2.x surfaces it, so these tests also
document the behaviour the product relies on.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import hvac  # type: ignore[import-untyped, unused-ignore]
import pytest
import requests
from hvac import exceptions as hvac_errors  # type: ignore[import-untyped, unused-ignore]

from tests.vault.conftest import Issued, TlsFiles, VaultClientFactory, make_ca
from tests.vault.server import STANDBY_ERROR, FakeVault

PERMISSION_DENIED_BY_POLICY = "1 error occurred:\n\t* permission denied\n\n"


def _read(client: hvac.Client, path: str, version: int | None = None, *,
          raise_on_deleted: bool = True, mount: str = "secret") -> dict[str, Any]:
    return client.secrets.kv.v2.read_secret_version(  # type: ignore[no-any-return]
        path=path, version=version, mount_point=mount,
        raise_on_deleted_version=raise_on_deleted)


def _write(client: hvac.Client, path: str, data: dict[str, Any],
           mount: str = "secret") -> dict[str, Any]:
    return client.secrets.kv.v2.create_or_update_secret(  # type: ignore[no-any-return]
        path=path, secret=data, mount_point=mount)


# --------------------------------------------------------------------------------------------
# KV v2


def test_kv2_reads_latest_and_pinned_versions(vault_client: VaultClientFactory) -> None:
    client = vault_client()
    first = _write(client, "apps/web/tls", {"crt": "one"})
    _write(client, "apps/web/tls", {"crt": "two"})

    assert first["data"]["version"] == 1
    latest = _read(client, "apps/web/tls")
    assert latest["data"]["data"] == {"crt": "two"}
    assert latest["data"]["metadata"]["version"] == 2
    assert latest["data"]["metadata"]["deletion_time"] == ""
    assert latest["data"]["metadata"]["destroyed"] is False
    assert _read(client, "apps/web/tls", version=1)["data"]["data"] == {"crt": "one"}
    assert set(latest) >= {"request_id", "lease_id", "lease_duration", "data", "warnings"}


def test_kv2_soft_deleted_version_is_a_404_carrying_metadata(
        vault_client: VaultClientFactory) -> None:
    client = vault_client()
    _write(client, "app", {"k": "v1"})
    _write(client, "app", {"k": "v2"})
    client.secrets.kv.v2.delete_secret_versions(path="app", versions=[1])

    with pytest.raises(hvac_errors.InvalidPath) as raised:
        _read(client, "app", version=1)
    assert raised.value.errors is None  # Vault's 404 body here is a response, not {"errors"}
    assert raised.value.json["data"]["data"] is None
    assert raised.value.json["data"]["metadata"]["deletion_time"] != ""

    tolerated = _read(client, "app", version=1, raise_on_deleted=False)
    assert tolerated["data"]["data"] is None
    assert tolerated["data"]["metadata"]["version"] == 1
    assert _read(client, "app")["data"]["data"] == {"k": "v2"}


def test_kv2_destroyed_version_raises_even_when_deleted_versions_are_tolerated(
        vault_client: VaultClientFactory) -> None:
    client = vault_client()
    _write(client, "app", {"k": "v1"})
    _write(client, "app", {"k": "v2"})
    client.secrets.kv.v2.destroy_secret_versions(path="app", versions=[1])

    # hvac only returns the body for a *deleted* version (deletion_time set); a version that was
    # destroyed without a soft delete first has deletion_time "" and still raises.
    with pytest.raises(hvac_errors.InvalidPath) as raised:
        _read(client, "app", version=1, raise_on_deleted=False)
    metadata = raised.value.json["data"]["metadata"]
    assert (metadata["destroyed"], metadata["deletion_time"]) == (True, "")
    assert raised.value.json["data"]["data"] is None


def test_kv2_deleted_then_destroyed_version_is_returned_when_tolerated(
        vault_client: VaultClientFactory) -> None:
    client = vault_client()
    _write(client, "app", {"k": "v1"})
    client.secrets.kv.v2.delete_latest_version_of_secret(path="app")
    client.secrets.kv.v2.destroy_secret_versions(path="app", versions=[1])

    body = _read(client, "app", raise_on_deleted=False)
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["destroyed"] is True


def test_kv2_missing_secret_or_version_is_404_with_empty_errors(
        vault_client: VaultClientFactory) -> None:
    client = vault_client()
    _write(client, "app", {"k": "v"})
    for path, version in (("nope", None), ("app", 7)):
        with pytest.raises(hvac_errors.InvalidPath) as raised:
            _read(client, path, version=version, raise_on_deleted=False)
        assert raised.value.errors == []
    with pytest.raises(hvac_errors.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path="nope")


def test_kv2_undelete_restores_a_soft_deleted_version(vault_client: VaultClientFactory) -> None:
    client = vault_client()
    _write(client, "app", {"k": "v"})
    client.secrets.kv.v2.delete_latest_version_of_secret(path="app")
    client.secrets.kv.v2.undelete_secret_versions(path="app", versions=[1])
    assert _read(client, "app")["data"]["data"] == {"k": "v"}


def test_kv2_metadata_lists_versions_and_custom_metadata(
        vault_client: VaultClientFactory) -> None:
    client = vault_client()
    _write(client, "app", {"k": "1"})
    _write(client, "app", {"k": "2"})
    client.secrets.kv.v2.delete_secret_versions(path="app", versions=[1])
    client.secrets.kv.v2.update_metadata(path="app", custom_metadata={"owner": "mesh"})

    metadata = client.secrets.kv.v2.read_secret_metadata(path="app")["data"]
    assert metadata["current_version"] == 2
    assert metadata["oldest_version"] == 0
    assert metadata["custom_metadata"] == {"owner": "mesh"}
    assert metadata["versions"]["1"]["deletion_time"] != ""
    assert metadata["versions"]["2"] == {"created_time": metadata["updated_time"],
                                         "deletion_time": "", "destroyed": False}
    assert _read(client, "app")["data"]["metadata"]["custom_metadata"] == {"owner": "mesh"}


def test_kv2_oldest_versions_are_trimmed_past_max_versions(
        fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.enable_kv2("short", max_versions=2)
    client = vault_client()
    for n in range(4):
        _write(client, "app", {"n": n}, mount="short")
    metadata = client.secrets.kv.v2.read_secret_metadata(path="app", mount_point="short")["data"]
    assert sorted(metadata["versions"]) == ["3", "4"]
    assert metadata["oldest_version"] == 3
    with pytest.raises(hvac_errors.InvalidPath):
        _read(client, "app", version=1, mount="short")


def test_kv2_list_secrets(vault_client: VaultClientFactory) -> None:
    client = vault_client()
    for path in ("apps/web/tls", "apps/api/tls", "apps/root"):
        _write(client, path, {"k": "v"})
    assert client.secrets.kv.v2.list_secrets(path="apps")["data"]["keys"] == [
        "api/", "root", "web/"]
    assert client.secrets.kv.v2.list_secrets(path="")["data"]["keys"] == ["apps/"]
    assert client.list("secret/metadata/apps/web")["data"]["keys"] == ["tls"]  # GET ?list=true
    with pytest.raises(hvac_errors.InvalidPath):
        client.secrets.kv.v2.list_secrets(path="empty")


def test_kv2_check_and_set(vault_client: VaultClientFactory) -> None:
    client = vault_client()
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": 1}, cas=0)
    with pytest.raises(hvac_errors.InvalidRequest, match="check-and-set"):
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": 2}, cas=0)
    client.secrets.kv.v2.create_or_update_secret(path="app", secret={"k": 2}, cas=1)
    assert _read(client, "app")["data"]["metadata"]["version"] == 2


def test_kv2_admin_seeding_is_visible_over_http(
        fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.enable_kv2("certs")
    assert fake_vault.put_kv2("certs", "gw", {"crt": "a"}, custom_metadata={"team": "x"}) == 1
    assert fake_vault.put_kv2("certs", "gw", {"crt": "b"}) == 2
    assert fake_vault.put_kv2("certs", "gw", {"crt": "c"}) == 3
    fake_vault.delete_kv2("certs", "gw", [1])
    fake_vault.destroy_kv2("certs", "gw")  # the latest
    client = vault_client()

    assert _read(client, "gw", version=2, mount="certs")["data"]["data"] == {"crt": "b"}
    assert _read(client, "gw", version=1, mount="certs", raise_on_deleted=False)[
        "data"]["data"] is None
    with pytest.raises(hvac_errors.InvalidPath):
        _read(client, "gw", mount="certs")


def test_kv2_on_an_unknown_mount_is_no_handler_for_route(
        vault_client: VaultClientFactory) -> None:
    with pytest.raises(hvac_errors.InvalidPath, match="no handler for route"):
        _read(vault_client(), "app", mount="nowhere")


# --------------------------------------------------------------------------------------------
# KV v1


def test_kv1_read_write_list_delete(fake_vault: FakeVault,
                                    vault_client: VaultClientFactory) -> None:
    fake_vault.enable_kv1("kv")
    fake_vault.put_kv1("kv", "seeded/one", {"crt": "pem"})
    client = vault_client()
    kv1 = client.secrets.kv.v1

    kv1.create_or_update_secret(path="apps/web", secret={"crt": "x"}, mount_point="kv")
    read = kv1.read_secret(path="apps/web", mount_point="kv")
    assert read["data"] == {"crt": "x"}
    assert read["lease_duration"] == 2_764_800
    assert kv1.read_secret(path="seeded/one", mount_point="kv")["data"] == {"crt": "pem"}
    assert kv1.list_secrets(path="", mount_point="kv")["data"]["keys"] == ["apps/", "seeded/"]
    kv1.delete_secret(path="apps/web", mount_point="kv")
    with pytest.raises(hvac_errors.InvalidPath):
        kv1.read_secret(path="apps/web", mount_point="kv")


# --------------------------------------------------------------------------------------------
# PKI


@pytest.fixture
def pki_chain(fake_vault: FakeVault) -> tuple[Issued, Issued, str, str]:
    """A root and an intermediate (the default) imported into ``pki``."""
    root = make_ca("Mesh Root")
    intermediate = make_ca("Mesh Intermediate", parent=root)
    root_id = fake_vault.add_pki_issuer("pki", root.pem, name="root-2027")
    intermediate_id = fake_vault.add_pki_issuer("pki", intermediate.pem, name="int-2027",
                                                default=True)
    return root, intermediate, root_id, intermediate_id


def test_pki_ca_pem_and_chain(pki_chain: tuple[Issued, Issued, str, str],
                              vault_client: VaultClientFactory) -> None:
    root, intermediate, _, _ = pki_chain
    client = vault_client()
    assert client.secrets.pki.read_ca_certificate() == intermediate.pem.strip()
    chain = client.secrets.pki.read_ca_certificate_chain()
    assert chain == f"{intermediate.pem.strip()}\n{root.pem.strip()}"

    raw = client.adapter.get("/v1/pki/ca/pem")  # not JSON: hvac hands back the Response
    assert isinstance(raw, requests.Response)
    assert raw.headers["Content-Type"] == "application/pem-certificate-chain"


def test_pki_cert_ca_json_endpoints(pki_chain: tuple[Issued, Issued, str, str],
                                    vault_client: VaultClientFactory) -> None:
    root, intermediate, _, _ = pki_chain
    client = vault_client()
    assert client.adapter.get("/v1/pki/cert/ca")["data"]["certificate"] == (
        intermediate.pem.strip())
    chain = client.read("pki/cert/ca_chain")["data"]
    assert chain["ca_chain"] == f"{intermediate.pem.strip()}\n{root.pem.strip()}"


def test_pki_read_issuer_by_default_id_and_name(pki_chain: tuple[Issued, Issued, str, str],
                                                vault_client: VaultClientFactory) -> None:
    root, intermediate, root_id, intermediate_id = pki_chain
    client = vault_client()
    for ref in ("default", intermediate_id, "int-2027"):
        data = client.secrets.pki.read_issuer(ref)["data"]
        assert (data["issuer_id"], data["issuer_name"]) == (intermediate_id, "int-2027")
        assert data["certificate"] == intermediate.pem
        assert data["ca_chain"] == [intermediate.pem, root.pem]
    assert client.read(f"pki/issuer/{root_id}")["data"]["ca_chain"] == [root.pem]


def test_pki_issuer_pem_and_json_are_unauthenticated(
        pki_chain: tuple[Issued, Issued, str, str], vault_client: VaultClientFactory) -> None:
    _, intermediate, _, intermediate_id = pki_chain
    anonymous = vault_client(token="")
    pem = anonymous.adapter.get("/v1/pki/issuer/int-2027/pem")
    assert pem.text == intermediate.pem
    assert anonymous.adapter.get("/v1/pki/issuer/default/json")["data"]["issuer_id"] == (
        intermediate_id)
    assert anonymous.secrets.pki.read_ca_certificate() == intermediate.pem.strip()
    with pytest.raises(hvac_errors.Forbidden):
        anonymous.secrets.pki.read_issuer("default")  # the full issuer needs a token


def test_pki_list_issuers_and_default_config(pki_chain: tuple[Issued, Issued, str, str],
                                             vault_client: VaultClientFactory) -> None:
    _, _, root_id, intermediate_id = pki_chain
    client = vault_client()
    listed = client.secrets.pki.list_issuers()["data"]
    assert listed["keys"] == [root_id, intermediate_id]
    assert listed["key_info"][root_id]["issuer_name"] == "root-2027"
    assert listed["key_info"][intermediate_id]["is_default"] is True
    assert client.read("pki/config/issuers")["data"]["default"] == intermediate_id


def test_pki_unknown_issuer_is_a_500(pki_chain: tuple[Issued, Issued, str, str],
                                     vault_client: VaultClientFactory) -> None:
    client = vault_client()
    with pytest.raises(hvac_errors.InternalServerError,
                       match="unable to find PKI issuer for reference: ghost"):
        client.read("pki/issuer/ghost")  # Client.read only swallows InvalidPath


def test_pki_empty_mount(vault_client: VaultClientFactory) -> None:
    client = vault_client()
    assert client.secrets.pki.read_ca_certificate() == ""  # Vault answers 204
    assert client.read("pki/config/issuers")["data"]["default"] == ""
    with pytest.raises(hvac_errors.InvalidPath):
        client.secrets.pki.list_issuers()


def test_pki_issuer_ids_are_uuid_like_and_deterministic_with_a_seed() -> None:
    pem = make_ca("Seeded").pem
    ids = []
    for _ in range(2):
        vault = FakeVault(seed=7)  # admin-only: no need to start the server
        ids.append(vault.add_pki_issuer("pki", pem))
    assert ids[0] == ids[1]
    assert [len(part) for part in ids[0].split("-")] == [8, 4, 4, 4, 12]


# --------------------------------------------------------------------------------------------
# Tokens and logins


def test_token_lookup_self_and_expiry(vault_client: VaultClientFactory) -> None:
    now = [1_800_000_000.0]
    with FakeVault(clock=lambda: now[0]) as vault:
        vault.add_token("short", paths=["secret/"], ttl=60)
        client = vault_client(token="short", url=vault.url)
        data = client.auth.token.lookup_self()["data"]
        assert (data["id"], data["ttl"], data["policies"]) == ("short", 60, ["default"])
        assert client.is_authenticated()
        now[0] += 61
        with pytest.raises(hvac_errors.Forbidden) as raised:
            client.auth.token.lookup_self()
        assert raised.value.errors == ["permission denied"]
        assert not client.is_authenticated()


def test_missing_or_unknown_token_is_forbidden(vault_client: VaultClientFactory) -> None:
    for token in ("", "hvs.unknown"):
        with pytest.raises(hvac_errors.Forbidden) as raised:
            _read(vault_client(token=token), "app")
        assert raised.value.errors == ["permission denied"]


def test_token_paths_emulate_a_policy(fake_vault: FakeVault,
                                      vault_client: VaultClientFactory) -> None:
    fake_vault.put_kv2("secret", "mesh/gw", {"crt": "x"})
    fake_vault.put_kv2("secret", "other/db", {"pw": "y"})
    fake_vault.add_token("reader", paths=["secret/data/mesh/", "secret/metadata/mesh/*"])
    client = vault_client(token="reader")

    assert _read(client, "mesh/gw")["data"]["data"] == {"crt": "x"}
    assert client.secrets.kv.v2.read_secret_metadata(path="mesh/gw")["data"]["current_version"]
    with pytest.raises(hvac_errors.Forbidden) as raised:
        _read(client, "other/db")
    assert raised.value.errors == [PERMISSION_DENIED_BY_POLICY]
    assert client.auth.token.lookup_self()["data"]["id"] == "reader"  # default policy


def test_renew_and_revoke_self(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.add_token("temp", ttl=600)
    client = vault_client(token="temp")
    assert client.auth.token.renew_self()["auth"]["lease_duration"] == 600
    client.auth.token.revoke_self()
    with pytest.raises(hvac_errors.Forbidden):
        client.auth.token.lookup_self()


def test_approle_login_then_read(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.put_kv2("secret", "mesh/gw", {"crt": "x"})
    fake_vault.add_approle("role-1", "secret-1", paths=["secret/data/mesh/"], role_name="mtlsc")
    client = vault_client(token="")

    login = client.auth.approle.login(role_id="role-1", secret_id="secret-1")
    auth = login["auth"]
    assert client.token == auth["client_token"]
    assert auth["client_token"].startswith("hvs.")
    assert (auth["policies"], auth["lease_duration"], auth["renewable"]) == (
        ["default", "mtlsc"], 3600, True)
    assert auth["accessor"] and auth["metadata"] == {"role_name": "mtlsc"}
    assert _read(client, "mesh/gw")["data"]["data"] == {"crt": "x"}
    assert client.auth.token.lookup_self()["data"]["path"] == "auth/approle/login"
    with pytest.raises(hvac_errors.Forbidden):
        _read(client, "elsewhere")


def test_approle_wrong_credentials(fake_vault: FakeVault,
                                   vault_client: VaultClientFactory) -> None:
    fake_vault.add_approle("role-1", "secret-1", paths=["secret/"], mount="ci-approle")
    client = vault_client(token="")
    for role_id, secret_id in (("role-1", "wrong"), ("nobody", "secret-1")):
        with pytest.raises(hvac_errors.InvalidRequest) as raised:
            client.auth.approle.login(role_id=role_id, secret_id=secret_id,
                                      mount_point="ci-approle")
        assert raised.value.errors == ["invalid role or secret ID"]
    with pytest.raises(hvac_errors.Forbidden):  # no such mount: the login path needs a token
        client.auth.approle.login(role_id="role-1", secret_id="secret-1")


def test_kubernetes_login(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.put_kv2("secret", "mesh/gw", {"crt": "x"})
    fake_vault.add_kubernetes_role("mtlsc", "sa.jwt", paths=["secret/data/mesh/"],
                                   mount="k8s-prod")
    client = vault_client(token="")
    with pytest.raises(hvac_errors.InvalidRequest, match='invalid role name "other"'):
        client.auth.kubernetes.login(role="other", jwt="sa.jwt", mount_point="k8s-prod")
    with pytest.raises(hvac_errors.Forbidden):
        client.auth.kubernetes.login(role="mtlsc", jwt="forged", mount_point="k8s-prod")

    client.auth.kubernetes.login(role="mtlsc", jwt="sa.jwt", mount_point="k8s-prod")
    assert _read(client, "mesh/gw")["data"]["data"] == {"crt": "x"}


@pytest.mark.parametrize("mount", ["jwt", "github"])
def test_jwt_login(fake_vault: FakeVault, vault_client: VaultClientFactory, mount: str) -> None:
    fake_vault.put_kv2("secret", "mesh/gw", {"crt": "x"})
    fake_vault.add_jwt_role("ci", "id.token", paths=["secret/data/mesh/"], mount=mount)
    client = vault_client(token="")
    with pytest.raises(hvac_errors.InvalidRequest, match='role "nope" could not be found'):
        client.auth.jwt.jwt_login(role="nope", jwt="id.token", path=mount)
    with pytest.raises(hvac_errors.InvalidRequest, match="error validating token"):
        client.auth.jwt.jwt_login(role="ci", jwt="forged", path=mount)

    client.auth.jwt.jwt_login(role="ci", jwt="id.token", path=mount)
    assert _read(client, "mesh/gw")["data"]["data"] == {"crt": "x"}


# --------------------------------------------------------------------------------------------
# Namespaces


def test_namespaces_are_isolated(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    for namespace in ("team-a", "team-b"):
        fake_vault.create_namespace(namespace)
        fake_vault.put_kv2("secret", "gw", {"owner": namespace}, namespace=namespace)
    fake_vault.add_token("a-token", namespace="team-a")

    for namespace in ("team-a", "team-b"):  # a root-namespace token reaches child namespaces
        client = vault_client(namespace=namespace)
        assert _read(client, "gw")["data"]["data"] == {"owner": namespace}
    with pytest.raises(hvac_errors.InvalidPath):
        _read(vault_client(), "gw")  # nothing at secret/gw in the root namespace
    assert _read(vault_client(token="a-token", namespace="team-a"), "gw")["data"]["data"] == {
        "owner": "team-a"}
    with pytest.raises(hvac_errors.Forbidden):
        _read(vault_client(token="a-token", namespace="team-b"), "gw")
    with pytest.raises(hvac_errors.Forbidden):
        _read(vault_client(token="a-token"), "gw")


def test_namespace_login_tokens_stay_in_their_namespace(
        fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.create_namespace("team-a/dev")
    fake_vault.put_kv2("secret", "gw", {"ok": True}, namespace="team-a/dev")
    fake_vault.add_approle("r", "s", paths=["secret/"], namespace="team-a/dev")
    with pytest.raises(hvac_errors.Forbidden):
        vault_client(token="").auth.approle.login(role_id="r", secret_id="s")  # wrong namespace
    client = vault_client(token="", namespace="team-a/dev")
    client.auth.approle.login(role_id="r", secret_id="s")
    assert _read(client, "gw")["data"]["data"] == {"ok": True}


def test_namespace_may_also_be_a_path_prefix(fake_vault: FakeVault,
                                             vault_client: VaultClientFactory) -> None:
    fake_vault.create_namespace("team-a")
    fake_vault.put_kv2("secret", "gw", {"ok": True}, namespace="team-a")
    assert vault_client().read("team-a/secret/data/gw")["data"]["data"] == {"ok": True}
    _read(vault_client(namespace="team-a"), "gw")
    # hvac itself sends the namespace as a header, never in the path.
    assert fake_vault.requests[("GET", "secret/data/gw", "team-a")] == 1


def test_unknown_namespace_is_no_handler_for_route(vault_client: VaultClientFactory) -> None:
    with pytest.raises(hvac_errors.InvalidPath, match="no handler for route"):
        _read(vault_client(namespace="ghost"), "gw")


# --------------------------------------------------------------------------------------------
# Health and faults


def test_health_and_seal_status(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    client = vault_client(token="")
    assert client.sys.read_health_status(method="GET")["sealed"] is False
    assert client.sys.read_health_status().status_code == 200  # HEAD, never raises
    fake_vault.set_standby()
    assert client.sys.read_health_status().status_code == 429
    assert client.sys.read_health_status(method="GET", standby_ok=True)["standby"] is True
    fake_vault.seal()
    assert client.sys.read_health_status().status_code == 503
    assert client.seal_status["sealed"] is True
    assert client.sys.is_sealed()


def test_sealed_vault_is_vault_down(fake_vault: FakeVault,
                                    vault_client: VaultClientFactory) -> None:
    client = vault_client()
    fake_vault.seal()
    with pytest.raises(hvac_errors.VaultDown) as raised:
        _read(client, "app")
    assert raised.value.errors == ["Vault is sealed"]
    fake_vault.unseal()
    with pytest.raises(hvac_errors.InvalidPath):
        _read(client, "app")


def test_latency_is_measurable(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    client = vault_client()
    fake_vault.latency(0.2)
    started = time.perf_counter()
    client.auth.token.lookup_self()
    assert time.perf_counter() - started >= 0.2


@pytest.mark.parametrize(("status", "error"), [
    (429, hvac_errors.RateLimitExceeded),
    (500, hvac_errors.InternalServerError),
    (502, hvac_errors.BadGateway),
    (503, hvac_errors.VaultDown),
    (501, hvac_errors.VaultNotInitialized),
    (504, hvac_errors.UnexpectedError),
])
def test_fail_every_nth_request(fake_vault: FakeVault, vault_client: VaultClientFactory,
                                status: int, error: type[Exception]) -> None:
    client = vault_client()
    fake_vault.fail_every(2, status)
    client.auth.token.lookup_self()
    with pytest.raises(error):
        client.auth.token.lookup_self()
    client.auth.token.lookup_self()
    with pytest.raises(error):
        client.auth.token.lookup_self()


def test_fail_every_with_a_standby_message(fake_vault: FakeVault,
                                           vault_client: VaultClientFactory) -> None:
    fake_vault.fail_every(1, 503, STANDBY_ERROR)
    with pytest.raises(hvac_errors.VaultDown) as raised:
        vault_client().auth.token.lookup_self()
    assert raised.value.errors == [STANDBY_ERROR]


def test_dropped_connection_is_a_connection_error(fake_vault: FakeVault,
                                                  vault_client: VaultClientFactory) -> None:
    client = vault_client()
    fake_vault.drop_connections(1)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.auth.token.lookup_self()
    assert client.auth.token.lookup_self()["data"]["id"] == "root"


def test_malformed_json_reaches_the_caller_as_a_response(
        fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    client = vault_client()
    fake_vault.put_kv2("secret", "app", {"k": "v"})
    fake_vault.malformed_json(2)
    # hvac's JSONAdapter swallows the ValueError and returns the raw Response ...
    response = _read(client, "app")
    assert isinstance(response, requests.Response)
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()
    # ... so indexing it (as a login does) fails with a TypeError.
    with pytest.raises(TypeError):
        vault_client(token="").auth.token.lookup_self()["data"]
    assert _read(client, "app")["data"]["data"] == {"k": "v"}


def test_fail_path(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    client = vault_client()
    fake_vault.put_kv2("secret", "app", {"k": "v"})
    fake_vault.fail_path("secret/data/app", 403)
    fake_vault.fail_path("secret/metadata/", 404, times=1)
    with pytest.raises(hvac_errors.Forbidden):
        _read(client, "app")
    with pytest.raises(hvac_errors.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path="app")
    assert client.secrets.kv.v2.read_secret_metadata(path="app")["data"]["current_version"] == 1
    fake_vault.reset_faults()
    assert _read(client, "app")["data"]["data"] == {"k": "v"}


def test_reset_faults_clears_everything(fake_vault: FakeVault,
                                        vault_client: VaultClientFactory) -> None:
    fake_vault.seal()
    fake_vault.fail_every(1, 500)
    fake_vault.drop_connections(5)
    fake_vault.malformed_json(5)
    fake_vault.latency(5)
    fake_vault.reset_faults()
    assert vault_client().auth.token.lookup_self()["data"]["id"] == "root"


# --------------------------------------------------------------------------------------------
# HTTPS


def test_https_with_a_trusted_test_ca(tls_files: TlsFiles,
                                      vault_client: VaultClientFactory) -> None:
    with FakeVault(tls=(tls_files.cert, tls_files.key)) as vault:
        assert vault.url.startswith("https://127.0.0.1:")
        client = vault_client(url=vault.url, verify=str(tls_files.ca))
        assert client.auth.token.lookup_self()["data"]["id"] == "root"


def test_https_with_an_untrusted_ca_fails_verification(
        tls_files: TlsFiles, vault_client: VaultClientFactory) -> None:
    with FakeVault(tls=(tls_files.cert, tls_files.key)) as vault:
        client = vault_client(url=vault.url, verify=True)
        with pytest.raises(requests.exceptions.SSLError):
            client.auth.token.lookup_self()
        assert vault.count() == 0  # the handshake failed before any request


# --------------------------------------------------------------------------------------------
# Counters, concurrency and lifecycle


def test_request_counters(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.create_namespace("team-a")
    client = vault_client()
    _write(client, "app", {"k": "v"})
    _read(client, "app")
    _read(client, "app")
    client.secrets.kv.v2.list_secrets(path="")
    fake_vault.put_kv2("secret", "app", {"k": "a"}, namespace="team-a")
    _read(vault_client(namespace="team-a"), "app")

    assert fake_vault.requests[("GET", "secret/data/app", "")] == 2
    assert fake_vault.requests[("POST", "secret/data/app", "")] == 1
    assert fake_vault.requests[("LIST", "secret/metadata", "")] == 1
    assert fake_vault.requests[("GET", "secret/data/app", "team-a")] == 1
    assert fake_vault.count("secret/data/") == 4
    assert fake_vault.count("secret/data/", method="GET", namespace="") == 2
    assert fake_vault.count(namespace="team-a") == 1
    assert fake_vault.count() == 5
    fake_vault.reset_counts()
    assert fake_vault.count() == 0


def test_concurrent_clients(fake_vault: FakeVault, vault_client: VaultClientFactory) -> None:
    fake_vault.put_kv2("secret", "app", {"k": "v"})
    fake_vault.latency(0.05)
    clients = [vault_client() for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda c: _read(c, "app")["data"]["data"], clients * 2))
    assert results == [{"k": "v"}] * 16
    assert fake_vault.count("secret/data/app") == 16


def test_lifecycle() -> None:
    vault = FakeVault()
    with pytest.raises(RuntimeError):
        _ = vault.url
    vault.start()
    assert vault.start() is vault  # idempotent
    url = vault.url
    vault.stop()
    vault.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/v1/sys/health", timeout=2)
