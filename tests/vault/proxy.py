"""A fault-injecting HTTP proxy on loopback, in front of a real Vault-API server (OpenBao).

Tests point hvac (unmodified) at ``proxy.url``; the proxy forwards every request to the real
server and counts it per (method, path, namespace). Faults are queued rules that answer a
matching request instead of (or after) the server:

- ``status``: an HTTP error with Vault's JSON error body (429, 500, 502, 503, ...)
- ``sealed`` / ``standby``: the 503 answers of a sealed node and of a standby without a leader
- ``drop``: close the connection without an answer
- ``truncate``: forward, then send only half of the body (Content-Length promises all of it)
- ``malformed``: a 200 whose body is not JSON
- ``stall``: wait ``seconds`` before forwarding (longer than the client's timeout)

plus ``latency`` (added to every request) and ``start_after`` (connection refused until the
proxy starts listening). It is bounded (at most ``max_connections`` handler threads) and stops by
itself after ``lifetime`` seconds if a test forgets to close it.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade",
              "te", "trailer", "host", "content-length"}


@dataclass
class Fault:
    kind: str
    times: int
    path: str = ""  # prefix of the Vault path (without /v1/)
    method: str | None = None
    status: int = 0
    seconds: float = 0.0
    message: str = ""

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and path.startswith(self.path) and \
            (self.method is None or self.method == method)


class _Server(ThreadingHTTPServer):
    """Clients that hang up on a stalled or dropped answer are part of the faults, not noise:
    only unexpected errors are printed."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class FaultProxy:
    def __init__(self, upstream: str, *, ca_file: str | None = None, start_after: float = 0.0,
                 max_connections: int = 64, lifetime: float = 600.0) -> None:
        parts = urlsplit(upstream)
        self._scheme, self._netloc = parts.scheme, parts.netloc
        self._context = ssl.create_default_context(cafile=ca_file) \
            if parts.scheme == "https" else None
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._slots = threading.BoundedSemaphore(max_connections)
        self._stopping = threading.Event()
        self.latency = 0.0
        self.requests: Counter[tuple[str, str, str]] = Counter()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()  # nothing listens on the port until the server starts: refused
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._start_timer = threading.Timer(start_after, self._listen)
        self._start_timer.daemon = True
        self._stop_timer = threading.Timer(lifetime, self.close)
        self._stop_timer.daemon = True

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._start_timer.start()
        self._stop_timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def wait_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self._server is None and time.monotonic() < deadline:
            time.sleep(0.01)

    def _listen(self) -> None:
        if self._stopping.is_set():
            return
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = _Server(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        self._stopping.set()
        self._start_timer.cancel()
        self._stop_timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    # --- faults and counts -------------------------------------------------------------------

    def inject(self, kind: str, *, times: int = 1, path: str = "", method: str | None = None,
               status: int = 0, seconds: float = 0.0, message: str = "") -> None:
        with self._lock:
            self._faults.append(Fault(kind, times, path, method, status, seconds, message))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.latency = 0.0

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, prefix: str = "", method: str | None = None,
              namespace: str | None = None) -> int:
        with self._lock:
            return sum(n for (m, p, ns), n in self.requests.items()
                       if p.startswith(prefix) and (method is None or m == method)
                       and (namespace is None or ns == namespace))

    def paths(self, prefix: str = "") -> dict[str, int]:
        with self._lock:
            out: Counter[str] = Counter()
            for (_, p, _), n in self.requests.items():
                if p.startswith(prefix):
                    out[p] += n
            return dict(out)

    def _take(self, method: str, path: str, namespace: str) -> Fault | None:
        with self._lock:
            self.requests[(method, path, namespace)] += 1
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    def _connection(self) -> http.client.HTTPConnection:
        if self._context is not None:
            return http.client.HTTPSConnection(self._netloc, timeout=60, context=self._context)
        return http.client.HTTPConnection(self._netloc, timeout=60)


def vault_error(*messages: str) -> bytes:
    return json.dumps({"errors": list(messages)}).encode()


CANNED = {
    "sealed": (503, vault_error("Vault is sealed")),
    "standby": (503, vault_error("local node not active but active cluster node not found")),
    "malformed": (200, b'{"request_id": "x", "data": {"truncated'),
}


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        if not self.owner._slots.acquire(timeout=30):  # bounded: refuse beyond the limit
            return
        try:
            super().handle()
        finally:
            self.owner._slots.release()
            if self.upstream is not None:
                self.upstream.close()

    def _proxy(self) -> None:
        owner = self.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        path = urlsplit(self.path).path.removeprefix("/v1/")
        namespace = (self.headers.get("X-Vault-Namespace") or "").strip("/")
        fault = owner._take(self.command, path, namespace)
        if owner.latency:
            owner._stopping.wait(owner.latency)
        kind = fault.kind if fault else ""
        if kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "stall":
            owner._stopping.wait(fault.seconds if fault else 0)
        if kind == "status" and fault:
            return self._answer(fault.status, vault_error(fault.message or
                                                          f"injected {fault.status}"))
        if kind in CANNED:
            return self._answer(*CANNED[kind])
        status, headers, payload = self._forward(body)
        if kind == "truncate":
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._answer(status, payload, headers)

    def _forward(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        for attempt in range(2):  # a kept-alive upstream connection may have gone away
            if self.upstream is None:
                self.upstream = self.owner._connection()
            try:
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                answer = self.upstream.getresponse()
                payload = answer.read()
                kept = [(k, v) for k, v in answer.getheaders() if k.lower() not in HOP_BY_HOP]
                return answer.status, kept, payload
            except (ConnectionError, http.client.HTTPException):
                self.upstream.close()
                self.upstream = None
                if attempt:
                    return 502, [], vault_error("proxy: upstream unreachable")
        raise AssertionError("unreachable")

    def _answer(self, status: int, payload: bytes,
                headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for key, value in headers or [("Content-Type", "application/json")]:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_LIST = _proxy
