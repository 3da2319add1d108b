"""Faults between mtlsc and a real OpenBao, injected by the loopback proxy: what is retried within
the run's deadline, what fails at once, one diagnostic per root cause, request counts, and no
secret in any output format."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.vault.fixtures import Bao, World
from tests.vault.openbao import free_port
from tests.vault.proxy import FaultProxy
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


@pytest.mark.parametrize("fault", ["503", "429", "500", "502", "sealed", "standby", "drop",
                                   "truncate", "malformed", "latency", "stall"])
def test_transient_faults_are_retried(tmp_path: Path, seeded: Bao, fault: str) -> None:
    proxy, data = seeded.proxy, f"{seeded.kv2}/data/"
    root = repo(tmp_path, source_yaml(seeded, deadline=9))  # client timeout: 3 s
    if fault.isdigit():
        proxy.inject("status", status=int(fault), times=2, path=data)
    elif fault == "latency":
        proxy.latency = 0.05
    elif fault == "stall":
        proxy.inject("stall", seconds=5, path=data)
    else:
        proxy.inject(fault, times=2, path=data)
    started = time.monotonic()
    result = run(root, seeded, "compile")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 9
    if fault != "latency":
        assert proxy.count(data) > 2  # two distinct KV v2 secrets, plus the retries


def test_connection_refused_until_vault_comes_up(tmp_path: Path, seeded: Bao,
                                                 openbao: World) -> None:
    root = repo(tmp_path, source_yaml(seeded, deadline=20))
    with FaultProxy(openbao.url, ca_file=openbao.ca_file, start_after=1.5) as late:
        result = run(root, seeded, "compile", url=late.url)
        assert result.exit_code == 0, result.output
        assert late.count("auth/token/lookup-self") == 1


@pytest.mark.parametrize("fault", ["forbidden", "missing", "sealed"])
def test_permanent_faults_fail_closed(tmp_path: Path, seeded: Bao, fault: str) -> None:
    root = repo(tmp_path, source_yaml(seeded, deadline=2))
    assert run(root, seeded, "compile").exit_code == 0
    before = snapshot(root)
    env: dict[str, str] = {}
    if fault == "forbidden":
        env["VAULT_TOKEN"] = seeded.token(f'path "{seeded.kv1}/*" {{ capabilities = ["read"] }}')
        expected = (f"Vault denied 'read' on '{seeded.kv2}/data/"
                    f"{seeded.path('gateways/client-ca')}'")
    elif fault == "missing":
        (root / "policies" / "source.yaml").write_text(source_yaml(seeded, ca_path="nope"))
        expected = "VaultSecretNotFound"
    else:
        seeded.proxy.inject("sealed", times=10_000)
        expected = "VaultUnavailable"
    result = run(root, seeded, "compile", env=env)
    assert result.exit_code == 3, result.output
    assert expected in result.output and "policies/intent.yaml:" in result.output
    assert snapshot(root) == before
    if fault == "forbidden":  # the hint is the policy line to add
        assert (f'path "{seeded.kv2}/data/{seeded.path("gateways/client-ca")}" '
                '{ capabilities = ["read"] }') in result.output
        assert result.output.count("VaultPermissionDenied") == 2  # two secrets, two causes


def test_vault_down_is_one_diagnostic_within_one_deadline(tmp_path: Path, vault: Bao) -> None:
    gateways = "---".join(INTENT.replace("name: gw,", f"name: gw-{i},") for i in range(6))
    root = repo(tmp_path, source_yaml(vault, deadline=3), gateways)
    started = time.monotonic()
    result = run(root, vault, "check", url=f"http://127.0.0.1:{free_port()}")
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.output
    assert result.output.count("VaultUnavailable") == 1
    assert "affects 30 references: policies/intent.yaml:" in result.output
    assert "and 27 more" in result.output
    assert "kept failing for 3s, the run's deadline (connection failed)" in result.output
    assert "auth /" not in result.output
    assert elapsed < 6  # one deadline for the run, not one per reference


def test_vault_error_text_is_one_clean_line(tmp_path: Path, seeded: Bao) -> None:
    root = repo(tmp_path, source_yaml(seeded))
    seeded.proxy.inject("status", status=400, path=f"{seeded.kv1}/", times=5,
                        message="1 error occurred:\n\t* unsupported path\n\n")
    result = run(root, seeded, "compile", "--format", "github")
    assert result.exit_code == 3, result.output
    line = next(x for x in result.output.splitlines() if "VaultInvalidRequest" in x)
    assert "(unsupported path)" in line and "error occurred" not in line
    assert "\t" not in result.output and "* " not in line


def test_each_distinct_secret_is_read_once_and_login_happens_once(tmp_path: Path,
                                                                   seeded: Bao) -> None:
    two_clusters = TARGET + "---" + TARGET.replace("name: prod", "name: prod-2")
    root = repo(tmp_path, source_yaml(seeded), INTENT.replace("[prod]", "[prod, prod-2]"),
                two_clusters)
    assert run(root, seeded, "compile").exit_code == 0
    reads = {**seeded.proxy.paths(f"{seeded.kv2}/"), **seeded.proxy.paths(f"{seeded.kv1}/")}
    assert reads == {f"{seeded.kv1}/{seeded.path('partners/ca')}": 1,
                     f"{seeded.kv2}/data/{seeded.path('gateways/client-ca')}": 1,
                     f"{seeded.kv2}/data/{seeded.path('gateways/https-cert')}": 1}
    assert seeded.proxy.paths("auth/") == {"auth/token/lookup-self": 1}


@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_no_secret_in_any_output_format(tmp_path: Path, seeded: Bao, fmt: str) -> None:
    approle = seeded.approle(f"role-{seeded.tag}", f"secret-{seeded.tag}")
    auth = f"{{method: approle, mount: {approle}, roleId: role-{seeded.tag}}}"
    root = repo(tmp_path, source_yaml(seeded, auth=auth, deadline=1))
    env = {"VAULT_TOKEN": "", "VAULT_SECRET_ID": f"secret-{seeded.tag}"}
    result = run(root, seeded, "compile", "--format", fmt, env=env)
    assert result.exit_code == 0, result.output
    assert_no_secrets(seeded, result.output)
    seeded.proxy.inject("sealed", times=10_000)
    result = run(root, seeded, "check", "--format", fmt, env=env)
    assert result.exit_code == 3
    assert_no_secrets(seeded, result.output)
    assert_no_secrets(seeded, *snapshot(root).values())


def test_an_address_that_is_not_a_url_is_a_configuration_error(tmp_path: Path,
                                                                vault: Bao) -> None:
    root = repo(tmp_path, source_yaml(vault))
    result = run(root, vault, "compile", url="vault.example.com:8200")
    assert result.exit_code == 1, result.output
    assert result.output.count("VaultNotConfigured") == 1 and "Traceback" not in result.output
