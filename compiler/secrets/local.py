"""A certificate source backed by PEM files in a local directory (no server needed).

Reading is defensive (docs/certificates.md): a file must resolve inside the repository (or below
a directory allowed with --allow-read-outside), be a regular file — a FIFO, device or socket is
refused without blocking on it — and hold at most PEM_SIZE_LIMIT bytes. `createDevPki` never
writes outside the repository, whatever is allowed for reading.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..load import LocalSourceConfig
from ..lock import Pin
from . import SecretBytes, ServerCertificate, SourceError

PEM_SIZE_LIMIT = 1024 * 1024  # bytes per file: far above any real bundle, far below harm
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return "special file"


class LocalSource:
    concurrency = 1  # local files: parallel reads gain nothing

    def __init__(self, config: LocalSourceConfig, root: Path,
                 read_outside: Sequence[Path] = ()) -> None:
        self.name = config.name
        self._config = config
        self._dir = (root / config.directory)
        self._root = os.path.realpath(root)
        self._allowed = tuple(os.path.realpath(d) for d in read_outside)
        self._prepared = False

    def _outside(self, path: Path, *, writing: bool) -> SourceError | None:
        real = os.path.realpath(path)
        if _inside(real, self._root) or \
                (not writing and any(_inside(real, d) for d in self._allowed)):
            return None
        return SourceError("PathOutsideRepository", f"CertificateSource {self.name!r}: "
                           f"{os.path.relpath(path, self._root)!r} resolves to {real}, outside "
                           "the repository", "mtlsc never writes outside the repository; to "
                           "read certificates there, pass --allow-read-outside DIR"
                           if not writing else "point createDevPki at a directory inside the "
                           "repository, such as .mtlsc/dev-pki", source_failure=False)

    def _prepare(self) -> None:
        """Create the dev PKI on first use when the source asks for it (demos only)."""
        if self._prepared:
            return
        self._prepared = True
        if self._config.create_dev_pki:
            refused = self._outside(self._dir, writing=True)
            if refused is not None:
                raise refused
            try:
                from ..pki import ensure_dev_pki  # cryptography's key generation: demos only

                ensure_dev_pki(self._dir)
            except OSError as exc:
                raise SourceError("SourceUnavailable", f"cannot create the dev PKI in "
                                  f"{self._config.directory}: {exc.strerror or exc}",
                                  "check that the directory is writable") from exc

    def _read(self, relative: str, ref: str) -> bytes:
        self._prepare()
        path = self._dir / relative
        refused = self._outside(path, writing=False)
        if refused is not None:
            raise refused
        try:
            return self._read_regular(os.path.realpath(path), relative, ref)
        except FileNotFoundError:
            raise SourceError("CertificateFileMissing", f"{ref!r}: file {relative!r} not found "
                              f"in {self._config.directory}", "create it (for the example: "
                              f"`mtlsc dev-pki {self._config.directory}`) or fix the path in "
                              f"CertificateSource {self.name!r}") from None
        except OSError as exc:
            raise SourceError("SourceUnavailable", f"{ref!r}: cannot read {relative!r}: "
                              f"{exc.strerror or exc}", "check file permissions") from None

    def _read_regular(self, real: str, relative: str, ref: str) -> bytes:
        """Read a regular file of at most PEM_SIZE_LIMIT bytes; never block on a FIFO."""
        fd = os.open(real, _OPEN_FLAGS)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceError("NotARegularFile", f"{ref!r}: {relative!r} in "
                                  f"{self._config.directory} is a {_kind(st.st_mode)}, not a "
                                  "file", "point the entry at a PEM file",
                                  source_failure=False)
            chunks: list[bytes] = []
            size = 0
            while size <= PEM_SIZE_LIMIT:
                chunk = os.read(fd, PEM_SIZE_LIMIT + 1 - size)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
            raise SourceError("CertificateFileTooLarge", f"{ref!r}: {relative!r} in "
                              f"{self._config.directory} is larger than {PEM_SIZE_LIMIT} bytes",
                              "a PEM certificate or bundle is a few kilobytes; check the path",
                              source_failure=False)
        finally:
            os.close(fd)

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
