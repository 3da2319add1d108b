"""`mtlsc.lock`: which certificate versions a compile ships, committed next to the intents.

For every Vault reference: the resolved path, the KV version or PKI issuer id, and the
certificates' SHA-256 fingerprints and earliest notAfter. Public data only: no secret value, no
key material, no token. `compile` reads the pinned versions, so output is reproducible and a
rotation shows up in a pull request as a lock change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .emit import to_yaml

LOCK_FILE = "mtlsc.lock"
LOCK_VERSION = 1
KINDS = ("caBundles", "certificates")


@dataclass(frozen=True, slots=True)
class Pin:
    """What `mtlsc.lock` records for one Vault reference: the version compiled against and the
    public facts of its certificates."""

    engine: str  # kv2 | kv1 | pki
    mount: str
    path: str  # KV path, or the PKI issuer reference as configured
    version: int | None  # KV v2 version
    issuer_id: str | None  # PKI issuer id
    fingerprints: tuple[str, ...]  # SHA-256 of each certificate (public)
    not_after: str  # earliest notAfter, ISO 8601

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.engine, "mount": self.mount, "path": self.path}
        if self.version is not None:
            out["version"] = self.version
        if self.issuer_id is not None:
            out["issuerId"] = self.issuer_id
        out["fingerprints"] = list(self.fingerprints)
        out["notAfter"] = self.not_after
        return out


# (source, kind, logical name) → pin
LockKey = tuple[str, str, str]


class LockError(ValueError):
    pass


def parse_lock(text: str) -> dict[LockKey, Pin]:
    from ruamel.yaml import YAML  # only when there is a lock to read
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text) or {}
    except YAMLError as exc:
        raise LockError(f"{LOCK_FILE} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != LOCK_VERSION:
        raise LockError(f"{LOCK_FILE}: unsupported format (expected version {LOCK_VERSION})")
    pins: dict[LockKey, Pin] = {}
    for source, kinds in (data.get("sources") or {}).items():
        for kind in KINDS:
            for name, entry in ((kinds or {}).get(kind) or {}).items():
                pins[(str(source), kind, str(name))] = _pin(entry)
    return pins


def _pin(entry: Mapping[str, Any]) -> Pin:
    try:
        version = entry.get("version")
        return Pin(str(entry["engine"]), str(entry["mount"]), str(entry["path"]),
                   int(version) if version is not None else None,
                   entry.get("issuerId"), tuple(str(f) for f in entry["fingerprints"]),
                   str(entry["notAfter"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise LockError(f"{LOCK_FILE}: malformed entry {dict(entry)!r}: {exc}") from None


def render_lock(pins: Mapping[LockKey, Pin]) -> bytes:
    sources: dict[str, dict[str, dict[str, Any]]] = {}
    for (source, kind, name), pin in sorted(pins.items()):
        sources.setdefault(source, {}).setdefault(kind, {})[name] = pin.as_dict()
    return to_yaml({"version": LOCK_VERSION, "sources": sources})
