"""A small policy repository that reads its certificates from the test's Vault, and the CLI run
against it (real HTTP through the fault proxy to the real server, unmodified hvac)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from compiler.cli import main
from tests.vault.fixtures import Bao

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


def source_yaml(vault: Bao, auth: str = "{method: token}", extra: str = "",
                partner: str | None = None, deadline: float = 4, ca_path: str = "client-ca",
                ca_extra: str = "") -> str:
    partner = partner or f"kv1: {{mount: {vault.kv1}, path: {vault.path('partners/ca')}}}"
    return f"""
apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {{name: vault}}
spec:
  vault:
    auth: {auth}
    deadlineSeconds: {deadline:g}
    certificates:
      https-cert:
        kv2: {{mount: {vault.kv2}, path: {vault.path('gateways/https-cert')}}}
    caBundles:
      ca-cert:
        kv2: {{mount: {vault.kv2}, path: {vault.path('gateways/' + ca_path)}{ca_extra}}}
      partner-ca:
        {partner}{extra}
"""


def seed(vault: Bao, pems: dict[str, str], namespace: str = "") -> None:
    vault.put_kv2("gateways/https-cert", {"tls.crt": pems["server-cert"],
                                          "tls.key": pems["server-key"]}, namespace=namespace)
    vault.put_kv2("gateways/client-ca", {"ca.crt": pems["ca-cert"]}, namespace=namespace)
    vault.put_kv1("partners/ca", {"ca.crt": pems["ca-cert"]}, namespace=namespace)


def repo(tmp_path: Path, source: str, intent: str = INTENT, target: str = TARGET) -> Path:
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "policies" / "target.yaml").write_text(target)
    (root / "policies" / "source.yaml").write_text(source)
    (root / "policies" / "intent.yaml").write_text(intent)
    return root


def run(root: Path, vault: Bao, *args: str, env: dict[str, str] | None = None,
        url: str | None = None) -> Result:
    base = {"VAULT_ADDR": url or vault.url, "VAULT_TOKEN": vault.root_token,
            "VAULT_NAMESPACE": "", "VAULT_CACERT": vault.world.ca_file or ""}
    command = args[0].split()  # "lock update" is a subcommand
    return CliRunner().invoke(main, [*command, "--root", str(root), *args[1:]],
                              env={**base, **(env or {})})


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file a compile may change, but run records and what accompanies them (their file
    lists, the policy memo, the delta compile's base and its kustomizations): a successful
    compile keyed by a lock an earlier one wrote adds one (tests/test_run_record_*.py)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "policies" not in p.parts and ".git" not in p.parts
            and not p.relative_to(root).as_posix().startswith(_RECORDS)}


_RECORDS = tuple(f".mtlsc/cache/{kind}/" for kind in ("run", "run-files", "policy-stat",
                                                       "delta", "delta-head",
                                                       "kustomization"))


def lock_of(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load((root / "mtlsc.lock").read_text())
    return data


def assert_no_secrets(vault: Bao, *texts: str | bytes) -> None:
    markers = ("PRIVATE KEY", vault.root_token, *vault.secrets)
    for text in texts:
        body = text.decode() if isinstance(text, bytes) else text
        for marker in markers:
            assert marker not in body
