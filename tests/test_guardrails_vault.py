"""Guardrails over data from a real Vault (OpenBao): anchor source kinds, mounts and paths, and
`check --offline`, which has the CA bodies (committed overlays, verified against the lock) but
not the server certificates, so rules reading `certificates` are skipped there."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.vault.fixtures import Bao
from tests.vault.repo import repo, run, seed, source_yaml

pytestmark = pytest.mark.real_vault


def guardrail(root: Path, scope: str, expression: str) -> None:
    (root / "policies" / "guardrail.yaml").write_text(
        "apiVersion: mtlsc.dev/v1alpha1\nkind: Guardrail\nmetadata: {name: org}\nspec:\n"
        f"  rules:\n  - name: rule\n    scope: {scope}\n    expression: \"{expression}\"\n"
        "    message: the rule\n")


@pytest.fixture
def vault_repo(tmp_path: Path, vault: Bao, pems: dict[str, str]) -> Path:
    seed(vault, pems)
    return repo(tmp_path, source_yaml(vault))


def test_approved_mounts_see_vault_kinds_mounts_and_paths(vault_repo: Path, vault: Bao) -> None:
    # ca-cert comes from KV v2 on every port; port 8444 also trusts partner-ca from KV v1.
    guardrail(vault_repo, "port", f"port.anchors.all(a, a.sourceKind == 'kv2' && "
              f"a.sourceMount == '{vault.kv2}' && a.sourcePath.startsWith('{vault.kv2}/'))")
    result = run(vault_repo, vault, "compile", "--format", "github")
    assert result.exit_code == 1, result.output
    [line] = [x for x in result.stdout.splitlines() if "GuardrailViolation" in x]
    # located at the perPort entry's caBundles line, which added the KV v1 bundle
    assert "file=policies/intent.yaml,line=14,col=31," in line and "port 8444" in line
    guardrail(vault_repo, "port", f"port.anchors.all(a, a.sourceMount in ['{vault.kv2}', "
              f"'{vault.kv1}'] && a.issuer != '' && a.daysLeft > 0)")
    assert run(vault_repo, vault, "compile").exit_code == 0


def test_offline_check_skips_server_certificate_rules_only(vault_repo: Path,
                                                           vault: Bao) -> None:
    assert run(vault_repo, vault, "compile").exit_code == 0
    never = "100000"
    guardrail(vault_repo, "gateway", f"gateway.certificates.all(c, c.daysLeft >= {never})")
    online = run(vault_repo, vault, "check")
    assert online.exit_code == 1 and "error[GuardrailViolation]" in online.output
    offline = run(vault_repo, vault, "check", "--offline", env={"VAULT_TOKEN": ""})
    assert offline.exit_code == 0, offline.output  # not fetched: NotCheckedOffline says so
    assert "NotCheckedOffline" in offline.output
    guardrail(vault_repo, "port", f"port.anchors.all(a, a.daysLeft >= {never})")
    offline = run(vault_repo, vault, "check", "--offline", env={"VAULT_TOKEN": ""})
    assert offline.exit_code == 1 and "error[GuardrailViolation]" in offline.output
