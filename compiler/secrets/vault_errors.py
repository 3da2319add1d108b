"""What Vault's answers mean for a run: transient (retry within the run's deadline) or final,
and the one-line, secret-free message a user sees for each."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import requests
from hvac import exceptions as hvac_errors  # type: ignore[import-untyped, unused-ignore]

from . import SourceError


class MalformedAnswer(Exception):
    """Vault answered 200 with a body that is not the JSON document it should be."""


TRANSIENT: tuple[type[BaseException], ...] = (
    hvac_errors.RateLimitExceeded, hvac_errors.InternalServerError, hvac_errors.BadGateway,
    hvac_errors.VaultDown, requests.exceptions.ConnectionError, requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError, json.JSONDecodeError, MalformedAnswer,
)


@dataclass(frozen=True, slots=True)
class Access:
    """What one request needs from a Vault policy: a capability on an API path."""

    capability: str  # read | list
    path: str  # as a policy names it, e.g. secret/data/gateways/ca
    namespace: str | None = None

    def describe(self) -> str:
        where = f" in namespace {self.namespace!r}" if self.namespace else ""
        return f"{self.capability!r} on {self.path!r}{where}"


_MULTI = re.compile(r"^\s*\d+ errors? occurred:\s*", re.IGNORECASE)
_BULLET = re.compile(r"(^|\s)\*\s+")
_TOKENISH = re.compile(r"\b(hv[sbr]|s|b|r)\.[A-Za-z0-9_-]{8,}\b")


def clean(text: str, limit: int = 200) -> str:
    """Vault's error text on one line: no "1 error occurred:" wrapper, no bullets or tabs,
    nothing token-shaped, at most `limit` characters."""
    text = _MULTI.sub("", text)
    text = _BULLET.sub(r"\1", text)
    text = " ".join(text.split())
    text = _TOKENISH.sub("<redacted>", text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def reason(exc: BaseException) -> str:
    """The error's own words (Vault's `errors` list, cleaned), or the exception's kind."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, list | tuple) and any(str(e).strip() for e in errors):
        return clean("; ".join(str(e) for e in errors if str(e).strip()))
    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer within the client timeout"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection failed"
    if isinstance(exc, MalformedAnswer | json.JSONDecodeError):
        return "the answer was not valid JSON"
    if isinstance(exc, hvac_errors.VaultError):
        return f"HTTP error ({type(exc).__name__})"
    return type(exc).__name__


def unknown_issuer(exc: BaseException) -> bool:
    return any("unable to find PKI issuer" in str(e) for e in getattr(exc, "errors", None) or [])


def final_error(exc: BaseException, what: str, access: Access) -> SourceError | None:
    """The SourceError for a permanent failure of a read, or None when it is transient."""
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_error()
    if isinstance(exc, hvac_errors.Forbidden):
        return SourceError("VaultPermissionDenied", f"Vault denied {access.describe()} "
                           f"reading {what} ({reason(exc)})",
                           f"grant {access.capability} on {access.path} in the policy of the "
                           "identity mtlsc logs in as, e.g. "
                           f"path \"{access.path}\" {{ capabilities = [\"{access.capability}\"] }}"
                           " (docs/vault.md#policy)")
    if isinstance(exc, hvac_errors.Unauthorized):
        return SourceError("VaultAuthFailed", f"Vault refused the token reading {what} "
                           f"({reason(exc)})", "check the token or login credentials")
    if isinstance(exc, hvac_errors.InvalidPath) or (
            isinstance(exc, hvac_errors.InternalServerError) and unknown_issuer(exc)):
        return SourceError("VaultSecretNotFound", f"{what} not found", "check the mount, path "
                           "or issuer in the CertificateSource")
    if isinstance(exc, hvac_errors.InvalidRequest | hvac_errors.UnsupportedOperation):
        return SourceError("VaultInvalidRequest", f"Vault rejected the request for {what} "
                           f"({reason(exc)})", "check the mount type and path")
    if isinstance(exc, TRANSIENT):
        return None
    if isinstance(exc, hvac_errors.VaultError | requests.exceptions.RequestException):
        return SourceError("VaultInvalidRequest", f"Vault rejected the request for {what} "
                           f"({reason(exc)})", "check the mount type and path")
    return None


def login_error(exc: BaseException, method: str) -> SourceError | None:
    """A refused login is final for the run: retrying a 4xx could lock the role out."""
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_error()
    if isinstance(exc, requests.exceptions.RequestException) and \
            not isinstance(exc, TRANSIENT):  # e.g. an address that is not a URL
        return SourceError("VaultNotConfigured", f"cannot send a request to Vault "
                           f"({type(exc).__name__})", "check spec.vault.address or VAULT_ADDR "
                           "(https://host:port)", source_failure=False)
    if isinstance(exc, hvac_errors.VaultError) and not isinstance(exc, TRANSIENT):
        return SourceError("VaultAuthFailed", f"Vault login ({method}) failed: {reason(exc)}",
                           "check the role and credentials (docs/vault.md#authentication); "
                           "mtlsc tried once and does not retry a refused login")
    return None


def tls_error() -> SourceError:
    return SourceError("VaultTLSError", "TLS verification of the Vault server failed",
                       "set spec.vault.caCert or VAULT_CACERT to the CA that signed Vault's "
                       "certificate; verification is never skipped")
