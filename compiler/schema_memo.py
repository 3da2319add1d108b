"""Which policy files are known to pass the intent schema check, so a warm run skips it.

The check (`intent_schema.check_document`) is a pure function of a document, and a document is
a pure function of its file's name and content. So a file whose every document passed once
passes again while its name, its content, the intent schema and mtlsc's code (with the
`jsonschema` version, see `cache.code_salt`) are unchanged. The render cache's store holds one
entry: the SHA-256 digests of such files. Only a clean verdict is remembered — a file with any
schema problem is checked again every run, so diagnostics never come from the cache. The
entry is checksummed like every cache entry; a damaged or foreign one is ignored (every file
is then checked).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache

from .cache import EntryStore, code_salt
from .intent_schema import intent_schema

KIND = "schema-clean"


@cache
def _key() -> str:
    schema = json.dumps(intent_schema(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{code_salt()}\0{schema}".encode()).hexdigest()


def file_digest(name: str, text: str | bytes) -> str | None:
    """The digest a file is remembered by (None: text that cannot be encoded, not memoized)."""
    try:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return hashlib.sha256(name.encode("utf-8", "surrogatepass") + b"\0" + data).hexdigest()


class CleanFiles:
    """The digests of schema-clean files: read from the store, written back (when writable)
    as exactly this run's clean files, so entries for old content do not pile up."""

    def __init__(self, store: EntryStore | None) -> None:
        self.store = store
        raw = store.get(KIND, _key()) if store is not None else None
        self.known: frozenset[str] = frozenset(
            raw if isinstance(raw, list) and all(isinstance(d, str) for d in raw) else ())
        self.seen: set[str] = set()

    def __contains__(self, digest: str) -> bool:
        return digest in self.known

    def add(self, digest: str) -> None:
        self.seen.add(digest)

    def save(self) -> None:
        if self.store is not None and self.seen != self.known:
            self.store.put(KIND, _key(), sorted(self.seen))
