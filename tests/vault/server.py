"""FakeVault: a loopback HTTP(S) server speaking the Vault HTTP API, for tests.

No Vault or OpenBao binary can be installed in the test environment, so the suite drives an
unmodified hvac over real HTTP(S) against this server. It implements, from the public Vault API
documentation, the subset mtlsc uses, with Vault's status codes, JSON envelopes and error bodies:

- ``sys/health`` and ``sys/seal-status`` (unauthenticated);
- KV v2 (``data``, ``metadata``, ``delete``, ``undelete``, ``destroy``, ``config``) and KV v1;
- PKI issuer reads (``ca/pem``, ``ca``, ``ca_chain``, ``cert/ca``, ``cert/ca_chain``,
  ``issuers``, ``issuer/:ref`` and ``issuer/:ref/{json,pem,der}``, ``config/issuers``);
- the token store (``lookup-self``, ``renew-self``, ``revoke-self``, ``lookup``) and AppRole,
  Kubernetes and JWT logins;
- namespaces, via ``X-Vault-Namespace`` or a namespace path prefix (longest existing prefix);
- fault injection (latency, seal, every-n-th failure, dropped connections, malformed JSON,
  per-path failures) and per-path request counters.

Tokens may carry allowed path prefixes (``paths``) to emulate ACL policies; ``None`` means
unrestricted (a root token). Paths are checked relative to the token's own namespace, as Vault
does, so a root-namespace token restricted to ``secret/`` cannot reach ``team-a/secret/...``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import socket
import socketserver
import ssl
import string
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

__all__ = ["STANDBY_ERROR", "VAULT_VERSION", "FakeVault", "pem_of"]

VAULT_VERSION = "1.15.6"
#: What a standby node answers when it cannot reach the active node (use with ``fail_every``).
STANDBY_ERROR = "local node not active but active cluster node not found"

Json = dict[str, Any]
KV1_LEASE_SECONDS = 2_764_800  # Vault's default 768h lease on KV v1 reads
DEFAULT_MAX_VERSIONS = 10
ISSUER_USAGE = "read-only,issuing-certificates,crl-signing,ocsp-signing"
CLUSTER_ID = "5f2e3c1a-7c7e-4b1d-9f5e-2d6b8a4e0c11"
_ALPHABET = string.ascii_letters + string.digits
_DEFAULT_MESSAGES = {
    400: "invalid request",
    403: "permission denied",
    500: "internal error",
    502: "bad gateway",
    503: "Vault is sealed",
}


# --------------------------------------------------------------------------------------------
# Small helpers: replies, errors and time


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str | None = None


#: Returned by the fault layer to close the connection without answering.
_DROP = _Reply(0)


def _json_reply(status: int, payload: object) -> _Reply:
    return _Reply(status, json.dumps(payload).encode() + b"\n", "application/json")


def _error_reply(status: int, messages: Iterable[str]) -> _Reply:
    return _json_reply(status, {"errors": list(messages)})


def _multierror(message: str) -> str:
    """Vault wraps handler errors in a go-multierror, e.g. ACL denials and unknown issuers."""
    return f"1 error occurred:\n\t* {message}\n\n"


def _default_messages(status: int, path: str) -> list[str]:
    if status == 404:
        return []
    if status == 429:
        return [f'request path "{path}": rate limit quota exceeded']
    return [_DEFAULT_MESSAGES.get(status, HTTPStatus(status).phrase.lower())]


class _HttpError(Exception):
    def __init__(self, status: int, *messages: str) -> None:
        super().__init__(status, messages)
        self.status = status
        self.messages = list(messages)

    def reply(self) -> _Reply:
        return _error_reply(self.status, self.messages)


def _not_found() -> _HttpError:
    return _HttpError(404)


def _unsupported_path() -> _HttpError:
    return _HttpError(404, _multierror("unsupported path"))


def _unsupported_operation() -> _HttpError:
    return _HttpError(405, _multierror("unsupported operation"))


def _permission_denied(*, policy: bool) -> _HttpError:
    """An ACL denial is multierror-wrapped; a missing or bad token is not."""
    return _HttpError(403, _multierror("permission denied") if policy else "permission denied")


def _rfc3339(moment: float) -> str:
    text = datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text.rstrip("0").rstrip(".") + "Z"


def _split_first(path: str) -> tuple[str, str]:
    head, _, rest = path.partition("/")
    return head, rest.strip("/")


def _list_children(keys: Iterable[str], prefix: str) -> list[str]:
    """Vault's LIST: the direct children of a folder, folders suffixed with ``/``."""
    folder = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    children = set()
    for key in keys:
        if key.startswith(folder) and key != folder:
            head, sep, _ = key[len(folder):].partition("/")
            children.add(head + ("/" if sep else ""))
    return sorted(children)


# --------------------------------------------------------------------------------------------
# Requests


