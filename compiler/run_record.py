"""The run record: a whole-run memo that lets a no-change `check` or `compile` skip the compile.

After a successful `compile`, one entry in `.mtlsc/cache/run/` records, under a SHA-256 key of
everything the run's result is a function of (`run_key`), what the run produced: its
diagnostics (as data), its exit status, the manifest of the files it compiled (path -> SHA-256
and size), the certificate material it fetched (`run_materials`) and its clock horizon
(`run_horizon`). A later `check` or `compile` with the same key replays the record instead of
compiling, but only after

1. the clock is still before the horizon (no certificate or waiver verdict can have changed),
2. no interrupted write is pending (the full run reports `InterruptedWrite` or recovers),
3. the certificate material reads back equal, through the same sources (Vault included:
   its state is outside the key, so it is always read again),
4. the output tree on disk is exactly the recorded manifest (`run_disk`, stat-trusted).

Anything missing, different or unexpected means the full run, unchanged. Entries are stored
like render-cache entries (`cache.EntryStore`: self-keyed, payload SHA-256, JSON, temp +
rename; a corrupt or foreign entry is ignored). Only the newest `KEEP` records are kept.

The lookup imports little on purpose (no schemas, no loader, no renderer, no jsonschema, no
cryptography unless a Vault source needs it): see docs/scale.md#the-run-record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import policy_memo
from .cache_store import CACHE_DIR, EntryStore
from .diagnostics import Diagnostic, Location, Related, Severity, Span, exit_code
from .manifest import Written, digest
from .policy_files import digests_of
from .run_inputs import LOCK_FILE, Inputs, Settings

if TYPE_CHECKING:
    from .pipeline import Result
    from .run_materials import Reread

KIND = "run"
FILES_KIND = "run-files"  # the recorded files of each record, apart (see `_Units`)
VERSION = 4  # 4: the diagnostics as one JSON text (`diagnostics_text`)
KEEP = 6  # newest records kept in .mtlsc/cache/run
@dataclass(slots=True)
class Lookup:
    """What looking up the run record found: on a hit, the diagnostics and files to replay; on
    a miss, why."""

    diagnostics: list[Diagnostic] | None = None  # set on a hit
    files: list[str] = field(default_factory=list)  # every compiled path, sorted
    why: str = ""  # on a miss: why (tests and --debug readers)
    reread: Reread | None = None  # sources the lookup opened, for the full run
    record: dict[str, Any] | None = None  # on a hit: the record itself (a delta compile)

    @property
    def hit(self) -> bool:
        return self.diagnostics is not None


# --- diagnostics as data ---------------------------------------------------------------


def _loc(loc: Location | None) -> list[Any] | None:
    return None if loc is None else [loc.file, loc.line, loc.col]


def diagnostic_to_json(d: Diagnostic) -> dict[str, Any]:
    return {"code": d.code, "severity": d.severity.value, "message": d.message,
            "location": _loc(d.location), "hint": d.hint, "sourceFailure": d.source_failure,
            "clusters": list(d.clusters),
            "related": [[r.location.file, r.location.line, r.location.col, r.message]
                        for r in d.related]}


def diagnostics_text(diagnostics: Sequence[Diagnostic]) -> str:
    """How a record holds its diagnostics: one JSON text, which a delta compile whose
    diagnostics are its base's stores again as it is (`delta.record`), and which costs a
    replay no more to decode than the list itself."""
    return json.dumps([diagnostic_to_json(d) for d in diagnostics], ensure_ascii=False,
                      separators=(",", ":"))


def stages_text(spans: Sequence[Span]) -> str:
    """How a record holds the stages of its diagnostics (`diagnostics.stage_spans`, in the
    same order): two digits each, the first and the last stage."""
    return "".join(f"{first}{last}" for first, last in spans)


def stages_of(text: Any, count: int) -> list[Span] | None:
    """The stages `stages_text` wrote for `count` diagnostics (None: absent or not that)."""
    if not isinstance(text, str) or len(text) != 2 * count or not text.isdigit():
        return None
    return [(int(text[i]), int(text[i + 1])) for i in range(0, len(text), 2)]


def diagnostic_from_json(data: Mapping[str, Any]) -> Diagnostic:
    loc = data["location"]
    return Diagnostic(
        str(data["code"]), Severity(data["severity"]), str(data["message"]),
        None if loc is None else Location(str(loc[0]), int(loc[1]), int(loc[2])),
        None if data["hint"] is None else str(data["hint"]), bool(data["sourceFailure"]),
        tuple(str(c) for c in data["clusters"]),
        tuple(Related(Location(str(r[0]), int(r[1]), int(r[2])), str(r[3]))
              for r in data["related"]))


# --- lookup ----------------------------------------------------------------------------


def _parents(dirs: Sequence[str]) -> list[str]:
    return sorted({d.rpartition("/")[0] for d in dirs})


def lookup(inputs: Inputs, settings: Settings, now: datetime, *,
           names: bool = True, record: str | None = None, raw: Any = None,
           scanned: Callable[[Sequence[str]], Mapping[str, str | None]] | None = None,
           ) -> Lookup:
    """Replay the record of these inputs if everything it depends on is unchanged. `names`:
    the hit lists every compiled file (`compile` prints them; `check` does not). `record`:
    check the record of that key instead (a delta compile's base: everything but some policy
    files is as it recorded), `raw`: that record as already read;
    `scanned`: how to get the output directories' fingerprints when something scans them
    already (`delta.live_scan`)."""
    from . import journal, run_disk, run_materials

    root = settings.root
    store = EntryStore(root / CACHE_DIR, writable=False)
    key = inputs.key if record is None else record
    if raw is None:
        raw = store.get(KIND, key)
    if not isinstance(raw, dict) or raw.get("version") != VERSION:
        return Lookup(why="no record")
    try:
        until = raw["validUntil"]
        if until is not None and not now < datetime.fromisoformat(until):
            return Lookup(why="past the clock horizon")
        dirs = [str(d) for d in raw["dirs"]]
        loose = {str(r): (str(v[0]), int(v[1])) for r, v in raw["loose"].items()}
        text = raw["diagnostics"]
        if not isinstance(text, str):
            raise TypeError("diagnostics")
        diagnostics = [diagnostic_from_json(d) for d in json.loads(text)]
        materials = raw["materials"]
        prune = (settings.overlays,) if raw["allClusters"] else ()
        trees = {str(d): (str(f[0]), int(f[1])) for d, f in raw["trees"].items()}
        salt = str(raw.get("materialsSalt") or key)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return Lookup(why="damaged record")
    if exit_code(diagnostics) != 0 or int(raw.get("exit", -1)) != 0:
        return Lookup(why="damaged record")
    try:
        if journal.pending(root) is not None or \
                journal.leftovers(root, [*_parents(dirs), settings.overlays]):
            return Lookup(why="an interrupted write")
    except OSError:
        return Lookup(why="an interrupted write")
    if not run_materials.local_same(materials, root, salt):
        return Lookup(why="local certificate files changed")
    units = _Units(store, key, dirs)
    if not run_disk.tree_same(root, dirs, units.expected, loose, prune, trees, scanned):
        return Lookup(why="the output tree differs" if units.expected() is not None
                      else "damaged record")
    reread = run_materials.vault_same(materials, root, inputs.lock, salt)
    if not reread.same:
        return Lookup(why="Vault serves different material", reread=reread)
    files: list[str] = []
    if names:
        found = units.expected()
        if found is None:
            return Lookup(why="damaged record", reread=reread)
        files = sorted([*loose, *(f"{d}/{r}" for d, fs in found.items() for r in fs)])
    return Lookup(diagnostics, files, reread=reread, record=raw)


class _Units:
    """The recorded files of each output directory (path -> SHA-256 and size), kept in an
    entry of their own (`FILES_KIND`) and read only when a lookup needs them: the
    directories' fingerprints usually answer, and the entry is most of a record's size."""

    def __init__(self, store: EntryStore, key: str, dirs: Sequence[str]) -> None:
        self.store, self.key, self.dirs = store, key, dirs
        self.read = False
        self.found: dict[str, dict[str, tuple[str, int]]] | None = None

    def expected(self) -> dict[str, dict[str, tuple[str, int]]] | None:
        if not self.read:
            self.read = True
            self.found = expected_files(self.store, self.key, self.dirs)
        return self.found


def expected_files(store: EntryStore, key: str, dirs: Sequence[str]
                   ) -> dict[str, dict[str, tuple[str, int]]] | None:
    """The recorded files of each output directory of record `key`. A delta compile's record
    holds the files of its base's full record and what the delta changed (`patch`)."""
    raw: Any = store.get(FILES_KIND, key)
    try:
        patch = None
        if "base" in raw:
            patch = raw["patch"]
            raw = store.get(FILES_KIND, str(raw["base"]))
            if raw is None or "base" in raw:
                return None
        units = {str(d): {str(r): (str(v[0]), int(v[1])) for r, v in files.items()}
                 for d, files in raw["units"].items()}
        for unit, changed in (patch or {}).items():
            for rel, value in changed.items():
                if value is None:
                    units[str(unit)].pop(str(rel), None)
                else:
                    units[str(unit)][str(rel)] = (str(value[0]), int(value[1]))
        if sorted(units) == sorted(dirs):
            return units
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        pass
    return None


