"""The run record with a Vault source (a real OpenBao, through the fault proxy, the real `mtlsc`
executable): every replay reads the recorded secrets again, a change in Vault means the full
run, and a lookup that missed hands its logged-in client to the full run (one login per run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.record_support import both, mtlsc, record_files
from tests.vault.fixtures import Bao
from tests.vault.repo import repo, seed, source_yaml

pytestmark = pytest.mark.real_vault


def _env(vault: Bao, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token, "VAULT_NAMESPACE": "",
            "VAULT_CACERT": vault.world.ca_file or "", "NO_PROXY": "127.0.0.1,localhost",
            **(extra or {})}


def _compiled(vault: Bao, pems: dict[str, str], tmp_path: Path, auth: str = "{method: token}",
              extra: dict[str, str] | None = None) -> Path:
    seed(vault, pems)
    root = repo(tmp_path, source_yaml(vault, auth=auth))
    first = mtlsc(root, "compile", env=_env(vault, extra))
    assert first.code == 0, first.stderr
    assert record_files(root) == []  # that compile wrote the lock it was keyed without
    assert mtlsc(root, "compile", env=_env(vault, extra)).code == 0
    assert len(record_files(root)) == 1
    return root


def test_a_replay_reads_every_recorded_secret_again(vault: Bao, pems: dict[str, str],
                                                    tmp_path: Path) -> None:
    root = _compiled(vault, pems, tmp_path)
    vault.proxy.reset_counts()
    recorded = mtlsc(root, "check", env=_env(vault))
    assert recorded.outcome == "hit" and recorded.code == 0
    assert vault.proxy.count(f"{vault.kv2}/data/") == 2  # the certificate and one CA
    assert vault.proxy.count(f"{vault.kv1}/") == 1
    assert "hvac" in recorded.modules and "jsonschema" not in recorded.modules
    full = mtlsc(root, "check", "--no-cache", env=_env(vault))
    assert recorded.shown == full.shown


def test_a_secret_changed_in_vault_is_a_miss(vault: Bao, pems: dict[str, str],
                                             tmp_path: Path) -> None:
    root = _compiled(vault, pems, tmp_path)
    vault.put_kv1("partners/ca", {"ca.crt": pems["rotated-ca-cert"]})  # not versioned
    recorded, full = both(root, "check", env=_env(vault))
    assert recorded.outcome == "Vault serves different material"
    assert recorded.shown == full.shown
    assert b"LockMismatch" in full.stderr


def test_an_unreachable_vault_is_never_replayed(vault: Bao, pems: dict[str, str],
                                                tmp_path: Path) -> None:
    root = _compiled(vault, pems, tmp_path)
    vault.proxy.inject("status", status=503, times=1000)
    recorded, full = both(root, "check", env=_env(vault))
    assert recorded.outcome == "Vault serves different material"
    assert recorded.shown == full.shown and recorded.code == 3


def test_a_missed_lookup_logs_in_once(vault: Bao, pems: dict[str, str], tmp_path: Path) -> None:
    mount = vault.approle(f"role-{vault.tag}", f"approle-secret-{vault.tag}")
    auth = f"{{method: approle, mount: {mount}, roleId: role-{vault.tag}}}"
    extra = {"VAULT_SECRET_ID": f"approle-secret-{vault.tag}", "VAULT_TOKEN": ""}
    root = _compiled(vault, pems, tmp_path, auth=auth, extra=extra)
    vault.put_kv1("partners/ca", {"ca.crt": pems["rotated-ca-cert"]})
    vault.proxy.reset_counts()
    run = mtlsc(root, "check", env=_env(vault, extra))
    assert run.outcome == "Vault serves different material" and run.code != 0
    assert vault.proxy.count(f"auth/{mount}/login", "POST") == 1
    assert vault.proxy.count(f"{vault.kv1}/") == 1  # read once, by the lookup