@dataclass(frozen=True)
class _Request:
    method: str  # the HTTP verb as sent
    operation: str  # GET, LIST (also GET ?list=true), POST (also PUT), DELETE, PATCH, HEAD
    raw_path: str  # unquoted, without /v1/ (or the whole path when not under /v1/)
    versioned: bool  # under /v1/
    query: dict[str, str]
    token: str | None
    namespace: str
    body: bytes

    @classmethod
    def parse(cls, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Request:
        """``headers`` are keyed by lower-case name."""
        split = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        path = unquote(split.path)
        versioned = path.startswith("/v1/")
        raw_path = path[len("/v1/"):] if versioned else path
        return cls(method=method, operation=_operation(method, query), raw_path=raw_path,
                   versioned=versioned, query=query, token=_token_header(headers),
                   namespace=(headers.get("x-vault-namespace") or "").strip("/"), body=body)

    @property
    def path(self) -> str:
        return self.raw_path.strip("/")

    def json(self) -> Json:
        if not self.body.strip():
            return {}
        try:
            parsed = json.loads(self.body)
        except ValueError as exc:
            raise _HttpError(400, f"failed to parse JSON input: {exc}") from exc
        if not isinstance(parsed, dict):
            raise _HttpError(400, "failed to parse JSON input: expected a JSON object")
        return parsed


def _operation(method: str, query: Mapping[str, str]) -> str:
    if method == "GET" and query.get("list", "").lower() in ("true", "1", "t"):
        return "LIST"
    return "POST" if method == "PUT" else method


def _token_header(headers: Mapping[str, str]) -> str | None:
    token = headers.get("x-vault-token")
    if token:
        return token
    authorization = headers.get("authorization") or ""
    return authorization[len("Bearer "):] if authorization.startswith("Bearer ") else None


# --------------------------------------------------------------------------------------------
# Tokens, namespaces and the per-call context


@dataclass
class _Token:
    id: str
    accessor: str
    namespace: str
    paths: tuple[str, ...] | None
    policies: list[str]
    ttl: float | None
    created: float
    display_name: str
    path: str
    meta: dict[str, str] | None = None
    expires: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.expires = None if self.ttl is None else self.created + self.ttl

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def allows(self, path: str) -> bool:
        if self.paths is None:
            return True
        return any(path.startswith(prefix.rstrip("*")) for prefix in self.paths)

    def remaining(self, now: float) -> int:
        return 0 if self.expires is None else max(0, round(self.expires - now))

    def auth_block(self, now: float) -> Json:
        return {
            "client_token": self.id, "accessor": self.accessor, "policies": self.policies,
            "token_policies": self.policies, "metadata": self.meta,
            "lease_duration": self.remaining(now), "renewable": self.ttl is not None,
            "entity_id": "", "token_type": "service", "orphan": True,
            "mfa_requirement": None, "num_uses": 0,
        }

    def lookup_data(self, now: float) -> Json:
        return {
            "accessor": self.accessor, "creation_time": int(self.created),
            "creation_ttl": int(self.ttl or 0), "display_name": self.display_name,
            "entity_id": "",
            "expire_time": None if self.expires is None else _rfc3339(self.expires),
            "explicit_max_ttl": 0, "id": self.id, "issue_time": _rfc3339(self.created),
            "meta": self.meta, "num_uses": 0, "orphan": True, "path": self.path,
            "policies": self.policies, "renewable": self.ttl is not None,
            "ttl": self.remaining(now), "type": "service",
        }


class _Services:
    """Clock, identifiers and envelopes shared by the engines."""

    def __init__(self, clock: Callable[[], float], seed: int | None) -> None:
        self.clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def uuid(self) -> str:
        with self._lock:
            return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def random_id(self, length: int = 24) -> str:
        with self._lock:
            return "".join(self._rng.choice(_ALPHABET) for _ in range(length))

    def new_token(self, namespace: str, *, token_id: str | None = None,
                  paths: Iterable[str] | None = None, policies: Iterable[str] | None = None,
                  ttl: float | None = None, display_name: str = "token",
                  path: str = "auth/token/create", meta: dict[str, str] | None = None) -> _Token:
        allowed = None if paths is None else tuple(p.lstrip("/") for p in paths)
        default_policies = ["root"] if allowed is None else ["default"]
        return _Token(id=token_id or f"hvs.{self.random_id()}", accessor=self.random_id(),
                      namespace=namespace, paths=allowed,
                      policies=list(policies) if policies is not None else default_policies,
                      ttl=ttl, created=self.clock(), display_name=display_name, path=path,
                      meta=meta)

    def envelope(self, *, data: object = None, auth: Json | None = None,
                 lease_duration: int = 0, mount_type: str = "") -> Json:
        return {"request_id": self.uuid(), "lease_id": "", "renewable": False,
                "lease_duration": lease_duration, "data": data, "wrap_info": None,
                "warnings": None, "auth": auth, "mount_type": mount_type}


@dataclass
class _Call:
    request: _Request
    namespace: _Namespace
    path: str  # relative to the namespace
    subpath: str  # relative to the mount
    services: _Services

    @property
    def operation(self) -> str:
        return self.request.operation

    def now(self) -> float:
        return self.services.clock()

    def reply(self, data: object = None, *, status: int = 200, mount_type: str = "",
              lease_duration: int = 0, auth: Json | None = None) -> _Reply:
        envelope = self.services.envelope(data=data, auth=auth, mount_type=mount_type,
                                          lease_duration=lease_duration)
        return _json_reply(status, envelope)


# --------------------------------------------------------------------------------------------
# Engines


class _Engine:
    kind: ClassVar[str] = ""
    mount_type: ClassVar[str] = ""

    def unauthenticated(self, operation: str, subpath: str) -> bool:
        return False

    def handle(self, call: _Call) -> _Reply:
        raise NotImplementedError


@dataclass
class _Version:
    data: Json
    created: float
    deleted: float | None = None
    destroyed: bool = False

    def metadata(self) -> Json:
        return {"created_time": _rfc3339(self.created),
                "deletion_time": "" if self.deleted is None else _rfc3339(self.deleted),
                "destroyed": self.destroyed}


@dataclass
class _KV2Secret:
    created: float
    updated: float
    versions: dict[int, _Version] = field(default_factory=dict)
    current: int = 0
    oldest: int = 0
    max_versions: int = 0
    cas_required: bool = False
    custom_metadata: dict[str, str] | None = None

    def version_metadata(self, version: int) -> Json:
        return {**self.versions[version].metadata(), "custom_metadata": self.custom_metadata,
                "version": version}

    def add(self, data: Json, now: float, keep: int) -> int:
        self.current += 1
        self.versions[self.current] = _Version(data=data, created=now)
        self.updated = now
        while len(self.versions) > keep:
            del self.versions[min(self.versions)]
            self.oldest = min(self.versions)
        return self.current

    def metadata(self) -> Json:
        return {
            "cas_required": self.cas_required, "created_time": _rfc3339(self.created),
            "current_version": self.current, "custom_metadata": self.custom_metadata,
            "delete_version_after": "0s", "max_versions": self.max_versions,
            "oldest_version": self.oldest, "updated_time": _rfc3339(self.updated),
            "versions": {str(n): v.metadata() for n, v in sorted(self.versions.items())},
        }


def _versions_param(body: Json) -> list[int]:
    raw = body.get("versions")
    if isinstance(raw, str):
        raw = [part for part in raw.split(",") if part.strip()]
    if not raw:
        raise _HttpError(400, "no version number provided")
    try:
        return [int(item) for item in raw]
    except (TypeError, ValueError) as exc:
        raise _HttpError(400, f"error converting input for field \"versions\": {exc}") from exc


class _KV2Engine(_Engine):
    kind = "kv-v2"
    mount_type = "kv"

    def __init__(self, max_versions: int = 0) -> None:
        self.secrets: dict[str, _KV2Secret] = {}
        self.max_versions = max_versions

    def handle(self, call: _Call) -> _Reply:
        head, key = _split_first(call.subpath)
        routes: dict[str, dict[str, Callable[[_Call, str], _Reply]]] = {
            "data": {"GET": self._read, "POST": self._write, "DELETE": self._delete_latest},
            "metadata": {"GET": self._read_metadata, "LIST": self._list,
                         "POST": self._write_metadata, "DELETE": self._delete_metadata},
            "delete": {"POST": self._delete},
            "undelete": {"POST": self._undelete},
            "destroy": {"POST": self._destroy},
            "config": {"GET": self._config},
        }
        if head not in routes or (not key and head not in ("metadata", "config")):
            raise _unsupported_path()
        handler = routes[head].get(call.operation)
        if handler is None:
            raise _unsupported_operation()
        return handler(call, key)

    # Admin-side helpers (also used by the HTTP handlers)

    def keep(self, secret: _KV2Secret) -> int:
        return secret.max_versions or self.max_versions or DEFAULT_MAX_VERSIONS

    def put(self, key: str, data: Json, now: float, cas: int | None = None) -> _KV2Secret:
        secret = self.secrets.get(key)
        if secret is None:
            secret = self.secrets[key] = _KV2Secret(created=now, updated=now)
        if cas is not None and cas != secret.current:
            raise _HttpError(400, "check-and-set parameter did not match the current version")
        if cas is None and secret.cas_required:
            raise _HttpError(400, "check-and-set parameter required for this call")
        secret.add(dict(data), now, self.keep(secret))
        return secret

    def mark(self, key: str, versions: Iterable[int], now: float, action: str) -> None:
        secret = self.secrets.get(key)
        for number in versions:
            version = None if secret is None else secret.versions.get(number)
            if version is None or version.destroyed:
                continue
            if action == "delete" and version.deleted is None:
                version.deleted = now
            elif action == "undelete":
                version.deleted = None
            elif action == "destroy":
                version.destroyed, version.data = True, {}

    # HTTP handlers

    def _read(self, call: _Call, key: str) -> _Reply:
        secret = self.secrets.get(key)
        if secret is None:
            raise _not_found()
        try:
            number = int(call.request.query.get("version") or 0) or secret.current
        except ValueError as exc:
            raise _HttpError(400, f'error converting input for field "version": {exc}') from exc
        version = secret.versions.get(number)
        if version is None:
            raise _not_found()
        metadata = secret.version_metadata(number)
        if version.deleted is not None or version.destroyed:
            return call.reply({"data": None, "metadata": metadata}, status=404,
                              mount_type=self.mount_type)
        return call.reply({"data": copy.deepcopy(version.data), "metadata": metadata},
                          mount_type=self.mount_type)

    def _write(self, call: _Call, key: str) -> _Reply:
        body = call.request.json()
        data = body.get("data")
        if not isinstance(data, dict):
            raise _HttpError(400, "no data provided")
        options = body.get("options") or {}
        cas = options.get("cas") if isinstance(options, dict) else None
        secret = self.put(key, data, call.now(), None if cas is None else int(cas))
        return call.reply(secret.version_metadata(secret.current), mount_type=self.mount_type)

    def _delete_latest(self, call: _Call, key: str) -> _Reply:
        secret = self.secrets.get(key)
        if secret is not None and secret.current:
            self.mark(key, [secret.current], call.now(), "delete")
        return _Reply(204)

    def _delete(self, call: _Call, key: str) -> _Reply:
        self.mark(key, _versions_param(call.request.json()), call.now(), "delete")
        return _Reply(204)

    def _undelete(self, call: _Call, key: str) -> _Reply:
        self.mark(key, _versions_param(call.request.json()), call.now(), "undelete")
        return _Reply(204)

    def _destroy(self, call: _Call, key: str) -> _Reply:
        self.mark(key, _versions_param(call.request.json()), call.now(), "destroy")
        return _Reply(204)

    def _read_metadata(self, call: _Call, key: str) -> _Reply:
        secret = self.secrets.get(key)
        if not key or secret is None:
            raise _not_found()
        return call.reply(secret.metadata(), mount_type=self.mount_type)

    def _list(self, call: _Call, key: str) -> _Reply:
        keys = _list_children(self.secrets, key)
        if not keys:
            raise _not_found()
        return call.reply({"keys": keys}, mount_type=self.mount_type)

    def _write_metadata(self, call: _Call, key: str) -> _Reply:
        if not key:
            raise _unsupported_path()
        body, now = call.request.json(), call.now()
        secret = self.secrets.setdefault(key, _KV2Secret(created=now, updated=now))
        if "custom_metadata" in body:
            secret.custom_metadata = dict(body["custom_metadata"] or {}) or None
        secret.max_versions = int(body.get("max_versions", secret.max_versions))
        secret.cas_required = bool(body.get("cas_required", secret.cas_required))
        return _Reply(204)

    def _delete_metadata(self, call: _Call, key: str) -> _Reply:
        self.secrets.pop(key, None)
        return _Reply(204)

    def _config(self, call: _Call, key: str) -> _Reply:
        data = {"cas_required": False, "delete_version_after": "0s",
                "max_versions": self.max_versions}
        return call.reply(data, mount_type=self.mount_type)


class _KV1Engine(_Engine):
    kind = "kv"
    mount_type = "kv"

    def __init__(self) -> None:
        self.secrets: dict[str, Json] = {}

    def handle(self, call: _Call) -> _Reply:
        key = call.subpath
        if call.operation == "LIST":
            keys = _list_children(self.secrets, key)
            if not keys:
                raise _not_found()
            return call.reply({"keys": keys}, mount_type=self.mount_type)
        if not key:
            raise _unsupported_path()
        if call.operation == "GET":
            if key not in self.secrets:
                raise _not_found()
            return call.reply(copy.deepcopy(self.secrets[key]),
                              lease_duration=KV1_LEASE_SECONDS, mount_type=self.mount_type)
        if call.operation == "POST":
            self.secrets[key] = call.request.json()
            return _Reply(204)
        if call.operation == "DELETE":
            self.secrets.pop(key, None)
            return _Reply(204)
        raise _unsupported_operation()


@dataclass
class _Issuer:
    id: str
    name: str
    certificate: x509.Certificate

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def serial(self) -> str:
        raw = f"{self.certificate.serial_number:x}"
        raw = raw if len(raw) % 2 == 0 else f"0{raw}"
        return ":".join(raw[i:i + 2] for i in range(0, len(raw), 2))


def _directly_issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class _PkiEngine(_Engine):
    kind = "pki"
    mount_type = "pki"
    _RAW_READS: ClassVar[frozenset[str]] = frozenset({"ca", "ca/pem", "ca_chain"})
    _JSON_READS: ClassVar[frozenset[str]] = frozenset({"cert/ca", "cert/ca_chain"})

    def __init__(self) -> None:
        self.issuers: dict[str, _Issuer] = {}
        self.default_id = ""

    # Admin side

    def add(self, issuer: _Issuer, *, default: bool) -> None:
        if issuer.name and any(i.name == issuer.name for i in self.issuers.values()):
            raise ValueError(f"issuer name {issuer.name!r} is already in use")
        self.issuers[issuer.id] = issuer
        if default or not self.default_id:
            self.default_id = issuer.id

    def resolve(self, ref: str) -> _Issuer:
        if ref == "default":
            if not self.default_id:
                raise _HttpError(500, _multierror("no default issuer currently configured"))
            return self.issuers[self.default_id]
        for issuer in self.issuers.values():
            if ref in (issuer.id, issuer.name):
                return issuer
        raise _HttpError(500, _multierror(f"unable to find PKI issuer for reference: {ref}"))

    def chain(self, issuer: _Issuer) -> list[_Issuer]:
        """The issuer followed by its parents known to this mount, as Vault builds it."""
        chain, current = [issuer], issuer
        while current.certificate.issuer != current.certificate.subject:
            parent = next((candidate for candidate in self.issuers.values()
                           if candidate not in chain
                           and candidate.certificate.subject == current.certificate.issuer
                           and _directly_issued_by(current.certificate, candidate.certificate)),
                          None)
            if parent is None:
                break
            chain.append(parent)
            current = parent
        return chain

    # HTTP side

    def unauthenticated(self, operation: str, subpath: str) -> bool:
        if operation == "LIST":
            return subpath == "issuers"
        if operation != "GET":
            return False
        parts = subpath.split("/")
        raw_issuer = len(parts) == 3 and parts[0] == "issuer" and parts[2] in ("json", "pem", "der")
        return subpath in self._RAW_READS | self._JSON_READS or raw_issuer

    def handle(self, call: _Call) -> _Reply:
        subpath, operation = call.subpath, call.operation
        if subpath == "issuers":
            if operation != "LIST":
                raise _unsupported_operation()
            return self._list(call)
        if operation != "GET":
            raise _unsupported_operation()
        if subpath in self._RAW_READS:
            return self._raw_default(subpath)
        if subpath in self._JSON_READS:
            return self._json_default(call, subpath)
        if subpath == "config/issuers":
            data = {"default": self.default_id, "default_follows_latest_issuer": False}
            return call.reply(data, mount_type=self.mount_type)
        head, ref = _split_first(subpath)
        if head == "issuer" and ref:
            return self._issuer(call, ref)
        raise _unsupported_path()

    def _list(self, call: _Call) -> _Reply:
        if not self.issuers:
            raise _not_found()
        info = {issuer.id: {"issuer_name": issuer.name, "is_default": issuer.id == self.default_id,
                            "serial_number": issuer.serial, "key_id": ""}
                for issuer in self.issuers.values()}
        return call.reply({"keys": list(info), "key_info": info}, mount_type=self.mount_type)

    def _default_chain(self) -> list[_Issuer]:
        return self.chain(self.issuers[self.default_id]) if self.default_id else []

    def _raw_default(self, subpath: str) -> _Reply:
        chain = self._default_chain()
        if not chain:
            return _Reply(204)
        if subpath == "ca":
            der = chain[0].certificate.public_bytes(serialization.Encoding.DER)
            return _Reply(200, der, "application/pkix-cert")
        if subpath == "ca/pem":
            return _Reply(200, chain[0].pem.strip().encode(), "application/pem-certificate-chain")
        text = "\n".join(issuer.pem.strip() for issuer in chain)
        return _Reply(200, text.encode(), "application/pkix-cert")

    def _json_default(self, call: _Call, subpath: str) -> _Reply:
        chain = self._default_chain()
        if not chain:
            raise _HttpError(400, "no default issuer currently configured")
        data: Json = {"revocation_time": 0, "revocation_time_rfc3339": ""}
        if subpath == "cert/ca":
            data["certificate"] = chain[0].pem.strip()
        else:
            text = "\n".join(issuer.pem.strip() for issuer in chain)
            data.update(certificate=text, ca_chain=text)
        return call.reply(data, mount_type=self.mount_type)

    def _issuer(self, call: _Call, ref: str) -> _Reply:
        name, _, form = ref.partition("/")
        issuer = self.resolve(name)
        if form == "pem":
            return _Reply(200, issuer.pem.encode(), "application/pem-certificate-chain")
        if form == "der":
            der = issuer.certificate.public_bytes(serialization.Encoding.DER)
            return _Reply(200, der, "application/pkix-cert")
        chain = [member.pem for member in self.chain(issuer)]
        data: Json = {"certificate": issuer.pem, "ca_chain": chain, "issuer_id": issuer.id,
                      "issuer_name": issuer.name}
        if form == "json":
            return call.reply(data, mount_type=self.mount_type)
        if form:
            raise _unsupported_path()
        data.update({
            "key_id": "", "manual_chain": None, "leaf_not_after_behavior": "err",
            "usage": ISSUER_USAGE, "revocation_signature_algorithm": "", "revoked": False,
            "issuing_certificates": [], "crl_distribution_points": [],
            "delta_crl_distribution_points": [], "ocsp_servers": [],
            "enable_aia_url_templating": False,
        })
        return call.reply(data, mount_type=self.mount_type)


@dataclass(frozen=True)
class _Role:
    name: str
    credential: str  # the secret ID or the JWT the login must present
    paths: tuple[str, ...]
    policies: list[str]
    ttl: float


class _LoginEngine(_Engine):
    """An auth method whose only endpoint is ``login``; subclasses check the credentials."""

    def __init__(self, mount: str) -> None:
        self.mount = mount
        self.roles: dict[str, _Role] = {}

    def unauthenticated(self, operation: str, subpath: str) -> bool:
        return operation == "POST" and subpath == "login"

    def handle(self, call: _Call) -> _Reply:
        if call.subpath != "login":
            raise _unsupported_path()
        if call.operation != "POST":
            raise _unsupported_operation()
        role, meta = self.authenticate(call.request.json())
        token = call.services.new_token(
            call.namespace.path, paths=role.paths, policies=role.policies, ttl=role.ttl,
            display_name=f"{self.mount.removeprefix('auth/')}-{role.name}",
            path=f"{self.mount}/login", meta=meta)
        call.namespace.tokens[token.id] = token
        return call.reply(auth=token.auth_block(call.now()), mount_type=self.mount_type)

    def authenticate(self, body: Json) -> tuple[_Role, dict[str, str]]:
        raise NotImplementedError


def _text(body: Json, name: str) -> str:
    value = body.get(name)
    return value if isinstance(value, str) else ""


class _AppRoleEngine(_LoginEngine):
    kind = mount_type = "approle"

    def authenticate(self, body: Json) -> tuple[_Role, dict[str, str]]:
        role_id, secret_id = _text(body, "role_id"), _text(body, "secret_id")
        if not role_id:
            raise _HttpError(400, "missing role_id")
        role = self.roles.get(role_id)
        if role is None or role.credential != secret_id:
            raise _HttpError(400, "invalid role or secret ID")
        return role, {"role_name": role.name}


class _KubernetesEngine(_LoginEngine):
    kind = mount_type = "kubernetes"

    def authenticate(self, body: Json) -> tuple[_Role, dict[str, str]]:
        name, jwt = _text(body, "role"), _text(body, "jwt")
        if not name:
            raise _HttpError(400, "missing role")
        if not jwt:
            raise _HttpError(400, "missing jwt")
        role = self.roles.get(name)
        if role is None:
            raise _HttpError(400, f'invalid role name "{name}"')
        if role.credential != jwt:
            raise _permission_denied(policy=False)
        return role, {"role": role.name}


class _JwtEngine(_LoginEngine):
    kind = mount_type = "jwt"

    def authenticate(self, body: Json) -> tuple[_Role, dict[str, str]]:
        name, jwt = _text(body, "role"), _text(body, "jwt")
        if not name:
            raise _HttpError(400, "missing role")
        role = self.roles.get(name)
        if role is None:
            raise _HttpError(400, f'role "{name}" could not be found')
        if not jwt:
            raise _HttpError(400, "missing token")
        if role.credential != jwt:
            raise _HttpError(400, "error validating token: error verifying token signature: "
                                  "no known key successfully validated the token signature")
        return role, {"role": role.name}


_EngineT = TypeVar("_EngineT", bound=_Engine)


@dataclass
class _Namespace:
    path: str  # "" for the root namespace
    mounts: dict[str, _Engine] = field(default_factory=dict)
    tokens: dict[str, _Token] = field(default_factory=dict)

    def find_mount(self, path: str) -> tuple[str, _Engine | None]:
        best = ""
        for mount in self.mounts:
            if (path == mount or path.startswith(f"{mount}/")) and len(mount) > len(best):
                best = mount
        return (best, self.mounts[best]) if best else ("", None)


def _ancestors(namespace: str) -> list[str]:
    """``a/b`` -> ``["a/b", "a", ""]``."""
    parts = namespace.split("/") if namespace else []
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _relative(namespace: str, outer: str, path: str) -> str:
    inner = namespace[len(outer):].strip("/")
    return f"{inner}/{path}" if inner else path


# --------------------------------------------------------------------------------------------
# The API: routing, authentication and system endpoints


class _Api:
    def __init__(self, services: _Services) -> None:
        self.services = services
        self.namespaces: dict[str, _Namespace] = {"": _Namespace("")}
        self.sealed = False
        self.standby = False

    def resolve(self, header: str, path: str) -> tuple[_Namespace, str]:
        """The longest existing namespace prefix of ``header/path``, and the rest."""
        parts = [part for part in f"{header}/{path}".split("/") if part]
        for cut in range(len(parts) - 1, 0, -1):
            namespace = self.namespaces.get("/".join(parts[:cut]))
            if namespace is not None:
                return namespace, "/".join(parts[cut:])
        return self.namespaces[""], "/".join(parts)

    def handle(self, request: _Request) -> _Reply:
        if not request.versioned:
            return _Reply(404, b"404 page not found\n", "text/plain; charset=utf-8")
        namespace, path = self.resolve(request.namespace, request.path)
        if path == "sys/health":
            return self._health(request)
        if path == "sys/seal-status":
            return _json_reply(200, self._seal_status())
        if self.sealed:
            return _error_reply(503, ["Vault is sealed"])
        try:
            return self._route(request, namespace, path)
        except _HttpError as error:
            return error.reply()

    def _route(self, request: _Request, namespace: _Namespace, path: str) -> _Reply:
        mount, engine = namespace.find_mount(path)
        call = _Call(request, namespace, path, path[len(mount):].strip("/"), self.services)
        if engine is not None and engine.unauthenticated(request.operation, call.subpath):
            return engine.handle(call)
        token, relative = self._authenticate(request, namespace, path)
        if path == "auth/token" or path.startswith("auth/token/"):
            return self._token_store(call, token, relative)
        if not token.allows(relative):
            raise _permission_denied(policy=True)
        if engine is None:
            raise _HttpError(404, f'no handler for route "{path}". route entry not found.')
        return engine.handle(call)

    def _authenticate(self, request: _Request, namespace: _Namespace,
                      path: str) -> tuple[_Token, str]:
        """The caller's token (from this namespace or a parent) and the path it sees."""
        now = self.services.clock()
        for outer in _ancestors(namespace.path):
            token = self.namespaces[outer].tokens.get(request.token or "")
            if token is not None and not token.expired(now):
                return token, _relative(namespace.path, outer, path)
        raise _permission_denied(policy=False)

    def _token_store(self, call: _Call, token: _Token, relative: str) -> _Reply:
        endpoint, operation, now = call.path.removeprefix("auth/token/"), call.operation, call.now()
        if endpoint == "lookup-self" and operation in ("GET", "POST"):
            return call.reply(token.lookup_data(now), mount_type="token")
        if endpoint == "renew-self" and operation == "POST":
            token.created, token.expires = now, None if token.ttl is None else now + token.ttl
            return call.reply(auth=token.auth_block(now), mount_type="token")
        if endpoint == "revoke-self" and operation == "POST":
            self.namespaces[token.namespace].tokens.pop(token.id, None)
            return _Reply(204)
        if not token.allows(relative):
            raise _permission_denied(policy=True)
        if endpoint == "lookup" and operation in ("GET", "POST"):
            return self._lookup(call)
        raise _unsupported_path()

    def _lookup(self, call: _Call) -> _Reply:
        wanted, now = _text(call.request.json(), "token"), call.now()
        for outer in _ancestors(call.namespace.path):
            token = self.namespaces[outer].tokens.get(wanted)
            if token is not None and not token.expired(now):
                return call.reply(token.lookup_data(now), mount_type="token")
        raise _HttpError(403, "bad token")

    def _health(self, request: _Request) -> _Reply:
        query = request.query
        if self.sealed:
            status = int(query.get("sealedcode", 503))
        elif self.standby and query.get("standbyok", "").lower() not in ("true", "1"):
            status = int(query.get("standbycode", 429))
        else:
            status = int(query.get("activecode", 200))
        body = {
            "initialized": True, "sealed": self.sealed, "standby": self.sealed or self.standby,
            "performance_standby": False, "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled", "server_time_utc": int(self.services.clock()),
            "version": VAULT_VERSION, "enterprise": False, "echo_duration_ms": 0,
            "clock_skew_ms": 0, "replication_primary_canary_age_ms": 0,
        }
        if not self.sealed:
            body.update(cluster_name="vault-cluster-fake", cluster_id=CLUSTER_ID)
        return _json_reply(status, body)

    def _seal_status(self) -> Json:
        status: Json = {
            "type": "shamir", "initialized": True, "sealed": self.sealed, "t": 1, "n": 1,
            "progress": 0, "nonce": "", "version": VAULT_VERSION,
            "build_date": "2024-01-01T00:00:00Z", "migration": False, "recovery_seal": False,
            "storage_type": "inmem",
        }
        if not self.sealed:
            status.update(cluster_name="vault-cluster-fake", cluster_id=CLUSTER_ID)
        return status


# --------------------------------------------------------------------------------------------
# Faults


@dataclass
class _PathFault:
    prefix: str
    status: int
    remaining: int | None
    messages: list[str] | None


@dataclass
class _Faults:
    latency: float = 0.0
    drop: int = 0
    malformed: int = 0
    every: int = 0
    every_status: int = 500
    every_messages: list[str] | None = None
    seen: int = 0
    paths: list[_PathFault] = field(default_factory=list)

    def decide(self, request: _Request) -> _Reply | None:
        """A reply to send instead of serving the request (``_DROP`` to hang up), or None."""
        if self.drop:
            self.drop -= 1
            return _DROP
        path_reply = self._path_failure(request)
        if path_reply is not None:
            return path_reply
        self.seen += 1
        if self.every and self.seen % self.every == 0:
            messages = self.every_messages
            if messages is None:
                messages = _default_messages(self.every_status, request.path)
            return _error_reply(self.every_status, messages)
        if self.malformed:
            self.malformed -= 1
            return _Reply(200, b'{"request_id": "', "application/json")
        return None

    def _path_failure(self, request: _Request) -> _Reply | None:
        for fault in self.paths:
            if request.path.startswith(fault.prefix.strip("/")) and fault.remaining != 0:
                if fault.remaining is not None:
                    fault.remaining -= 1
                messages = fault.messages
                if messages is None:
                    messages = _default_messages(fault.status, request.path)
                return _error_reply(fault.status, messages)
        return None


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    wbufsize = -1  # buffer so headers and body leave in one segment (no delayed-ACK stalls)
    server: _Server

    def setup(self) -> None:
        super().setup()
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_LIST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test output is not the place for an access log."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = _Request.parse(self.command, self.path, headers, body)
        reply = self.server.vault.serve(request)
        if reply is None:
            self.close_connection = True  # drop: close the socket without answering
            return
        self._write(reply)

    def _write(self, reply: _Reply) -> None:
        self.send_response_only(reply.status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Cache-Control", "no-store")
        if reply.status != 204:
            if reply.content_type:
                self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and reply.status != 204:
            self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # stop() joins the handler threads
    block_on_close = True

    def __init__(self, vault: FakeVault, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.vault = vault
        self.context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup of the address."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        self._track(request, add=True)
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(_Handler.timeout)
        connection = request
        if self.context is not None:
            try:
                connection = self.context.wrap_socket(request, server_side=True)
            except OSError:  # the client rejected our certificate, or went away
                return
            self._track(connection, add=True)
        try:
            _Handler(connection, client_address, self)
        finally:
            if connection is not request:
                self._track(connection, add=False)
                connection.close()

    def shutdown_request(self, request: Any) -> None:
        self._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-request is routine in fault tests; stay quiet."""

    def close_connections(self) -> None:
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._open_lock:
            if add:
                self._open.add(connection)
            else:
                self._open.discard(connection)


# --------------------------------------------------------------------------------------------
# The public fixture


class FakeVault:
    """A Vault-API-compatible server on 127.0.0.1 with a Python admin API for tests.

    Use as a context manager (``with FakeVault() as vault:``) or call ``start()``/``stop()``.
    ``tls=(cert_path, key_path)`` serves HTTPS. ``root_token`` (default ``"root"``) is an
    unrestricted, non-expiring token in the root namespace; ``None`` creates none. ``seed``
    makes generated identifiers (tokens, accessors, issuer ids) deterministic; ``clock``
    (seconds since the epoch) drives timestamps and token expiry.
    """

    def __init__(self, *, tls: tuple[str | Path, str | Path] | None = None,
                 kv2_mounts: Iterable[str] = ("secret",), kv1_mounts: Iterable[str] = (),
                 pki_mounts: Iterable[str] = ("pki",), root_token: str | None = "root",
                 seed: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self._tls = tls
        self._defaults = (tuple(kv2_mounts), tuple(kv1_mounts), tuple(pki_mounts))
        self._services = _Services(clock, seed)
        self._api = _Api(self._services)
        self._faults = _Faults()
        self._requests: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.RLock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.root_token = root_token
        self._mount_defaults("")
        if root_token is not None:
            self.add_token(root_token)

    # Lifecycle

    def start(self) -> FakeVault:
        if self._server is not None:
            return self
        self._server = _Server(self, self._ssl_context())
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.01},
                                        name=f"fake-vault-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeVault:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeVault is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _ssl_context(self) -> ssl.SSLContext | None:
        if self._tls is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
        return context

    # Namespaces and mounts

    def create_namespace(self, name: str, *, kv2_mounts: Iterable[str] | None = None,
                         kv1_mounts: Iterable[str] | None = None,
                         pki_mounts: Iterable[str] | None = None) -> None:
        """Create ``name`` (and missing parents); mounts default to the server's defaults."""
        name = name.strip("/")
        with self._lock:
            for path in reversed(_ancestors(name)):
                if path not in self._api.namespaces:
                    self._api.namespaces[path] = _Namespace(path)
                    self._mount_defaults(path, kv2_mounts, kv1_mounts, pki_mounts)

    def enable_kv2(self, mount: str, *, namespace: str = "", max_versions: int = 0) -> None:
        self._engine(namespace, mount, _KV2Engine).max_versions = max_versions

    def enable_kv1(self, mount: str, *, namespace: str = "") -> None:
        self._engine(namespace, mount, _KV1Engine)

    def enable_pki(self, mount: str, *, namespace: str = "") -> None:
        self._engine(namespace, mount, _PkiEngine)

    def _mount_defaults(self, namespace: str, kv2: Iterable[str] | None = None,
                        kv1: Iterable[str] | None = None, pki: Iterable[str] | None = None) -> None:
        default_kv2, default_kv1, default_pki = self._defaults
        for mount in default_kv2 if kv2 is None else kv2:
            self.enable_kv2(mount, namespace=namespace)
        for mount in default_kv1 if kv1 is None else kv1:
            self.enable_kv1(mount, namespace=namespace)
        for mount in default_pki if pki is None else pki:
            self.enable_pki(mount, namespace=namespace)

    def _namespace(self, name: str) -> _Namespace:
        namespace = self._api.namespaces.get(name.strip("/"))
        if namespace is None:
            raise KeyError(f"no namespace {name!r}; call create_namespace() first")
        return namespace

    def _engine(self, namespace: str, mount: str, kind: type[_EngineT],
                factory: Callable[[], _EngineT] | None = None) -> _EngineT:
        with self._lock:
            mounts = self._namespace(namespace).mounts
            path = mount.strip("/")
            engine = mounts.get(path)
            if engine is None:
                engine = mounts[path] = (factory or kind)()
            if not isinstance(engine, kind):
                raise ValueError(f"{path!r} is a {engine.kind} mount, not {kind.kind}")
            return engine

    # Seeding secrets

    def put_kv2(self, mount: str, path: str, data: Mapping[str, Any], *, namespace: str = "",
                custom_metadata: Mapping[str, str] | None = None) -> int:
        """Write a new version of a KV v2 secret; returns the version number."""
        with self._lock:
            engine = self._engine(namespace, mount, _KV2Engine)
            secret = engine.put(path.strip("/"), dict(data), self._services.clock())
            if custom_metadata is not None:
                secret.custom_metadata = dict(custom_metadata)
            return secret.current

    def delete_kv2(self, mount: str, path: str, versions: Iterable[int] | None = None, *,
                   namespace: str = "") -> None:
        """Soft-delete versions (default: the latest) of a KV v2 secret."""
        self._mark_kv2(mount, path, versions, namespace, "delete")

    def undelete_kv2(self, mount: str, path: str, versions: Iterable[int], *,
                     namespace: str = "") -> None:
        self._mark_kv2(mount, path, versions, namespace, "undelete")

    def destroy_kv2(self, mount: str, path: str, versions: Iterable[int] | None = None, *,
                    namespace: str = "") -> None:
        """Permanently destroy versions (default: the latest) of a KV v2 secret."""
        self._mark_kv2(mount, path, versions, namespace, "destroy")

    def _mark_kv2(self, mount: str, path: str, versions: Iterable[int] | None, namespace: str,
                  action: str) -> None:
        with self._lock:
            engine = self._engine(namespace, mount, _KV2Engine)
            key = path.strip("/")
            if key not in engine.secrets:
                raise KeyError(f"no KV v2 secret {mount}/{key}")
            chosen = [engine.secrets[key].current] if versions is None else list(versions)
            engine.mark(key, chosen, self._services.clock(), action)

    def put_kv1(self, mount: str, path: str, data: Mapping[str, Any], *,
                namespace: str = "") -> None:
        with self._lock:
            self._engine(namespace, mount, _KV1Engine).secrets[path.strip("/")] = dict(data)

    def add_pki_issuer(self, mount: str, cert_pem: str | bytes, name: str | None = None,
                       default: bool = False, *, namespace: str = "") -> str:
        """Import a CA certificate as an issuer; returns its issuer_id. The first issuer of a
        mount becomes its default, like Vault's first import."""
        if name == "default":
            raise ValueError("'default' is a reserved issuer name")
        pem = cert_pem.encode() if isinstance(cert_pem, str) else cert_pem
        certificate = x509.load_pem_x509_certificate(pem)
        with self._lock:
            issuer = _Issuer(self._services.uuid(), name or "", certificate)
            self._engine(namespace, mount, _PkiEngine).add(issuer, default=default)
            return issuer.id

    def set_default_issuer(self, mount: str, ref: str, *, namespace: str = "") -> None:
        with self._lock:
            engine = self._engine(namespace, mount, _PkiEngine)
            engine.default_id = engine.resolve(ref).id

    # Tokens and auth methods

    def add_token(self, token: str, paths: Iterable[str] | None = None, ttl: float | None = None,
                  *, namespace: str = "", policies: Iterable[str] | None = None) -> None:
        """Register ``token``; ``paths`` are allowed path prefixes (``None``: everything),
        ``ttl`` seconds until it expires (``None``: never)."""
        with self._lock:
            created = self._services.new_token(namespace.strip("/"), token_id=token, paths=paths,
                                               policies=policies, ttl=ttl)
            self._namespace(namespace).tokens[token] = created

    def revoke_token(self, token: str, *, namespace: str = "") -> None:
        with self._lock:
            self._namespace(namespace).tokens.pop(token, None)

    def add_approle(self, role_id: str, secret_id: str, paths: Iterable[str],
                    mount: str = "approle", *, namespace: str = "", role_name: str | None = None,
                    policies: Iterable[str] | None = None, ttl: float = 3600) -> None:
        self._add_role(_AppRoleEngine, mount, namespace, role_id,
                       _Role(role_name or role_id, secret_id, tuple(paths),
                             _policies(policies, role_name or role_id), ttl))

    def add_kubernetes_role(self, role: str, jwt: str, paths: Iterable[str],
                            mount: str = "kubernetes", *, namespace: str = "",
                            policies: Iterable[str] | None = None, ttl: float = 3600) -> None:
        self._add_role(_KubernetesEngine, mount, namespace, role,
                       _Role(role, jwt, tuple(paths), _policies(policies, role), ttl))

    def add_jwt_role(self, role: str, jwt: str, paths: Iterable[str], mount: str = "jwt", *,
                     namespace: str = "", policies: Iterable[str] | None = None,
                     ttl: float = 3600) -> None:
        self._add_role(_JwtEngine, mount, namespace, role,
                       _Role(role, jwt, tuple(paths), _policies(policies, role), ttl))

    def _add_role(self, kind: type[_LoginEngine], mount: str, namespace: str, key: str,
                  role: _Role) -> None:
        path = f"auth/{mount.strip('/')}"
        with self._lock:
            engine = self._engine(namespace, path, kind, lambda: kind(path))
            engine.roles[key] = role

    # Faults

    def latency(self, seconds: float) -> None:
        """Delay every response by ``seconds``."""
        with self._lock:
            self._faults.latency = seconds

    def seal(self) -> None:
        with self._lock:
            self._api.sealed = True

    def unseal(self) -> None:
        with self._lock:
            self._api.sealed = False

    def set_standby(self, standby: bool = True) -> None:
        """Report this node as a standby in ``sys/health`` (429 unless ``standbyok``)."""
        with self._lock:
            self._api.standby = standby

    def fail_every(self, n: int, status: int, message: str | None = None) -> None:
        """Answer every ``n``-th request from now on with ``status`` and an errors body
        (``message`` or Vault's usual one; see ``STANDBY_ERROR`` for a standby's 503)."""
        with self._lock:
            self._faults.every, self._faults.every_status, self._faults.seen = n, status, 0
            self._faults.every_messages = None if message is None else [message]

    def drop_connections(self, n: int) -> None:
        """Close the connection without answering the next ``n`` requests."""
        with self._lock:
            self._faults.drop = n

    def malformed_json(self, n: int) -> None:
        """Answer the next ``n`` requests with 200 and a truncated JSON body."""
        with self._lock:
            self._faults.malformed = n

    def fail_path(self, path_prefix: str, status: int, times: int | None = None,
                  message: str | None = None) -> None:
        """Answer requests whose path (after ``/v1/``) starts with ``path_prefix`` with
        ``status``, ``times`` times or forever."""
        with self._lock:
            self._faults.paths.append(_PathFault(path_prefix, status, times,
                                                 None if message is None else [message]))

    def reset_faults(self) -> None:
        with self._lock:
            self._faults = _Faults()
            self._api.sealed = self._api.standby = False

    # Request counters

    @property
    def requests(self) -> Counter[tuple[str, str, str]]:
        """A copy of the counts by (HTTP method, path after ``/v1/``, namespace header)."""
        with self._lock:
            return Counter(self._requests)

    def count(self, path_prefix: str | None = None, *, method: str | None = None,
              namespace: str | None = None) -> int:
        with self._lock:
            return sum(n for (verb, path, ns), n in self._requests.items()
                       if (path_prefix is None or path.startswith(path_prefix))
                       and (method is None or verb == method)
                       and (namespace is None or ns == namespace))

    def reset_counts(self) -> None:
        with self._lock:
            self._requests.clear()

    # Serving (called on handler threads)

    def serve(self, request: _Request) -> _Reply | None:
        """Answer one request (on a handler thread); ``None`` means hang up."""
        with self._lock:
            self._requests[(request.method, request.path, request.namespace)] += 1
            delay = self._faults.latency
        if delay:
            time.sleep(delay)
        with self._lock:
            decision = self._faults.decide(request)
            if decision is _DROP:
                return None
            return decision if decision is not None else self._api.handle(request)


def _policies(policies: Iterable[str] | None, role: str) -> list[str]:
    return ["default", role] if policies is None else list(policies)


def pem_of(certificate: x509.Certificate) -> str:
    """PEM text of ``certificate`` (a convenience for tests seeding issuers)."""
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
