"""Certificate sources: where certificates and CA bundles are read from.

The intent language names certificates logically; a ClusterTarget picks a CertificateSource,
and the source maps each logical name to a location. Adding a source (Vault) changes no intent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..lock import Pin


class SecretBytes:
    """Secret material whose repr and str never show the bytes."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return f"SecretBytes(<redacted {len(self._value)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretBytes) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A listener's server certificate as fetched: its public chain, and its private key only
    to check that the two match."""

    chain_pem: bytes  # public
    private_key: SecretBytes | None  # read only to check that it matches; never written out


class SourceError(Exception):
    """A certificate could not be read. `source_failure` separates broken sources (exit 3)
    from configuration mistakes such as an unmapped name (exit 1); `warning` marks a read that
    was deliberately not done (offline mode), reported as a warning."""

    def __init__(self, code: str, message: str, hint: str, *, source_failure: bool = True,
                 warning: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.source_failure = source_failure
        self.warning = warning


class CertificateSource(Protocol):
    name: str
    concurrency: int  # how many reads may run in parallel

    def pins(self) -> Mapping[tuple[str, str], Pin]:
        """What the reads resolved to ((kind, name) → pin), for the lockfile."""
        ...

    def ca_bundle(self, ref: str) -> bytes:
        """The PEM CA bundle for logical name `ref`; raises SourceError."""
        ...

    def server_certificate(self, ref: str) -> ServerCertificate:
        """The server certificate chain (and its key, for checking) for `ref`."""
        ...
