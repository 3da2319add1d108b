"""Logging in to a real OpenBao (or the server at VAULT_ADDR) with every auth method: once per
run, and a refused login is final for the run, so mtlsc can never lock a role out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.vault.fixtures import Bao
from tests.vault.repo import (
    INTENT,
    TARGET,
    assert_no_secrets,
    repo,
    run,
    snapshot,
    source_yaml,
)

pytestmark = pytest.mark.real_vault


@pytest.mark.parametrize("method", ["token-file", "policy-token", "approle", "kubernetes", "jwt"])
def test_auth_methods(tmp_path: Path, seeded: Bao, method: str) -> None:
    vault = seeded
    env: dict[str, str] = {"VAULT_TOKEN": ""}
    if method in ("token-file", "policy-token"):
        token = vault.root_token if method == "token-file" else vault.token()
        (tmp_path / "token").write_text(token + "\n")
        auth = f"{{method: token, tokenFile: {tmp_path / 'token'}}}"
    elif method == "approle":
        mount = vault.approle(f"role-{vault.tag}", f"approle-secret-{vault.tag}")
        auth = f"{{method: approle, mount: {mount}, roleId: role-{vault.tag}}}"
        env["VAULT_SECRET_ID"] = f"approle-secret-{vault.tag}"
    elif method == "kubernetes":
        mount, role, jwt = vault.kubernetes_role()
        (tmp_path / "sa-token").write_text(jwt)
        auth = f"{{method: kubernetes, mount: {mount}, role: {role}, " \
               f"jwtFile: {tmp_path / 'sa-token'}}}"
    else:
        mount, role, jwt = vault.jwt_role()
        auth = f"{{method: jwt, role: {role}, mount: {mount}, jwtEnv: VAULT_JWT}}"
        env["VAULT_JWT"] = jwt
    root = repo(tmp_path, source_yaml(vault, auth=auth))
    result = run(root, vault, "compile", env=env)
    assert result.exit_code == 0, result.output
    assert_no_secrets(vault, result.output, *snapshot(root).values())
    logins = vault.proxy.count("auth/", method="POST") + vault.proxy.count("auth/token/")
    assert logins == 1


@pytest.mark.parametrize("method", ["approle", "kubernetes", "jwt", "token"])
def test_refused_login_is_one_final_diagnostic(tmp_path: Path, seeded: Bao, method: str) -> None:
    vault = seeded
    env: dict[str, str] = {"VAULT_TOKEN": ""}
    if method == "approle":
        mount = vault.approle(f"role-{vault.tag}", "right-secret-id")
        auth = f"{{method: approle, mount: {mount}, roleId: role-{vault.tag}}}"
        env["VAULT_SECRET_ID"] = "wrong-secret-id"
    elif method == "kubernetes":
        mount, role, _ = vault.kubernetes_role()
        forged = vault.world.signer.sign({"sub": "system:serviceaccount:ci:someone-else"})
        (tmp_path / "sa-token").write_text(forged)
        auth = f"{{method: kubernetes, mount: {mount}, role: {role}, " \
               f"jwtFile: {tmp_path / 'sa-token'}}}"
    elif method == "jwt":
        mount, role, _ = vault.jwt_role()
        auth = f"{{method: jwt, role: {role}, mount: {mount}, jwtEnv: VAULT_JWT}}"
        env["VAULT_JWT"] = vault.world.signer.sign({"sub": "nobody", "aud": "other"})
    else:
        auth = "{method: token}"
        env["VAULT_TOKEN"] = "not-a-valid-token"
    root = repo(tmp_path, source_yaml(vault, auth=auth, deadline=30))
    result = run(root, vault, "compile", env=env)
    assert result.exit_code == 3, result.output
    assert result.output.count("VaultAuthFailed") == 1
    assert re.search(r"affects [45] references: policies/intent.yaml:\d+:\d+, ", result.output)
    assert "wrong-secret-id" not in result.output and "not-a-valid-token" not in result.output
    assert vault.proxy.count("auth/") == 1  # tried once, never retried
    assert vault.proxy.count(f"{vault.kv2}/") == 0
    assert not (root / "overlays").exists()


def test_a_wrong_secret_id_cannot_lock_the_role_out(tmp_path: Path, seeded: Bao) -> None:
    """OpenBao locks an AppRole out after 5 failed logins; three failing CI runs must not
    trip it, so the fixed secret-id works at once afterwards."""
    vault = seeded
    mount = vault.approle(f"role-{vault.tag}", "the-right-secret-id")
    auth = f"{{method: approle, mount: {mount}, roleId: role-{vault.tag}}}"
    many = INTENT.replace("[prod]", "[prod, prod-2, prod-3]")
    targets = "---".join(TARGET.replace("name: prod", f"name: {n}")
                         for n in ("prod", "prod-2", "prod-3"))
    root = repo(tmp_path, source_yaml(vault, auth=auth), many, targets)
    login = f"auth/{mount}/login"
    for attempt in range(1, 4):
        result = run(root, vault, "compile", env={"VAULT_TOKEN": "",
                                                   "VAULT_SECRET_ID": "a-wrong-secret-id"})
        assert result.exit_code == 3 and "VaultAuthFailed" in result.output
        assert vault.proxy.count(login) == attempt  # one login attempt per run
    result = run(root, vault, "compile", env={"VAULT_TOKEN": "",
                                               "VAULT_SECRET_ID": "the-right-secret-id"})
    assert result.exit_code == 0, result.output
    assert vault.proxy.count(login) == 4


def test_the_server_really_locks_a_role_out_after_failed_logins(vault: Bao) -> None:
    """What the test above guards against: OpenBao's user lockout (5 failures by default)
    refuses even the right secret id afterwards."""
    import hvac  # type: ignore[import-untyped, unused-ignore]

    mount = vault.approle(f"role-{vault.tag}", "the-right-secret-id")
    client = hvac.Client(url=vault.url)
    for _ in range(6):
        with pytest.raises(hvac.exceptions.VaultError):
            client.auth.approle.login(role_id=f"role-{vault.tag}",
                                      secret_id="a-wrong-secret-id", mount_point=mount)
    with pytest.raises(hvac.exceptions.VaultError):
        client.auth.approle.login(role_id=f"role-{vault.tag}",
                                  secret_id="the-right-secret-id", mount_point=mount)
    client.adapter.close()


