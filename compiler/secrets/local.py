"""A certificate source backed by PEM files in a local directory (no server needed)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

from ..load import LocalSourceConfig
from ..lock import Pin
from ..pki import ensure_dev_pki
from . import SecretBytes, ServerCertificate, SourceError


class LocalSource:
    concurrency = 1  # local files: parallel reads gain nothing

    def __init__(self, config: LocalSourceConfig, root: Path) -> None:
        self.name = config.name
        self._config = config
        self._dir = (root / config.directory)
        self._prepared = False

    def _prepare(self) -> None:
        """Create the dev PKI on first use when the source asks for it (demos only)."""
        if self._prepared:
            return
        self._prepared = True
        if self._config.create_dev_pki:
            try:
                ensure_dev_pki(self._dir)
            except OSError as exc:
                raise SourceError("SourceUnavailable", f"cannot create the dev PKI in "
                                  f"{self._config.directory}: {exc.strerror or exc}",
                                  "check that the directory is writable") from exc

    def _read(self, relative: str, ref: str) -> bytes:
        self._prepare()
        path = self._dir / relative
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise SourceError("CertificateFileMissing", f"{ref!r}: file {relative!r} not found "
                              f"in {self._config.directory}", "create it (for the example: "
                              f"`mtlsc dev-pki {self._config.directory}`) or fix the path in "
                              f"CertificateSource {self.name!r}") from None
        except OSError as exc:
            raise SourceError("SourceUnavailable", f"{ref!r}: cannot read {relative!r}: "
                              f"{exc.strerror or exc}", "check file permissions") from None

    def pins(self) -> dict[tuple[str, str], Pin]:
        return {}  # local files have no versions to lock

    def ca_bundle(self, ref: str) -> bytes:
        file = self._config.ca_bundles.get(ref)
        if file is None:
            raise _unmapped(ref, "caBundles", self.name, self._config.ca_bundles)
        return self._read(file, ref)

    def server_certificate(self, ref: str) -> ServerCertificate:
        files = self._config.certificates.get(ref)
        if files is None:
            raise _unmapped(ref, "certificates", self.name, self._config.certificates)
        cert, key = files
        return ServerCertificate(self._read(cert, ref), SecretBytes(self._read(key, ref)))


def _unmapped(ref: str, section: str, source: str, known: Iterable[str]) -> SourceError:
    names = sorted(known)
    close = difflib.get_close_matches(ref, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return SourceError("UnknownCertificateRef", f"certificate source {source!r} has no "
                       f"{section} entry {ref!r}", f"{hint}add '{ref}' under "
                       f"spec.local.{section} of CertificateSource {source!r}",
                       source_failure=False)
