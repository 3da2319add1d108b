"""HashiCorp Vault as a certificate source (hvac): KV v2, KV v1 and PKI issuers.

- One authenticated hvac client per run (token, AppRole, Kubernetes or JWT/OIDC login), TLS
  verified by default (custom CA via caCert / VAULT_CACERT), VAULT_ADDR, VAULT_NAMESPACE and
  VAULT_TOKEN honoured.
- Every distinct secret is read once per run, whatever number of references it has.
- Transient failures (connection errors, 429, 500, 502, 503, malformed responses) are retried
  with exponential backoff and jitter within a deadline; permanent ones (403, 404, 400, TLS)
  fail at once. Messages never contain a token or a secret value.
- Reads honour the lockfile's pins (KV v2 version, PKI issuer id) and report what they resolved.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import hvac  # type: ignore[import-untyped, unused-ignore]
import requests
from hvac import exceptions as hvac_errors  # type: ignore[import-untyped, unused-ignore]
from requests.adapters import HTTPAdapter

from ..lock import Pin
from ..verify import fingerprint_sha256, parse_pem_certificates
from . import SecretBytes, ServerCertificate, SourceError
from .vault_auth import login
from .vault_config import VaultRef, VaultSourceConfig

T = TypeVar("T")


class MalformedAnswer(Exception):
    """Vault answered 200 with a body that is not the JSON document it should be."""


TRANSIENT: tuple[type[BaseException], ...] = (
    hvac_errors.RateLimitExceeded, hvac_errors.InternalServerError, hvac_errors.BadGateway,
    hvac_errors.VaultDown, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError, json.JSONDecodeError, MalformedAnswer,
)
PERMANENT: dict[type[BaseException], tuple[str, str]] = {
    hvac_errors.Forbidden: ("VaultPermissionDenied", "grant the mtlsc policy read access to "
                            "this path (docs/vault.md)"),
    hvac_errors.Unauthorized: ("VaultAuthFailed", "check the token or login credentials"),
    hvac_errors.InvalidPath: ("VaultSecretNotFound", "check the mount and path in the "
                              "CertificateSource"),
    hvac_errors.InvalidRequest: ("VaultInvalidRequest", "check the mount type and path"),
    hvac_errors.UnsupportedOperation: ("VaultInvalidRequest", "check the mount type and path"),
}
PinKey = tuple[str, str]  # (kind, logical name); kind is "caBundles" or "certificates"


class VaultSource:
    def __init__(self, config: VaultSourceConfig, root: Path, pins: Mapping[PinKey, Pin],
                 *, env: Mapping[str, str] | None = None, sleep: Callable[[float], None] =
                 time.sleep) -> None:
        self.name = config.name
        self.concurrency = config.concurrency
        self._config = config
        self._root = root
        self._pins = dict(pins)
        self._env = dict(os.environ if env is None else env)
        self._sleep = sleep
        self._client_lock = threading.Lock()
        self._client: Any = None
        self._cache: dict[tuple[object, ...], Any] = {}
        self._cache_locks: dict[tuple[object, ...], threading.Lock] = {}
        self._guard = threading.Lock()
        self.resolved: dict[PinKey, Pin] = {}

    # --- the CertificateSource interface --------------------------------------------------

    def ca_bundle(self, ref: str) -> bytes:
        where = self._ref("caBundles", ref)
        if where.engine == "pki":
            pem, issuer_id = self._pki(where, self._pinned("caBundles", ref, where))
            self._record("caBundles", ref, where, None, issuer_id, pem)
            return pem
        data, version = self._kv(where, self._pinned("caBundles", ref, where))
        pem = self._field(data, where.field, where, ref).encode("utf-8")
        self._record("caBundles", ref, where, version, None, pem)
        return pem

    def server_certificate(self, ref: str) -> ServerCertificate:
        where = self._ref("certificates", ref)
        data, version = self._kv(where, self._pinned("certificates", ref, where))
        chain = self._field(data, where.cert_field, where, ref).encode("utf-8")
        key = SecretBytes(self._field(data, where.key_field, where, ref).encode("utf-8"))
        self._record("certificates", ref, where, version, None, chain)
        return ServerCertificate(chain, key)

    def pins(self) -> dict[PinKey, Pin]:
        return dict(self.resolved)

    # --- configuration and pins ----------------------------------------------------------

    def _ref(self, kind: str, ref: str) -> VaultRef:
        table = self._config.ca_bundles if kind == "caBundles" else self._config.certificates
        where = table.get(ref)
        if where is None:
            raise SourceError("UnknownCertificateRef", f"certificate source {self.name!r} has "
                              f"no {kind} entry {ref!r}", f"add '{ref}' under spec.vault.{kind}"
                              f" of CertificateSource {self.name!r}", source_failure=False)
        return where

    def _pinned(self, kind: str, ref: str, where: VaultRef) -> Pin | None:
        pin = self._pins.get((kind, ref))
        if pin is None or (pin.engine, pin.mount, pin.path) != (where.engine, where.mount,
                                                               where.path):
            return None  # not locked yet, or the source config moved it: resolve afresh
        return pin

    def _record(self, kind: str, ref: str, where: VaultRef, version: int | None,
                issuer_id: str | None, pem: bytes) -> None:
        certs, _ = parse_pem_certificates(pem)
        fingerprints = tuple(fingerprint_sha256(c) for c in certs)
        not_after = min((c.not_valid_after_utc for c in certs), default=None)
        pin = Pin(where.engine, where.mount, where.path, version, issuer_id, fingerprints,
                  not_after.strftime("%Y-%m-%dT%H:%M:%SZ") if not_after else "")
        old = self._pinned(kind, ref, where)
        if old is not None and (old.version, old.issuer_id) == (version, issuer_id) and \
                old.fingerprints != fingerprints:
            raise SourceError("LockMismatch", f"{ref!r}: Vault serves different certificates "
                              f"at {where.describe()} than mtlsc.lock records", "if the change "
                              f"is intended, run `mtlsc lock update --ref {ref}`")
        with self._guard:
            self.resolved[(kind, ref)] = pin

    # --- reads -----------------------------------------------------------------------------

    def _kv(self, where: VaultRef, pin: Pin | None) -> tuple[Mapping[str, Any], int | None]:
        if where.engine == "kv1":
            response = self._once(("kv1", where.mount, where.path), lambda c: c.secrets.kv.v1.
                                  read_secret(path=where.path, mount_point=where.mount), where)
            return response["data"], None
        version = where.version or (pin.version if pin else None)
        response = self._once(("kv2", where.mount, where.path, version),
                              lambda c: self._read_kv2(c, where, version), where)
        data = response["data"]
        return data["data"] or {}, int(data["metadata"]["version"])

    def _read_kv2(self, client: Any, where: VaultRef, version: int | None) -> Any:
        try:
            return client.secrets.kv.v2.read_secret_version(
                path=where.path, version=version, mount_point=where.mount,
                raise_on_deleted_version=True)
        except hvac_errors.InvalidPath:
            raise self._deleted_or_missing(client, where, version) from None

    def _deleted_or_missing(self, client: Any, where: VaultRef,
                            version: int | None) -> SourceError:
        try:
            meta = client.secrets.kv.v2.read_secret_metadata(path=where.path,
                                                             mount_point=where.mount)
            versions = meta["data"]["versions"]
            key = str(version or meta["data"]["current_version"])
        except (hvac_errors.VaultError, KeyError, TypeError, ValueError,
                requests.exceptions.RequestException):
            versions, key = {}, ""
        state = versions.get(key)
        if state and state.get("destroyed"):
            return SourceError("VaultVersionDestroyed", f"version {key} of {where.describe()} "
                               "is destroyed", "pin a live version (`mtlsc lock update`) or "
                               "write the secret again")
        if state and state.get("deletion_time"):
            return SourceError("VaultVersionDeleted", f"version {key} of {where.describe()} "
                               "is deleted", "undelete it in Vault or move the lock forward "
                               "with `mtlsc lock update`")
        return SourceError("VaultSecretNotFound", f"{where.describe()}"
                           f"{f' version {version}' if version else ''} not found",
                           "check the mount and path in the CertificateSource")

    def _pki(self, where: VaultRef, pin: Pin | None) -> tuple[bytes, str]:
        issuer = pin.issuer_id if pin and pin.issuer_id else where.path
        response = self._once(("pki", where.mount, issuer),
                              lambda c: c.read(f"{where.mount}/issuer/{issuer}"), where)
        data = (response or {}).get("data") or {}
        if "issuer_id" not in data or "certificate" not in data:
            raise SourceError("VaultInvalidResponse", f"{where.describe()}: no issuer "
                              "certificate in Vault's answer", "is the mount a PKI engine?")
        chain = data.get("ca_chain")
        parts: list[str] = list(chain) if where.chain and chain else [data["certificate"]]
        pem = "".join(p.strip() + "\n" for p in parts).encode("utf-8")
        return pem, str(data["issuer_id"])

    @staticmethod
    def _field(data: Mapping[str, Any], field: str, where: VaultRef, ref: str) -> str:
        value = data.get(field)
        if not isinstance(value, str) or not value.strip():
            raise SourceError("VaultFieldMissing", f"{ref!r}: {where.describe()} has no field "
                              f"{field!r}", "set field/certField/keyField in the "
                              "CertificateSource to the secret's key names",
                              source_failure=False)
        return value

    def _once(self, key: tuple[object, ...], read: Callable[[Any], T], where: VaultRef) -> T:
        """Read each distinct secret once per run, even when asked concurrently."""
        with self._guard:
            lock = self._cache_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                self._cache[key] = self._retrying(lambda: _json(read(self.client())), where)
            value: T = self._cache[key]
            return value

    def _retrying(self, call: Callable[[], T], where: VaultRef) -> T:
        deadline = time.monotonic() + self._config.deadline_seconds
        attempt = 0
        while True:
            try:
                return call()
            except requests.exceptions.SSLError as exc:
                raise _tls_error(exc) from None
            except hvac_errors.InternalServerError as exc:
                if _unknown_issuer(exc):  # Vault says so with a 500: retrying cannot help
                    raise SourceError("VaultSecretNotFound", f"{where.describe()}: no such "
                                      "PKI issuer", "check the issuer id or name (or use "
                                      "'default')") from None
                attempt = self._backoff(attempt, deadline, exc, where)
            except tuple(PERMANENT) as exc:
                code, hint = next(v for k, v in PERMANENT.items() if isinstance(exc, k))
                raise SourceError(code, f"Vault refused {where.describe()}: "
                                  f"{_reason(exc)}", hint) from None
            except TRANSIENT as exc:
                attempt = self._backoff(attempt, deadline, exc, where)

    def _backoff(self, attempt: int, deadline: float, exc: BaseException,
                 where: VaultRef) -> int:
        """Sleep before the next try (exponential, with jitter), or give up at the deadline."""
        attempt += 1
        delay = min(0.1 * 2 ** attempt, 5.0) * random.uniform(0.5, 1.0)
        if time.monotonic() + delay > deadline:
            raise SourceError("VaultUnavailable", f"{where.describe()}: Vault kept failing for "
                              f"{self._config.deadline_seconds:g}s ({_reason(exc)})",
                              "check that Vault is reachable and unsealed; raise "
                              "deadlineSeconds for slow links") from None
        self._sleep(delay)
        return attempt

    # --- the client ------------------------------------------------------------------------

    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._retrying(self._connect, VaultRef("auth", "", ""))
            return self._client

    def _connect(self) -> Any:
        address = self._config.address or self._env.get("VAULT_ADDR")
        if not address:
            raise SourceError("VaultNotConfigured", f"no Vault address for source {self.name!r}",
                              "set spec.vault.address or VAULT_ADDR", source_failure=False)
        ca = self._config.ca_cert or self._env.get("VAULT_CACERT")
        verify: bool | str = str(self._root / ca) if ca else True
        namespace = self._config.namespace or self._env.get("VAULT_NAMESPACE") or None
        session = requests.Session()
        session.verify = verify  # hvac takes verification from a given session, not verify=
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(self.concurrency, 1))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        client = hvac.Client(url=address, verify=verify, namespace=namespace, timeout=15,
                             session=session)
        try:
            login(client, self._config.auth, self._root, self._env)
        except (hvac_errors.InvalidRequest, hvac_errors.Forbidden,
                hvac_errors.Unauthorized) as exc:
            raise SourceError("VaultAuthFailed", f"Vault login ({self._config.auth.method}) "
                              f"failed: {_reason(exc)}", "check the role and credentials "
                              "(docs/vault.md#authentication)") from None
        return client


def _unknown_issuer(exc: BaseException) -> bool:
    return any("unable to find PKI issuer" in str(e) for e in getattr(exc, "errors", None) or [])


def _json(answer: T) -> T:
    # hvac hands back the raw Response when a 200 body does not parse as JSON.
    if not isinstance(answer, dict):
        raise MalformedAnswer("Vault's answer was not a JSON document")
    return answer


def _reason(exc: BaseException) -> str:
    """The error's own words, without URLs' query strings or anything token-like."""
    errors = getattr(exc, "errors", None)
    text = "; ".join(str(e) for e in errors) if errors else type(exc).__name__
    return text[:300]


def _tls_error(exc: requests.exceptions.SSLError) -> SourceError:
    return SourceError("VaultTLSError", "TLS verification of the Vault server failed "
                       f"({type(exc).__name__})", "set spec.vault.caCert or VAULT_CACERT to "
                       "the CA that signed Vault's certificate; verification is never skipped")
