"""The certificate material a compile fetched, as the run record keeps it, and reading it again.

A compile's result depends on the bytes its certificate sources served, so a run record is
only replayed after the same material has been read again and found equal:

- a local PEM source: every file it read (certificate, key, CA bundle), by the path the source
  opened and the real path that resolved to (a link retargeted, or a path leaving the
  repository, is a difference), plus the dev PKI's `ca-cert.pem` when `createDevPki` is set
  (without it the source would create a PKI). Files are opened like the source opens them: no
  link followed at the last step, nothing but a regular file, never more bytes than recorded;
- a Vault source: its configuration and one read per recorded secret through a `VaultSource`
  built as the compile builds it (the lock's pins, one login), so a changed secret, a revoked
  token or an unreachable server is a difference. Those sources are handed to the full compile
  that follows a miss, so a run still logs in once.

Digests are SHA-256 over the record's key and the bytes: the record never holds a bare digest
of a private key. Recording reads what the compile already holds in memory (`Result`); reading
again imports only what the source needs (hvac for Vault, nothing for local files).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .run_disk import read_at_most

if TYPE_CHECKING:
    from .load import SourceConfig
    from .pipeline import Result
    from .secrets import CertificateSource

DEV_PKI_MARKER = "ca-cert.pem"  # pki.CA_CERT: the file whose absence makes createDevPki write


def salted(salt: str, data: bytes) -> str:
    return hashlib.sha256(salt.encode("ascii") + b"\0" + data).hexdigest()


# --- recording (after a successful compile) ----------------------------------------------


def record(result: Result, root: Path, salt: str) -> dict[str, Any] | None:
    """What `result` fetched, as JSON data; None when it cannot be described (not recorded)."""
    from .load import LocalSourceConfig
    from .pki import CA_CERT

    if result.materials is None or result.policies is None or CA_CERT != DEV_PKI_MARKER:
        return None
    configs = {s.name: s for s in result.policies.sources}
    local: list[dict[str, Any]] = []
    markers: set[str] = set()
    vault: dict[str, list[dict[str, Any]]] = {}
    reads: list[tuple[str, tuple[str, str], tuple[bytes, ...]]] = [
        ("ca", key, (pem,)) for key, pem in result.materials.ca_bundles.items()]
    reads += [("server", key, (cert.chain_pem,
                               cert.private_key.reveal() if cert.private_key else b""))
              for key, cert in result.materials.server_certs.items()]
    for kind, (source, ref), data in sorted(reads, key=lambda r: (r[1], r[0])):
        config = configs.get(source)
        if isinstance(config, LocalSourceConfig):
            files = (config.ca_bundles[ref],) if kind == "ca" else config.certificates[ref]
            for relative, content in zip(files, data, strict=True):
                path = root / config.directory / relative
                local.append({"path": os.path.join(config.directory, relative),
                              "real": os.path.realpath(path), "size": len(content),
                              "sha256": salted(salt, content)})
            if config.create_dev_pki:
                markers.add(str(Path(config.directory) / DEV_PKI_MARKER))
        elif config is not None:
            vault.setdefault(source, []).append(
                {"kind": kind, "ref": ref, "sha256": [salted(salt, d) for d in data]})
        else:
            return None
    return {"local": local, "devPki": sorted(markers),
            "vault": [{"config": to_json(configs[name]), "reads": reads_of}
                      for name, reads_of in sorted(vault.items())]}


def to_json(value: Any) -> Any:
    """A dataclass tree (a Vault source's configuration) as JSON data."""
    if is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__,
                **{f.name: to_json(getattr(value, f.name)) for f in fields(value)}}
    if isinstance(value, Mapping):
        return {"__map__": [[k, to_json(v)] for k, v in sorted(value.items())]}
    if isinstance(value, (tuple, list)):
        return {"__tuple__": [to_json(v) for v in value]}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"cannot record a {type(value).__name__}")


def from_json(data: Any) -> Any:
    from .diagnostics import Location
    from .secrets.vault_config import ExternalSecrets, VaultAuth, VaultRef, VaultSourceConfig

    types: dict[str, Any] = {c.__name__: c for c in (Location, VaultRef, VaultAuth,
                                                      ExternalSecrets, VaultSourceConfig)}

    def build(item: Any) -> Any:
        if isinstance(item, dict):
            if "__map__" in item:
                return {str(k): build(v) for k, v in item["__map__"]}
            if "__tuple__" in item:
                return tuple(build(v) for v in item["__tuple__"])
            kind = types[item["__type__"]]
            return kind(**{k: build(v) for k, v in item.items() if k != "__type__"})
        return item

    return build(data)


# --- reading again (a lookup) ------------------------------------------------------------


@dataclass
class Reread:
    """The outcome of reading the recorded material again."""

    same: bool = True
    # Vault sources opened (and perhaps logged in) by the lookup, by source name, with the
    # configuration they were opened for: the full compile after a miss reuses them.
    opened: dict[str, tuple[SourceConfig, CertificateSource]] = field(default_factory=dict)


def local_same(data: Mapping[str, Any], root: Path, salt: str) -> bool:
    """Every recorded local file still resolves to the same place and holds the same bytes."""
    try:
        for marker in data["devPki"]:
            if not (root / marker).exists():
                return False
        for entry in data["local"]:
            path = root / entry["path"]
            real = os.path.realpath(path)
            if real != entry["real"]:
                return False
            content = read_at_most(real, int(entry["size"]) + 1, regular=True)
            if content is None or salted(salt, content) != entry["sha256"]:
                return False
    except (OSError, KeyError, TypeError, ValueError):
        return False
    return True


def vault_same(data: Mapping[str, Any], root: Path, lock_text: bytes | None,
               salt: str) -> Reread:
    """Read every recorded Vault secret again (one login per source, reads in parallel up to
    the source's concurrency) and compare."""
    groups = data.get("vault") or []
    out = Reread()
    if not groups:
        return out
    from concurrent.futures import ThreadPoolExecutor

    from .lock import parse_lock
    from .secrets.vault import VaultSource

    try:
        lock = parse_lock(lock_text.decode("utf-8")) if lock_text is not None else {}
        for group in groups:
            config = from_json(group["config"])
            pins = {(kind, name): pin for (src, kind, name), pin in lock.items()
                    if src == config.name}
            source = VaultSource(config, root, pins)
            out.opened[config.name] = (config, source)
            reads = list(group["reads"])
            with ThreadPoolExecutor(max_workers=max(1, config.concurrency)) as pool:
                found = list(pool.map(lambda r, s=source: _vault_read(s, r, salt), reads))
            if any(f != r["sha256"] for f, r in zip(found, reads, strict=True)):
                out.same = False
                return out
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        out.same = False
    return out


def _vault_read(source: Any, entry: Mapping[str, Any], salt: str) -> list[str] | None:
    """The digests of what the source serves for one recorded read; None when it fails (the
    full compile reports the failure)."""
    from .secrets import SourceError

    try:
        if entry["kind"] == "ca":
            return [salted(salt, source.ca_bundle(entry["ref"]))]
        cert = source.server_certificate(entry["ref"])
        key = cert.private_key.reveal() if cert.private_key else b""
        return [salted(salt, cert.chain_pem), salted(salt, key)]
    except SourceError:
        return None
