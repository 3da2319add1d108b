"""ExternalSecret objects (external-secrets.io/v1) that put a server certificate's key into the
`kubernetes.io/tls` Secret the Gateway references, from the same Vault path and version the
compile used. The key itself never passes through mtlsc's output."""

from __future__ import annotations

from typing import Any

from ..lock import Pin
from ..model import CertRef
from ..secrets.vault_config import ExternalSecrets, VaultRef
from .gateway_api import MANAGED_BY, Rendered


def _remote(where: VaultRef, field: str, pin: Pin | None) -> dict[str, Any]:
    remote: dict[str, Any] = {"key": where.path, "property": field}
    version = where.version or (pin.version if pin else None)
    if where.engine == "kv2" and version is not None:
        remote["version"] = str(version)  # the provider takes the KV v2 version as a string
    return remote


def render_external_secret(ref: CertRef, where: VaultRef, pin: Pin | None,
                           config: ExternalSecrets) -> Rendered:
    obj = {
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {"name": ref.name, "namespace": ref.namespace, "labels": dict(MANAGED_BY),
                     "annotations": {"mtlsc.dev/vault-path": f"{where.mount}/{where.path}"}},
        "spec": {
            "refreshInterval": config.refresh_interval,
            "secretStoreRef": {"name": config.store_name, "kind": config.store_kind},
            "target": {"name": ref.name, "creationPolicy": "Owner",
                       "template": {"type": "kubernetes.io/tls"}},
            "data": [{"secretKey": "tls.crt", "remoteRef": _remote(where, where.cert_field, pin)},
                     {"secretKey": "tls.key", "remoteRef": _remote(where, where.key_field, pin)}],
        },
    }
    return Rendered(obj, {(): ref.origin.location})
