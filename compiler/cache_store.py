"""The store behind the cache (`compiler.cache`) and the run record (`compiler.run_record`):
entries as self-checking JSON files under `.mtlsc/cache/`, and the salt that makes another
mtlsc's entries unreachable. Apart from `cache.py` (canonical digests of model values) so that a
run-record lookup can read entries without importing the model.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

MAGIC = b"mtlsc-cache-1\n"
# An entry with blobs: the payload is the length of a JSON header, the header, then the blobs.
MAGIC_BLOBS = b"mtlsc-cache-2\n"
CACHE_DIR = Path(".mtlsc") / "cache"
_MARK = "\0blob"  # the one key of a blob's stand-in in the header
_MARK_TEXT = b'{"\\u0000blob":'  # how json.dumps writes the start of a stand-in


class Blob:
    """A large text or bytes value of an entry, stored raw after the entry's JSON header:
    neither escaped on the way in nor unescaped on the way out (for the serialized overlay
    files in render-cache entries, where JSON string escaping was most of the cost of a hit).
    `EntryStore.get` gives back the value itself (str or bytes), never a Blob."""

    __slots__ = ("data", "text")

    def __init__(self, value: str | bytes) -> None:
        self.text = type(value) is str
        self.data = value.encode("utf-8") if isinstance(value, str) else bytes(value)


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
        blobs = raw.startswith(MAGIC_BLOBS)
        head = (MAGIC_BLOBS if blobs else MAGIC) + key.encode("ascii") + b"\n"
        if not raw.startswith(head):
            return None
        checksum, _, payload = raw[len(head):].partition(b"\n")
        if hashlib.sha256(payload).hexdigest().encode("ascii") != checksum:
            return None
        try:
            return _with_blobs(payload) if blobs else json.loads(payload)
        except (ValueError, RecursionError):
            return None

    def put(self, kind: str, key: str, value: Any) -> None:
        """Store `value` (JSON types and `Blob`s) under `key`."""
        if not self.writable:
            return
        blobs: list[bytes] = []
        at = [0]

        def stand_in(obj: Any) -> Any:
            if type(obj) is not Blob:
                raise TypeError(f"{type(obj).__name__} is not a JSON type")
            blobs.append(obj.data)
            at[0] += len(obj.data)
            return {_MARK: [at[0] - len(obj.data), len(obj.data), obj.text]}

        payload = json.dumps(value, ensure_ascii=False, separators=(",", ":"),
                             default=stand_in).encode("utf-8")
        magic = MAGIC
        if blobs:
            if payload.count(_MARK_TEXT) != len(blobs):
                return  # a value of its own looks like a stand-in: not stored (never wrong)
            magic = MAGIC_BLOBS
            payload = b"".join([str(len(payload)).encode("ascii"), b"\n", payload, *blobs])
        data = (magic + key.encode("ascii") + b"\n"
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


def _with_blobs(payload: bytes) -> Any:
    """The value of a payload with blobs: each stand-in (a one-key object, which `put` made
    sure no other object of the header looks like) replaced by its blob."""
    size, _, rest = payload.partition(b"\n")
    if not size.isdigit() or int(size) > len(rest):
        raise ValueError("bad header length")
    header, area = rest[:int(size)], memoryview(rest)[int(size):]

    def hook(obj: dict[str, Any]) -> Any:
        found = obj.get(_MARK) if len(obj) == 1 else None
        if found is None:
            return obj
        if type(found) is not list or len(found) != 3:
            raise ValueError("bad blob")
        start, length, text = found
        if type(start) is not int or type(length) is not int or type(text) is not bool or \
                start < 0 or length < 0 or start + length > len(area):
            raise ValueError("bad blob")
        data = bytes(area[start:start + length])
        return data.decode("utf-8") if text else data

    return json.loads(header, object_hook=hook)
