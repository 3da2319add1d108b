"""HashiCorp Vault (or OpenBao) as a certificate source (hvac): KV v2, KV v1 and PKI issuers.

Kind to real servers, one session per run:
- One login per run (token, AppRole, Kubernetes or JWT/OIDC). A refused login is final for the
  run: it is never retried, so mtlsc cannot trip a server's lockout of the role.
- One deadline for the whole run (`deadlineSeconds`), shared by every read: transient failures
  (connection errors, timeouts, 429, 500, 502, 503, malformed answers) are retried with
  exponential backoff and jitter until it passes, then every outstanding read fails with the same
  error (one root cause, one diagnostic). Permanent answers (403, 404, 400, TLS) fail at once.
- Every distinct secret is read once per run, whatever number of references it has.
- TLS verified by default (custom CA via caCert / VAULT_CACERT); VAULT_ADDR, VAULT_NAMESPACE and
  VAULT_TOKEN honoured. Messages are one line and never contain a token or a secret value.
- Reads honour the lockfile's pins (KV v2 version, PKI issuer id) and report what they resolved;
  PKI certificates are read at `issuer/<id>`, never through `default`.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..lock import Pin
from ..verify import fingerprint_sha256, parse_pem_certificates
from . import SecretBytes, ServerCertificate, SourceError
from .vault_auth import login
from .vault_client import gone, json_answer, new_client, read_kv2
from .vault_config import VaultRef, VaultSourceConfig
from .vault_errors import TRANSIENT, Access, final_error, login_error, reason

T = TypeVar("T")
PinKey = tuple[str, str]  # (kind, logical name); kind is "caBundles" or "certificates"
ISSUER_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


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
        self._failed: SourceError | None = None  # final for the run once set
        self._deadline: float | None = None
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
        return self._config.ref(kind, ref)

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

    def _access(self, capability: str, path: str) -> Access:
        return Access(capability, path, self._namespace())

    def _kv(self, where: VaultRef, pin: Pin | None) -> tuple[Mapping[str, Any], int | None]:
        if where.engine == "kv1":
            response = self._once(("kv1", where.mount, where.path), lambda c: c.secrets.kv.v1.
                                  read_secret(path=where.path, mount_point=where.mount),
                                  where.describe(), self._access("read",
                                                                 f"{where.mount}/{where.path}"))
            data = response.get("data")
            if not isinstance(data, dict):
                raise SourceError("VaultInvalidResponse", f"{where.describe()}: Vault's answer "
                                  "is not a KV secret", "is the mount a KV version 1 engine?")
            return data, None
        version = where.version or (pin.version if pin else None)
        what = f"{where.describe()}{f' version {version}' if version else ''}"
        response = self._once(("kv2", where.mount, where.path, version),
                              lambda c: read_kv2(c, where, version), what,
                              self._access("read", f"{where.mount}/data/{where.path}"))
        data = response.get("data") or {}
        meta = data.get("metadata") or {}
        if data.get("data") is None and meta:  # a deleted or destroyed version: its metadata
            raise gone(where, meta, version)
        if not isinstance(data.get("data"), dict) or not isinstance(meta.get("version"), int):
            raise SourceError("VaultInvalidResponse", f"{what}: Vault's answer is not a KV v2 "
                              "secret", "is the mount a KV version 2 engine?")
        return data["data"], int(meta["version"])

    def _pki(self, where: VaultRef, pin: Pin | None) -> tuple[bytes, str]:
        issuer = pin.issuer_id if pin and pin.issuer_id else self._issuer_id(where)
        response = self._once(("pki", where.mount, issuer),
                              lambda c: c.read(f"{where.mount}/issuer/{issuer}"),
                              f"pki {where.mount}/issuer/{issuer}",
                              self._access("read", f"{where.mount}/issuer/{issuer}"))
        data = (response or {}).get("data") or {}
        if "issuer_id" not in data or "certificate" not in data:
            raise SourceError("VaultInvalidResponse", f"{where.describe()}: no issuer "
                              "certificate in Vault's answer", "is the mount a PKI engine?")
        chain = data.get("ca_chain")
        parts: list[str] = list(chain) if where.chain and chain else [data["certificate"]]
        pem = "".join(p.strip() + "\n" for p in parts).encode("utf-8")
        return pem, str(data["issuer_id"])

    def _issuer_id(self, where: VaultRef) -> str:
        """The id behind an issuer reference: `default` through config/issuers, a name through
        the issuer list; an id as it is."""
        if ISSUER_ID.match(where.path):
            return where.path
        if where.path == "default":
            config = self._once(("pki-default", where.mount),
                                lambda c: c.read(f"{where.mount}/config/issuers"),
                                f"pki {where.mount}/config/issuers",
                                self._access("read", f"{where.mount}/config/issuers"))
            found = ((config or {}).get("data") or {}).get("default") or ""
        else:
            listed = self._once(("pki-list", where.mount),
                                lambda c: c.list(f"{where.mount}/issuers") or {"data": {}},
                                f"pki {where.mount}/issuers",
                                self._access("list", f"{where.mount}/issuers"))
            info = ((listed or {}).get("data") or {}).get("key_info") or {}
            found = next((i for i, v in sorted(info.items())
                          if (v or {}).get("issuer_name") == where.path), "")
        if not found:
            raise SourceError("VaultSecretNotFound", f"{where.describe()}: no such PKI issuer",
                              "check the issuer id or name (or use 'default')")
        return str(found)

    @staticmethod
    def _field(data: Mapping[str, Any], field: str, where: VaultRef, ref: str) -> str:
        value = data.get(field)
        if not isinstance(value, str) or not value.strip():
            names = ", ".join(sorted(str(k) for k in data)) or "none"
            raise SourceError("VaultFieldMissing", f"{ref!r}: {where.describe()} has no field "
                              f"{field!r} (its fields: {names})", "set field/certField/keyField"
                              " in the CertificateSource to one of the secret's field names",
                              source_failure=False)
        return value

    def _once(self, key: tuple[object, ...], read: Callable[[Any], Any], what: str,
              access: Access) -> Any:
        """Read each distinct secret once per run, even when asked concurrently."""
        with self._guard:
            lock = self._cache_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                try:
                    self._cache[key] = self._retrying(lambda: json_answer(read(self.client())),
                                                      what, access)
                except SourceError as exc:  # a failed read is not tried again this run
                    self._cache[key] = exc
            found = self._cache[key]
            if isinstance(found, SourceError):
                raise found
            return found

    def _retrying(self, call: Callable[[], T], what: str, access: Access) -> T:
        attempt = 0
        while True:
            self._raise_if_failed()
            try:
                return call()
            except SourceError:
                raise
            except Exception as exc:
                final = final_error(exc, what, access)
                if final is not None:
                    raise final from None
                if not isinstance(exc, TRANSIENT):
                    raise
                attempt = self._backoff(attempt, exc)

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise self._failed

    def _run_deadline(self) -> float:
        with self._guard:
            if self._deadline is None:
                self._deadline = time.monotonic() + self._config.deadline_seconds
            return self._deadline

    def _backoff(self, attempt: int, exc: BaseException) -> int:
        """Sleep before the next try (exponential, with jitter), or give up for the whole run
        when the run's deadline would pass."""
        attempt += 1
        delay = min(0.1 * 2 ** attempt, 5.0) * random.uniform(0.5, 1.0)
        if time.monotonic() + delay > self._run_deadline():
            with self._guard:
                if self._failed is None:
                    self._failed = SourceError(
                        "VaultUnavailable", f"Vault at {self._address()} kept failing for "
                        f"{self._config.deadline_seconds:g}s, the run's deadline "
                        f"({reason(exc)})", "check that Vault is reachable and unsealed; raise "
                        "deadlineSeconds for slow links")
            raise self._failed
        self._sleep(delay)
        return attempt

    # --- the client: one login per run -------------------------------------------------------

    def client(self) -> Any:
        with self._client_lock:
            self._raise_if_failed()
            if self._client is None:
                self._client = self._login()
            return self._client

    def _login(self) -> Any:
        attempt = 0
        while True:
            client = self._connect()
            try:
                login(client, self._config.auth, self._root, self._env)
                return client
            except SourceError as exc:
                self._failed = exc
                raise
            except Exception as exc:
                client.adapter.close()
                final = login_error(exc, self._config.auth.method)
                if final is not None:
                    self._failed = final  # a refused login is final: no retry, no lockout
                    raise final from None
                if not isinstance(exc, TRANSIENT):
                    raise
                attempt = self._backoff(attempt, exc)

    def _address(self) -> str:
        return (self._config.address or self._env.get("VAULT_ADDR") or "").rstrip("/")

    def _namespace(self) -> str | None:
        return self._config.namespace or self._env.get("VAULT_NAMESPACE") or None

    def _connect(self) -> Any:
        address = self._address()
        if not address:
            self._failed = SourceError("VaultNotConfigured", f"no Vault address for source "
                                       f"{self.name!r}", "set spec.vault.address or VAULT_ADDR",
                                       source_failure=False)
            raise self._failed
        ca = self._config.ca_cert or self._env.get("VAULT_CACERT")
        return new_client(address, str(self._root / ca) if ca else True, self._namespace(),
                          self.concurrency, self._config.deadline_seconds)
