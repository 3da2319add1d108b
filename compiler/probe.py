"""A small HTTPS client that says whether a TLS endpoint accepted a request.

Under TLS 1.3 a server that rejects a client certificate may only say so after the handshake
(the client's Finished is already sent), so "no HTTP response" counts as rejected, whatever the
error looks like.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one HTTPS request came to: accepted or not, with the response or the error."""

    accepted: bool
    status: int | None
    headers: dict[str, str]
    body: bytes
    error: str | None = None


def _context(ca_file: Path, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    return context


def _read_response(tls: ssl.SSLSocket) -> bytes:
    chunks = []
    while True:
        data = tls.recv(65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _parse(raw: bytes) -> ProbeResult:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        return ProbeResult(False, None, {}, b"", "no HTTP response")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return ProbeResult(True, int(parts[1]), headers, body)


def probe(port: int, *, sni: str, ca_file: Path, cert: Path | None = None,
          key: Path | None = None, host_header: str | None = None, path: str = "/",
          extra_headers: dict[str, str] | None = None, address: str = "127.0.0.1",
          timeout: float = 5.0) -> ProbeResult:
    """GET `path` over TLS; `accepted` is True only if an HTTP response came back."""
    context = _context(ca_file, cert, key)
    request = (f"GET {path} HTTP/1.1\r\nHost: {host_header or sni}\r\nConnection: close\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in (extra_headers or {}).items()) + "\r\n")
    try:
        with socket.create_connection((address, port), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(request.encode("latin-1"))
            response = _read_response(tls)
    except (OSError, ssl.SSLError) as exc:
        return ProbeResult(False, None, {}, b"", f"{type(exc).__name__}: {exc}")
    return _parse(response)
