"""Benchmark: compiling gateways that reference 1,000 distinct Vault secrets.

The test Vault-API server adds 20 ms to every request. Two runs are measured in the same
process and reported as a ratio (machines here are small and noisy; absolute times are not
the point):

- baseline: one sequential read per reference (the naive strategy: every gateway on every
  cluster reads each CA bundle it references itself), then the same compile work;
- mtlsc: the real compile through the Vault source (each distinct secret read once, reads in
  parallel).

Target (issue 4): mtlsc at least 10x faster than the baseline, with as many secret reads as
distinct secrets. Run: `.venv/bin/python bench/vault_fetch.py [--secrets N] [--clusters N]`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import hvac  # type: ignore[import-untyped]  # noqa: E402

from compiler.k8s.validate import SchemaStore  # noqa: E402
from compiler.load import read_policy_files  # noqa: E402
from compiler.pipeline import Options, compile_policies, schema_roots  # noqa: E402
from compiler.pki import generate_dev_pki  # noqa: E402
from compiler.secrets import ServerCertificate  # noqa: E402
from compiler.secrets.factory import source_factory  # noqa: E402
from tests.vault.server import FakeVault  # noqa: E402

PER_GATEWAY = 8  # caCertificateRefs limit of Gateway API v1.5.1


def policies(root: Path, secrets: int, clusters: int, concurrency: int) -> None:
    pol = root / "policies"
    pol.mkdir(parents=True)
    targets = "---\n".join(f"""apiVersion: mtlsc.dev/v1alpha1
kind: ClusterTarget
metadata: {{name: c{i}}}
spec:
  environment: prod
  gatewayAPI: {{version: v1.5.1, channel: standard}}
  certificateSource: vault
  envoy: {{enabled: false}}
""" for i in range(clusters))
    (pol / "targets.yaml").write_text(targets)
    cas = "\n".join(f"      ca-{i}: {{kv2: {{mount: secret, path: bench/ca-{i}}}}}"
                    for i in range(secrets))
    (pol / "source.yaml").write_text(f"""apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {{name: vault}}
spec:
  vault:
    auth: {{method: token}}
    concurrency: {concurrency}
    certificates:
      srv: {{kv2: {{mount: secret, path: bench/server}}}}
    caBundles:
{cas}
""")
    docs = []
    for g in range(secrets // PER_GATEWAY):
        refs = ", ".join(f"ca-{g * PER_GATEWAY + k}" for k in range(PER_GATEWAY))
        docs.append(f"""apiVersion: mtlsc.dev/v1alpha1
kind: GatewayIntent
metadata: {{name: gw-{g}, namespace: bench}}
spec:
  gatewayClassName: envoy-gateway
  environments: [prod]
  listeners:
  - {{name: https, port: 443, protocol: HTTPS, certificate: srv}}
  clientValidation:
    default: {{caBundles: [{refs}]}}
""")
    (pol / "gateways.yaml").write_text("---\n".join(docs))


def compile_once(root: Path) -> tuple[float, object]:
    texts = read_policy_files(root / "policies", root)
    store = SchemaStore(schema_roots(REPO))
    started = time.perf_counter()
    result = compile_policies(texts, source_factory(root), store, Options())
    return time.perf_counter() - started, result


class Prefetched:
    """The baseline's compile step: certificates already read, served from memory."""

    concurrency = 1

    def __init__(self, name: str, cas: dict[str, bytes], server: ServerCertificate) -> None:
        self.name, self._cas, self._server = name, cas, server

    def ca_bundle(self, ref: str) -> bytes:
        return self._cas[ref]

    def server_certificate(self, ref: str) -> ServerCertificate:
        return self._server

    def pins(self) -> dict[tuple[str, str], object]:
        return {}


def baseline(root: Path, vault: FakeVault, secrets: int, clusters: int) -> tuple[float, int]:
    """Sequential, one read per reference, then the same compile from memory."""
    client = hvac.Client(url=vault.url, token=vault.root_token, timeout=30)
    started = time.perf_counter()
    cas: dict[str, bytes] = {}
    reads = 0
    for _cluster in range(clusters):
        for i in range(secrets):
            answer = client.secrets.kv.v2.read_secret_version(
                path=f"bench/ca-{i}", mount_point="secret", raise_on_deleted_version=True)
            cas[f"ca-{i}"] = answer["data"]["data"]["ca.crt"].encode()
            reads += 1
        for _gateway in range(secrets // PER_GATEWAY):
            client.secrets.kv.v2.read_secret_version(path="bench/server", mount_point="secret",
                                                     raise_on_deleted_version=True)
            reads += 1
    fetched = time.perf_counter() - started
    pki = generate_dev_pki()
    server = ServerCertificate(pki["server-cert.pem"], None)
    texts = read_policy_files(root / "policies", root)
    store = SchemaStore(schema_roots(REPO))
    started = time.perf_counter()
    result = compile_policies(texts, lambda cfg: Prefetched(cfg.name, cas, server),  # type: ignore[arg-type, return-value]
                              store, Options())
    assert result.ok, result.diagnostics[:3]
    client.adapter.close()
    return fetched + time.perf_counter() - started, reads


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    pki = generate_dev_pki()
    with tempfile.TemporaryDirectory() as tmp, FakeVault() as vault:
        root = Path(tmp)
        policies(root, args.secrets, args.clusters, args.concurrency)
        ca = pki["ca-cert.pem"].decode()
        for i in range(args.secrets):
            vault.put_kv2("secret", f"bench/ca-{i}", {"ca.crt": ca})
        vault.put_kv2("secret", "bench/server", {"tls.crt": pki["server-cert.pem"].decode(),
                                                 "tls.key": pki["server-key.pem"].decode()})
        os.environ.update({"VAULT_ADDR": vault.url, "VAULT_TOKEN": vault.root_token})
        vault.latency(args.latency_ms / 1000)
        base_time, base_reads = baseline(root, vault, args.secrets, args.clusters)
        vault.reset_counts()
        ours_time, result = compile_once(root)
        assert getattr(result, "ok", False), getattr(result, "diagnostics", [])[:3]
        reads = vault.count("secret/data/")
    report = {
        "distinct_secrets": args.secrets + 1,
        "references": base_reads,
        "latency_ms": args.latency_ms,
        "baseline_seconds": round(base_time, 2),
        "mtlsc_seconds": round(ours_time, 2),
        "speedup": round(base_time / ours_time, 1),
        "mtlsc_secret_reads": reads,
        "target_met": base_time / ours_time >= 10 and reads == args.secrets + 1,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
