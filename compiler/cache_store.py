"""The store behind the cache (`compiler.cache`) and the run record (`compiler.run_record`):
entries as self-checking JSON files under `.mtlsc/cache/`, and the salt that makes another
mtlsc's entries unreachable. Apart from `cache.py` (canonical digests of model values) so that a
run-record lookup can read entries without importing the model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

MAGIC = b"mtlsc-cache-1\n"
CACHE_DIR = Path(".mtlsc") / "cache"


@cache
def code_salt() -> str:
    """mtlsc's version plus a digest of its own files (code, templates, implementation
    profiles), and the versions of Python and
    of the libraries whose messages end up in diagnostics: a development edit or an upgrade
    makes every old entry unreachable."""
    from importlib.metadata import PackageNotFoundError, version

    found = [sys.version]
    for package_name in ("mtlsc", "jsonschema", "cryptography"):
        try:
            found.append(f"{package_name}=={version(package_name)}")
        except PackageNotFoundError:
            found.append(f"{package_name}==unknown")
    digest = hashlib.sha256("\n".join(found).encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.suffix != ".pyc" and path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class EntryStore:
    """Entries as files `<dir>/<kind>/<key[:2]>/<key>`; a failing disk only costs speed."""

    def __init__(self, directory: Path, *, writable: bool = True) -> None:
        self.directory = directory
        self.writable = writable

    def _path(self, kind: str, key: str) -> Path:
        return self.directory / kind / key[:2] / key

    def get(self, kind: str, key: str) -> Any | None:
        """The payload stored under `key`, or None when absent or not trustworthy."""
        # A plain string path: a warm compile reads one entry per unit, and pathlib's joins
        # cost more than the read.
        name = os.path.join(os.fspath(self.directory), kind, key[:2], key)
        try:
            with open(name, "rb") as fh:
                raw = fh.read()
        except OSError:
            return None
        head = MAGIC + key.encode("ascii") + b"\n"
        if not raw.startswith(head):
            return None
        checksum, _, payload = raw[len(head):].partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode("ascii") != checksum:
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return None

    def touch(self, kind: str, key: str) -> None:
        """Mark an entry as just used (pruning keeps the newest entries); absent: nothing."""
        if self.writable:
            with contextlib.suppress(OSError):
                os.utime(self._path(kind, key))

    def put(self, kind: str, key: str, value: Any) -> None:
        if not self.writable:
            return
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        try:
            payload = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a file name that is not UTF-8): escaped
            payload = json.dumps(value, separators=(",", ":")).encode("ascii")
        data = (MAGIC + key.encode("ascii") + b"\n"
                + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload)
        path = self._path(kind, key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError:
            return  # a read-only or full disk makes the next run slower, never wrong
