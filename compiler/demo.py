"""`mtlsc demo`: the seed's checks against a real Envoy running the compiled example config.

It materializes the demo cluster's certificates into a private temporary directory, runs Envoy
on loopback with a local copy of the generated config (only file paths, addresses and ports
changed), sends requests with and without client certificates, prints the table and stops
Envoy by its process id.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from .emit import to_yaml
from .envoy_local import Localize, free_port, localize, materialize, run_envoy
from .fetch import Materials
from .model import ClusterModel, Gateway
from .pki import CA_CERT, CLIENT_CERT, CLIENT_KEY, issue_certificate, make_ca
from .probe import ProbeResult, probe
from .render.envoy import render_envoy


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@contextmanager
def echo_backend() -> Iterator[int]:
    """A loopback HTTP backend that answers with the request headers it saw, as JSON."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def write_unrelated_client(directory: Path) -> tuple[Path, Path]:
    """A client certificate from a CA nobody trusts (for the 'unrelated CA' rows)."""
    now = datetime.now(UTC)
    ca, ca_key = make_ca("Unrelated CA", not_before=now - timedelta(days=1),
                         not_after=now + timedelta(days=30))
    cert, key = issue_certificate(ca, ca_key, common_name="stranger.example.com",
                                  dns_names=["stranger.example.com"], client=True,
                                  not_before=now - timedelta(days=1),
                                  not_after=now + timedelta(days=30))
    cert_path, key_path = directory / "unrelated-cert.pem", directory / "unrelated-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the demo table: what a gateway port did with one kind of client."""

    port: int
    client: str
    result: ProbeResult


@contextmanager
def running_gateway(envoy: str, cluster: ClusterModel, gateway: Gateway, materials: Materials,
                    workdir: Path, backend_port: int) -> Iterator[dict[int, int]]:
    """Run one compiled gateway on loopback; yields {gateway port: local port}."""
    settings = cluster.target.envoy
    certs = workdir / "certs"
    materialize(cluster, materials, certs)
    ca_pems = materials.ca_pems_for(cluster.target.certificate_source)
    bootstrap = render_envoy(gateway, cluster.target.name, ca_pems, settings)
    ports = {p: free_port() for p in sorted({lst.port for lst in gateway.listeners})}
    local = localize(bootstrap, settings, Localize(str(certs), "127.0.0.1", ports,
                                                   ("127.0.0.1", backend_port)))
    local.pop("admin", None)
    config = workdir / f"{gateway.name}.yaml"
    config.write_bytes(to_yaml(local))
    with run_envoy(envoy, config, sorted(ports.values())):
        yield ports


def seed_matrix(ports: dict[int, int], pki: Path, unrelated: tuple[Path, Path],
                sni: str = "example.com") -> list[Row]:
    clients: Sequence[tuple[str, Path | None, Path | None]] = (
        ("no client certificate", None, None),
        ("client certificate (dev CA)", pki / CLIENT_CERT, pki / CLIENT_KEY),
        ("certificate from unrelated CA", *unrelated),
    )
    rows = []
    for port in sorted(ports):
        for label, cert, key in clients:
            result = probe(ports[port], sni=sni, ca_file=pki / CA_CERT, cert=cert, key=key)
            rows.append(Row(port, label, result))
    return rows


def backend_saw(result: ProbeResult, header: str) -> str | None:
    """The value of `header` as the echo backend received it (None when absent)."""
    if not result.accepted or result.status != 200:
        return None
    try:
        seen = {k.lower(): v for k, v in json.loads(result.body)["headers"].items()}
    except (ValueError, KeyError, TypeError):
        return None
    value = seen.get(header.lower())
    return str(value) if value is not None else None


def table(rows: Sequence[Row], header: str) -> str:
    lines = [f"{'port':<6} {'client':<32} {'outcome':<9} {header} (as the backend saw it)"]
    for row in rows:
        outcome = "accepted" if row.result.accepted else "rejected"
        lines.append(f"{row.port:<6} {row.client:<32} {outcome:<9} "
                     f"{backend_saw(row.result, header) or '-'}")
    return "\n".join(lines)
