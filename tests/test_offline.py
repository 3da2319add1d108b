"""`mtlsc check --offline` and `mtlsc diff --offline`: only mtlsc.lock and the committed overlays,
never Vault. The repository is first compiled against the real OpenBao; the offline runs then
point VAULT_ADDR at the test's proxy and prove, by its request count, that nothing was asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_vault_source import git_commit_all
from tests.vault.fixtures import Bao
from tests.vault.repo import INTENT, assert_no_secrets, repo, run, seed, snapshot, source_yaml

pytestmark = pytest.mark.real_vault


@pytest.fixture
def compiled_repo(tmp_path: Path, vault: Bao, pems: dict[str, str]) -> Path:
    seed(vault, pems)
    root = repo(tmp_path, source_yaml(vault))
    result = run(root, vault, "compile")
    assert result.exit_code == 0, result.output
    vault.proxy.reset_counts()
    return root


def offline(root: Path, vault: Bao, *args: str) -> tuple[int, str]:
    result = run(root, vault, *args, "--offline", env={"VAULT_TOKEN": ""})
    assert vault.proxy.count() == 0, vault.proxy.paths()  # Vault was never contacted
    return result.exit_code, result.output


def test_check_offline_passes_and_says_what_it_could_not_check(compiled_repo: Path,
                                                               vault: Bao) -> None:
    before = snapshot(compiled_repo)
    code, output = offline(compiled_repo, vault, "check")
    assert code == 0, output
    assert output.count("warning[NotCheckedOffline]") == 1  # one server certificate
    assert "'https-cert' is in Vault only: its key match, hostname coverage and chain" in output
    assert "warning[OfflineChecks]" in output and "3 locked reference(s)" in output
    assert snapshot(compiled_repo) == before
    assert_no_secrets(vault, output)


def test_check_offline_finds_drift(compiled_repo: Path, vault: Bao) -> None:
    intent = compiled_repo / "policies" / "intent.yaml"
    intent.write_text(intent.read_text().replace("port: 8444, caBundles: [ca-cert, partner-ca]",
                                                 "port: 8444, caBundles: [partner-ca]"))
    code, output = offline(compiled_repo, vault, "check")
    assert code == 4 and "error[Drift]" in output  # exit 4: drift


def test_check_offline_verifies_ca_bodies_against_the_lock(compiled_repo: Path, vault: Bao,
                                                           pems: dict[str, str]) -> None:
    configmap = compiled_repo / "overlays/prod/edge/configmap-ca-cert.yaml"
    text = configmap.read_text()
    line = pems["ca-cert"].splitlines()[1]
    other = pems["rotated-ca-cert"].splitlines()[1]
    configmap.write_text(text.replace(line, other))
    code, output = offline(compiled_repo, vault, "check", "--format", "github")
    assert code == 1, output
    assert "OfflineLockMismatch" in output and "'ca-cert'" in output


def test_a_reference_missing_from_the_lock_needs_vault(compiled_repo: Path, vault: Bao) -> None:
    source = compiled_repo / "policies" / "source.yaml"
    source.write_text(source_yaml(vault, ca_path="new-ca"))
    code, output = offline(compiled_repo, vault, "check")
    assert code == 1, output
    assert "error[NeedsVault]" in output and "not pinned in mtlsc.lock" in output
    assert "mtlsc lock update" in output


def test_diff_offline_shows_a_rotation_from_git_alone(compiled_repo: Path, vault: Bao,
                                                      pems: dict[str, str]) -> None:
    git_commit_all(compiled_repo)
    vault.put_kv2("gateways/client-ca", {"ca.crt": pems["rotated-ca-cert"]})
    assert run(compiled_repo, vault, "lock update").exit_code == 0
    vault.proxy.reset_counts()
    code, output = offline(compiled_repo, vault, "diff", "--base", "HEAD", "--format",
                           "markdown")
    assert code == 0, output
    assert "CA certificate added to the trust anchors" in output
    assert "> **Offline** (Vault not contacted), not checked:" in output
    assert "> - server certificate 'https-cert' is in Vault only" in output
    assert "BEGIN CERTIFICATE" not in output
    assert_no_secrets(vault, output)


def test_diff_offline_base_without_a_lock_is_reported(tmp_path: Path, vault: Bao,
                                                      pems: dict[str, str]) -> None:
    seed(vault, pems)
    root = repo(tmp_path, source_yaml(vault), INTENT)
    git_commit_all(root)  # the base has intents but no lock and no overlays
    assert run(root, vault, "compile").exit_code == 0
    vault.proxy.reset_counts()
    code, output = offline(root, vault, "diff", "--base", "HEAD")
    assert code == 0, output
    # Without a lock at the base, its Vault references need Vault: the base does not compile.
    assert "the base does not compile; every file counts as added" in output