# --- recording -------------------------------------------------------------------------


class Outputs:
    """The digest and size of every compiled file, collected as the compile hands them on
    (streamed clusters never sit in `Result.files` all at once)."""

    def __init__(self) -> None:
        self.seen: dict[str, list[Any]] = {}

    def add(self, files: Mapping[str, bytes | Written]) -> None:
        for path, data in files.items():
            self.seen[path] = [data.digest, data.size] if isinstance(data, Written) else \
                [digest(data), len(data)]

    def manifest(self, output_dirs: Sequence[str]
                 ) -> tuple[dict[str, dict[str, list[Any]]], dict[str, list[Any]]]:
        """(per output directory: relative path -> entry, loose files -> entry)."""
        units: dict[str, dict[str, list[Any]]] = {d: {} for d in output_dirs}
        loose: dict[str, list[Any]] = {}
        for path, entry in self.seen.items():
            # the shortest output directory holding the path (the first in sorted order)
            cut = path.find("/")
            while cut >= 0 and path[:cut] not in units:
                cut = path.find("/", cut + 1)
            if cut < 0:
                loose[path] = entry
            else:
                units[path[:cut]][path[cut + 1:]] = entry
        return units, loose


def valid_until(result: Result, now: datetime) -> datetime | None:
    """The horizon of `result` (see `run_horizon`); `now` itself when it cannot be bounded."""
    from .guardrails import load_rules
    from .run_horizon import Validity, horizon
    from .verify import parse_pem_certificates

    if result.materials is None or result.model is None or result.policies is None:
        return now
    pems = [*result.materials.ca_bundles.values(),
            *(c.chain_pem for c in result.materials.server_certs.values())]
    validity = [Validity(c.not_valid_before_utc, c.not_valid_after_utc)
                for pem in pems for c in parse_pem_certificates(pem)[0]]
    windows = {c.target.expiry_warning for c in result.model.clusters}
    rules, _ = load_rules(result.policies)
    return horizon(now, validity, windows, [w.expires for w in result.waivers],
                   view_days=bool(rules))


