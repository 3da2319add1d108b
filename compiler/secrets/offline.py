"""A Vault source served from Git alone: `mtlsc check --offline` and `mtlsc diff --offline`.

Pull requests from forks (and bots) cannot reach a private Vault. What Git holds is enough for
most checks: `mtlsc.lock` pins every Vault reference (version or issuer id, SHA-256 fingerprints,
earliest notAfter) and the committed overlays carry each CA bundle's PEM in its ConfigMap. This
source serves a CA bundle only from a committed ConfigMap whose certificates have exactly the
fingerprints the lock records, and refuses everything else with a "needs Vault" diagnostic.

What cannot be checked without Vault is reported, never silently passed:
- server certificates (their chain and key live only in Vault): key match, hostname coverage and
  chain checks are skipped; expiry is still checked from the lock's notAfter;
- that Vault still serves the locked versions (not deleted, destroyed or rotated in place).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..diagnostics import Diagnostic, warning
from ..lock import LOCK_FILE, LockKey, Pin
from ..verify import fingerprint_sha256, parse_pem_certificates
from . import ServerCertificate, SourceError
from .vault_config import VaultSourceConfig

PinKey = tuple[str, str]  # (kind, logical name)


def committed_ca_bundles(overlays: Path) -> dict[str, list[bytes]]:
    """ConfigMap name → the `ca.crt` bodies of the CA ConfigMaps under `overlays` on disk."""
    files: dict[str, bytes] = {}
    for path in sorted(overlays.rglob("configmap-*.yaml")) if overlays.is_dir() else ():
        try:
            files[path.as_posix()] = path.read_bytes()
        except OSError:
            continue
    return ca_bundles_in(files)


def ca_bundles_in(files: Mapping[str, bytes]) -> dict[str, list[bytes]]:
    """ConfigMap name → the `ca.crt` bodies of every CA ConfigMap among `files` (path → bytes,
    e.g. the overlays of a Git revision)."""
    found: dict[str, list[bytes]] = {}
    for path, data in sorted(files.items()):
        if not path.rsplit("/", 1)[-1].startswith("configmap-"):
            continue
        for obj in _documents(data):
            body, meta = obj.get("data"), obj.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            if obj.get("kind") == "ConfigMap" and isinstance(body, dict) and \
                    isinstance(body.get("ca.crt"), str) and isinstance(name, str):
                pem = body["ca.crt"].encode("ascii", errors="replace")
                if pem not in found.setdefault(name, []):
                    found[name].append(pem)
    return found


def _documents(data: bytes) -> Iterator[dict[str, Any]]:
    try:
        yield from (d for d in YAML(typ="safe", pure=True).load_all(data.decode("utf-8"))
                    if isinstance(d, dict))
    except (UnicodeDecodeError, YAMLError):
        return


def offline_summary(pins: Mapping[LockKey, Pin], vault_sources: Collection[str],
                    ) -> list[Diagnostic]:
    """One warning per Vault source: what an offline run took on trust from the lock."""
    out = []
    for source in sorted(vault_sources):
        refs = sorted({name for (src, _, name) in pins if src == source})
        if not refs:
            continue
        shown = ", ".join(refs[:5]) + (f" and {len(refs) - 5} more" if len(refs) > 5 else "")
        out.append(warning("OfflineChecks", f"offline: Vault source {source!r} was not "
                           f"contacted; not checked: that Vault still serves the {len(refs)} "
                           f"locked reference(s) ({shown}) unchanged — not deleted, destroyed "
                           "or rotated in place", None, "run `mtlsc check` with Vault access "
                           "(after merging, in CI) for these checks"))
    return out


def fingerprints(pem: bytes) -> tuple[str, ...]:
    certs, _ = parse_pem_certificates(pem)
    return tuple(fingerprint_sha256(c) for c in certs)


class OfflineVaultSource:
    """Serves what Git holds for one Vault CertificateSource; never opens a connection."""

    def __init__(self, config: VaultSourceConfig, pins: Mapping[PinKey, Pin],
                 bundles: Mapping[str, list[bytes]], *, now: datetime | None = None) -> None:
        self.name = config.name
        self.concurrency = 1
        self._config = config
        self._pins = dict(pins)
        self._bundles = bundles
        self._now = now or datetime.now(UTC)
        self.served: dict[PinKey, Pin] = {}
        self.unchecked: set[str] = set()  # server certificates whose checks need Vault

    def pins(self) -> dict[PinKey, Pin]:
        return dict(self.served)

    def _pin(self, kind: str, ref: str) -> Pin:
        where = self._config.ref(kind, ref)
        pin = self._pins.get((kind, ref))
        if pin is None or (pin.engine, pin.mount, pin.path) != (where.engine, where.mount,
                                                               where.path):
            raise SourceError("NeedsVault", f"{ref!r} ({where.describe()}) is not pinned in "
                              f"{LOCK_FILE}: it cannot be checked without Vault",
                              "run `mtlsc lock update` with Vault access (a maintainer, or the "
                              "same-repository CI job) and commit mtlsc.lock",
                              source_failure=False)
        return pin

    def ca_bundle(self, ref: str) -> bytes:
        pin = self._pin("caBundles", ref)
        for body in self._bundles.get(ref, []):
            if fingerprints(body) == pin.fingerprints:
                self.served[("caBundles", ref)] = pin
                return body
        raise SourceError("OfflineLockMismatch", f"no committed ConfigMap {ref!r} holds the "
                          f"certificates {LOCK_FILE} pins for it ({len(pin.fingerprints)} "
                          "fingerprints): overlays and lock disagree", "compile with Vault "
                          "access and commit overlays/ and mtlsc.lock together",
                          source_failure=False)

    def server_certificate(self, ref: str) -> ServerCertificate:
        pin = self._pin("certificates", ref)
        self.served[("certificates", ref)] = pin
        self.unchecked.add(ref)
        expired = _expired(pin, self._now)
        if expired:
            raise SourceError("CertificateExpired", f"server certificate {ref!r} expired at "
                              f"{pin.not_after} ({LOCK_FILE})", "rotate it in Vault and run "
                              "`mtlsc lock update`", source_failure=False)
        raise SourceError("NotCheckedOffline", f"server certificate {ref!r} is in Vault only: "
                          "its key match, hostname coverage and chain were not checked "
                          f"offline (the lock's notAfter {pin.not_after} was)",
                          "run `mtlsc check` with Vault access for the full checks",
                          source_failure=False, warning=True)


def _expired(pin: Pin, now: datetime) -> bool:
    try:
        return datetime.strptime(pin.not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) <= now
    except ValueError:
        return False
