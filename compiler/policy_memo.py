"""Which policy files a run record lookup need not read: the identities the last compile saw.

A no-change `check` must know that every policy file holds what the recorded compile read.
Reading and hashing thousands of files costs more than asking the filesystem whether they
changed, so a `compile` that records its run also records, per policy file read in place,
its identity as it was opened (`policy_files.stat_key`: device, inode, size, mtime, ctime)
and the SHA-256 of its text. A lookup takes the recorded digest of a regular file whose
identity is exactly the recorded one, and reads every other entry.

Any change to a file changes its ctime, which no user can set back. What could hide a change
is a write within the same tick of the filesystem clock as the one recorded (the "racy" case
git's index knows): so the compile reads the filesystem clock *before* reading the files (the
timestamp of a file it creates, `clock`), and only files whose ctime is strictly older are
recorded. A write after that moment gives the file a ctime no earlier than the clock, so it
can never carry a recorded identity.

The memo is a speed-up, never an input: it lives in the cache (`cache_store.EntryStore`:
self-keyed, checksummed, JSON, renamed into place), a missing or damaged memo means reading
every file, and the full run that follows a missed lookup reads every file again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cache_store import EntryStore
from .policy_files import StatKey

KIND = "policy-stat"
VERSION = 1


def _key(root: Path, policies: Path) -> str:
    where = f"{VERSION}\0{os.path.realpath(root)}\0{os.path.realpath(policies)}"
    return hashlib.sha256(where.encode("utf-8", "surrogatepass")).hexdigest()


def load(cache: Path, root: Path, policies: Path) -> dict[str, tuple[StatKey, bytes]]:
    """The recorded identity and text digest of each policy file (empty when none is usable)."""
    raw: Any = EntryStore(cache, writable=False).get(KIND, _key(root, policies))
    try:
        if raw.get("version") != VERSION:
            return {}
        return {str(name): ((int(e[0]), int(e[1]), int(e[2]), int(e[3]), int(e[4])),
                            bytes.fromhex(e[5]))
                for name, e in raw["files"].items()}
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return {}


def clock(cache: Path) -> int | None:
    """The filesystem's time now (ns): the timestamp of a file created in `cache` and removed
    again. None when it cannot be created (a read-only checkout: nothing will be recorded)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        name = cache / f".clock-{os.getpid()}"
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600)
        try:
            return os.fstat(fd).st_ctime_ns
        finally:
            os.close(fd)
            os.unlink(name)
    except OSError:
        return None


def save(cache: Path, root: Path, policies: Path, identities: Mapping[str, StatKey],
         digests: Mapping[str, bytes], before: int) -> None:
    """Record the files read in place whose ctime is older than `before` (see `clock`)."""
    files = {name: [*key, digests[name].hex()] for name, key in sorted(identities.items())
             if key[4] < before and name in digests}
    # a disk that refuses the entry only makes the next lookup read every file
    EntryStore(cache).put(KIND, _key(root, policies), {"version": VERSION, "files": files})