def save(inputs: Inputs, settings: Settings, result: Result,
         diagnostics: Sequence[Diagnostic], now: datetime, outputs: Outputs) -> bool:
    """Record a successful compile (`diagnostics`: before writing added any; `outputs`: every
    file it compiled). False: not recorded (a failed or unrecordable run, or a compile that
    changed the lock it was keyed by)."""
    from . import run_materials

    lock = outputs.seen.get(LOCK_FILE)
    if not result.ok or exit_code(diagnostics) != 0 or lock != (
            None if inputs.lock is None else [hashlib.sha256(inputs.lock).hexdigest(),
                                              len(inputs.lock)]):
        return False
    materials = run_materials.record(result, settings.root, inputs.key)
    until = valid_until(result, now)
    if materials is None or (until is not None and until <= now):
        return False
    units, loose = outputs.manifest(result.output_dirs)
    trees = {unit: [found, len(files)] for unit, files in units.items()
             if (found := _fingerprint(settings.root, unit, files)) is not None}
    store = EntryStore(settings.root / CACHE_DIR)
    store.put(FILES_KIND, inputs.key, {"units": units})  # first: a record needs its files
    store.put(KIND, inputs.key, {
        "version": VERSION, "validUntil": until.astimezone(UTC).isoformat() if until else None,
        "exit": 0, "diagnostics": diagnostics_text(diagnostics),
        "stages": stages_text(result.stages) if len(result.stages) == len(diagnostics)
        else None,
        "dirs": sorted(units), "loose": loose, "trees": trees,
        "allClusters": result.all_clusters,
        "materials": materials})
    prune(settings.root / CACHE_DIR / KIND)
    prune(settings.root / CACHE_DIR / FILES_KIND)
    if inputs.clock is not None and inputs.texts is not None:
        policy_memo.save(settings.root / CACHE_DIR, settings.root, settings.policies,
                         inputs.identities, digests_of(inputs.texts), inputs.clock)
    return True


def _fingerprint(root: Path, unit: str, files: Mapping[str, list[Any]]) -> str | None:
    """The output directory's fingerprint (`run_disk`), from the hash manifest the write has
    just saved, when it vouches for every compiled file with the compiled content."""
    from . import manifest, run_disk

    known = manifest.load(root, unit)
    identities = []
    for rel, (sha, size) in files.items():
        entry = known.get(rel)
        if entry is None or entry.digest != sha or entry.key[2] != size:
            return None
        identities.append((rel, entry.key))
    return run_disk.fingerprint_of(identities) if identities else None


def prune(directory: Path, keep: int = KEEP) -> None:
    """Keep the newest `keep` records (a record holds a fleet's manifest: megabytes), and no
    empty key directory (`<key[:2]>/`): every delta compile walks them all."""
    found: list[tuple[int, str]] = []
    try:
        with os.scandir(directory) as top:
            subdirs = [entry.path for entry in top if entry.is_dir(follow_symlinks=False)]
        for sub in subdirs:
            with os.scandir(sub) as it:
                names = [(entry.stat(follow_symlinks=False).st_mtime_ns, entry.path)
                         for entry in it if not entry.name.startswith(".")]
            if names:
                found += names
            else:
                with contextlib.suppress(OSError):
                    os.rmdir(sub)  # fails when a writer has just put an entry there
        found.sort(reverse=True)
        for _, path in found[keep:]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            with contextlib.suppress(OSError):
                os.rmdir(os.path.dirname(path))
    except OSError:
        return
