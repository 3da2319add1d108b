"""The hvac client mtlsc uses, and reads whose answers need interpreting (KV v2 versions)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import hvac  # type: ignore[import-untyped, unused-ignore]
import requests
from hvac import exceptions as hvac_errors  # type: ignore[import-untyped, unused-ignore]
from requests.adapters import HTTPAdapter

from . import SourceError
from .vault_config import VaultRef
from .vault_errors import MalformedAnswer

CLIENT_TIMEOUT = 15.0


def new_client(address: str, verify: bool | str, namespace: str | None, concurrency: int,
               deadline_seconds: float) -> Any:
    """An unauthenticated hvac client with a connection pool as large as the concurrency."""
    session = requests.Session()
    session.verify = verify  # hvac takes verification from a given session, not verify=
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(concurrency, 1))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # a stalled request must leave time in the run's deadline for retries
    timeout = min(CLIENT_TIMEOUT, max(deadline_seconds / 3, 0.5))
    return hvac.Client(url=address, verify=verify, namespace=namespace, timeout=timeout,
                       session=session)


def read_kv2(client: Any, where: VaultRef, version: int | None) -> Any:
    try:
        return client.secrets.kv.v2.read_secret_version(
            path=where.path, version=version, mount_point=where.mount,
            raise_on_deleted_version=False)  # a deleted version answers with its metadata
    except hvac_errors.InvalidPath as exc:
        meta = ((exc.json or {}).get("data") or {}).get("metadata") \
            if isinstance(exc.json, dict) else None
        if meta:  # destroyed (or deleted) versions: 404 with the version's metadata
            raise gone(where, meta, version) from None
        raise


def gone(where: VaultRef, meta: Mapping[str, Any], version: int | None) -> SourceError:
    number = meta.get("version") or version or "?"
    if meta.get("destroyed"):
        return SourceError("VaultVersionDestroyed", f"version {number} of {where.describe()} "
                           "is destroyed", "pin a live version (`mtlsc lock update`) or write "
                           "the secret again")
    return SourceError("VaultVersionDeleted", f"version {number} of {where.describe()} is "
                       "deleted", "undelete it in Vault or move the lock forward with "
                       "`mtlsc lock update`")


def json_answer(answer: Any) -> Any:
    # hvac hands back the raw Response when a 200 body does not parse as JSON.
    if not isinstance(answer, dict):
        raise MalformedAnswer("Vault's answer was not a JSON document")
    return answer
