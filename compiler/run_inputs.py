"""What a run record is keyed by, read before anything is compiled: the options that change a
run's output (`Settings`), the policy files and the lock (`Inputs`), and `run_key`, a SHA-256
over them, mtlsc's code and the schemas it reads.

A lookup (`lookup_inputs`) runs on every `check` and `compile`, so it proves "unchanged" from
file identities where that is sound: policy files from the policy memo, mtlsc's code and the
schemas from the name and identity (`stat_key`) of their files. A missed lookup reads every
policy file (`read_inputs`) and keys the full run, and its record, by what it read.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from . import policy_memo
from .cache_store import CACHE_DIR
from .policy_files import (
    PolicyDigests,
    PolicyFiles,
    StatKey,
    digest_policy_files,
    digests_of,
    read_policy_files,
    stat_key,
)
from .schema_roots import schema_roots

VERSION = 2  # of the key: a new layout of what it covers is a new key
LOCK_FILE = "mtlsc.lock"  # lock.LOCK_FILE (lock.py imports the YAML machinery)
# Environment variables that change what a run reads (credentials are not keyed: a lookup logs
# in again and reads every recorded secret, so a refused credential is a miss).
KEYED_ENV = ("VAULT_ADDR", "VAULT_NAMESPACE", "VAULT_CACERT")


@dataclass(frozen=True, slots=True)
class Settings:
    """The options of a `check`/`compile` that can change its output or diagnostics."""

    root: Path
    policies: Path
    overlays: str
    strict: bool
    clusters: tuple[str, ...]
    read_outside: tuple[Path, ...] = ()


@dataclass(slots=True)
class Inputs:
    """What the run reads before compiling, read once and handed to the compile (a lookup
    that trusted the policy memo has digests only: `texts` is None)."""

    texts: PolicyFiles | None
    lock: bytes | None  # mtlsc.lock as read, None when absent
    key: str
    # of the policy files read in place, as opened, and the filesystem clock before reading
    # them: what `policy_memo.save` records (None: not to be recorded)
    identities: dict[str, StatKey] = field(default_factory=dict)
    clock: int | None = None
    # a lookup's digests of every policy file (from the memo where it vouches), and the memo
    digests: PolicyDigests | None = None
    memo: dict[str, tuple[StatKey, bytes]] = field(default_factory=dict)


def _schemas_identity(root: Path) -> str:
    """The name and identity of every file below every schema root (a superset of what the
    render cache's per-bundle fingerprints cover, so any schema change is a new key)."""
    digest = hashlib.sha256()
    for index, base in enumerate(schema_roots(root)):
        for rel, key in sorted(_identities(os.fspath(base)), key=_first):
            digest.update(f"{index}:{rel}\0{key}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def code_identity() -> str:
    """What a run key knows of the code that made the run: Python's version, the name and
    identity of every file of mtlsc's package (code, templates, implementation profiles) and
    the installed distributions of the libraries whose messages reach diagnostics. A local
    edit, a reinstall or an upgrade is a new key, as `cache_store.code_salt` is for cache
    entries; that reads every file, too slow for a lookup made on every `check`."""
    digest = hashlib.sha256(f"{VERSION}\0{sys.version}\n".encode())
    package = os.path.dirname(os.path.abspath(__file__))
    for rel, key in sorted(_identities(package), key=_first):
        digest.update(f"{rel}\0{key}\n".encode("utf-8", "surrogateescape"))
    for name in ("jsonschema", "cryptography"):
        digest.update(f"{name}\0{distribution(name)}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _identities(top: str) -> list[tuple[str, StatKey | str]]:
    """The relative name and identity of every file below `top` (no bytecode caches),
    following links as the schema store's reads do (a directory reached twice is listed
    once). What cannot be looked at is named for what it is, never an error: the full run
    reports it, and the key only needs to differ."""
    out: list[tuple[str, StatKey | str]] = []
    seen: set[tuple[int, int]] = set()
    pending = [""]
    while pending:
        rel_dir = pending.pop()
        try:
            here = os.stat(os.path.join(top, rel_dir) if rel_dir else top)
            if (here.st_dev, here.st_ino) in seen:
                out.append((rel_dir, "loop"))
                continue
            seen.add((here.st_dev, here.st_ino))
            with os.scandir(os.path.join(top, rel_dir) if rel_dir else top) as it:
                entries = list(it)
        except OSError as exc:
            out.append((rel_dir, f"unreadable {exc.errno}"))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat()  # through a link: its target's identity
            except OSError as exc:
                out.append((rel, f"unreadable {exc.errno}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name != "__pycache__":
                    pending.append(rel)
            elif not entry.name.endswith(".pyc"):
                out.append((rel, stat_key(st)))
    return out


def _first(item: tuple[str, object]) -> str:
    return item[0]


def distribution(name: str) -> str:
    """Which distribution of `name` is installed: the names and identities of its
    `*.dist-info` directories beside the package (an upgrade renames them), else the identity
    of the package's own file."""
    spec = find_spec(name)
    if spec is None or spec.origin is None:
        return "absent"
    package = os.path.dirname(spec.origin)
    site = os.path.dirname(package)
    prefix = name.replace("-", "_") + "-"
    try:
        with os.scandir(site) as it:
            found = sorted(f"{e.name}:{stat_key(e.stat())}" for e in it
                           if e.name.startswith(prefix) and e.name.endswith(".dist-info"))
    except OSError:
        found = []
    return ",".join(found) or f"{spec.origin}:{stat_key(os.stat(spec.origin))}"


def run_key(settings: Settings, texts: PolicyDigests, lock: bytes | None) -> str:
    """SHA-256 over mtlsc's code and schemas, the options, the keyed environment, every
    policy file's name and text digest (and the problems reading them), and the lock file."""
    digest = hashlib.sha256()

    def part(value: str | bytes | None) -> None:
        data = b"\xff" if value is None else \
            value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(8, "big") + data)

    part(f"mtlsc-run-record-{VERSION}")
    part(code_identity())
    part(_schemas_identity(settings.root))
    part(os.path.realpath(settings.root))
    part(os.path.realpath(settings.policies))
    part(settings.overlays)
    part(repr((settings.strict, settings.clusters)))
    part(repr(tuple(os.path.realpath(p) for p in settings.read_outside)))
    for name in KEYED_ENV:
        part(os.environ.get(name))
    part(repr(len(texts)))
    for name, text_digest in texts.items():
        part(name)
        part(text_digest)
    part(repr([repr(d) for d in texts.problems]))
    part(lock)
    return digest.hexdigest()


def read_inputs(settings: Settings, *, memo: bool = False) -> Inputs | None:
    """The policy texts and lock, keyed; None when they cannot be read (the full run then
    reads them again and reports why). `memo`: the files are to be recorded in the policy
    memo (a `compile`): the filesystem clock is read first and each file's identity kept."""
    cache = settings.root / CACHE_DIR
    clock = policy_memo.clock(cache) if memo else None
    identities: dict[str, StatKey] = {}
    try:
        texts = read_policy_files(settings.policies, settings.root, identities=identities)
        lock = _read_lock(settings.root)
    except (OSError, UnicodeDecodeError):
        return None
    return Inputs(texts, lock, run_key(settings, digests_of(texts), lock), identities, clock)


def lookup_inputs(settings: Settings) -> Inputs | None:
    """The key of the policy files and lock, taking the digests of unchanged policy files
    from the policy memo (`texts` is None: a missed lookup reads them with `read_inputs`)."""
    known = policy_memo.load(settings.root / CACHE_DIR, settings.root, settings.policies)
    try:
        digests = digest_policy_files(settings.policies, settings.root, known)
        lock = _read_lock(settings.root)
    except (OSError, UnicodeDecodeError):
        return None
    return Inputs(None, lock, run_key(settings, digests, lock), digests=digests, memo=known)


def _read_lock(root: Path) -> bytes | None:
    path = root / LOCK_FILE
    return path.read_bytes() if path.is_file() else None
