"""The output directories' identities for a delta compile, scanned once and kept.

A delta compile must know that each output directory is exactly what its base recorded:
every entry's `lstat` identity, hashed into the directory's fingerprint (`run_disk`), must
match. That scan is kernel time proportional to the fleet (about 0.13 s for 36,000 files),
so `mtlsc compile` starts it in a forked child before anything else (`early`), over every
directory below the overlays directory, while the parent reads its inputs and another child
compiles the edit. The scan keeps every identity it saw:

- `fingerprints(units)`: each directory's fingerprint as scanned;
- `identities(unit, names)`: the identities of some of its files as scanned;
- `refingerprint(touched, gone)`: after the write, each directory's fingerprint with the
  files written or linked looked at again and the removed ones left out. Every other file
  of the new tree is the inode that was scanned (`spare.write` keeps a spare file only when
  it is the live file's inode), so its identity is unchanged.

A directory the child was not asked to scan, and everything when the child fails, is
scanned in this process; the answers are the same.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..manifest import StatKey
from ..run_disk import digest_sorted, identity_line, scan_lines
from . import forked


class Scan:
    """The scan of some output directories, each done on first use."""

    def __init__(self, root: Path, units: Sequence[str] = ()) -> None:
        self.root = root
        self.lines: dict[str, dict[str, str] | None] = {}  # unit -> rel -> identity line
        self.prints: dict[str, str | None] = {}
        self.units = list(units)
        self.pending: dict[str, str | None] | None = None

    def _lines(self, unit: str) -> dict[str, str] | None:
        if unit not in self.lines:
            self.lines[unit] = scan_lines(self.root, unit)
        return self.lines[unit]

    def fingerprints(self, units: Sequence[str] | None = None) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for unit in self.units if units is None else units:
            if unit not in self.prints:
                lines = self._lines(unit)
                self.prints[unit] = None if lines is None else \
                    digest_sorted(sorted(lines.values()))
            out[unit] = self.prints[unit]
        return out

    def identities(self, unit: str, names: Iterable[str]) -> dict[str, StatKey]:
        lines = self._lines(unit) or {}
        out: dict[str, StatKey] = {}
        for name in names:
            line = lines.get(name)
            if line is not None:
                n = line[len(name) + 1:-1].split("\0")
                out[name] = (int(n[0]), int(n[1]), int(n[2]), int(n[3]), int(n[4]))
        return out

    def refingerprint(self, touched: Mapping[str, Iterable[str]],
                      gone: Mapping[str, Iterable[str]] | None = None
                      ) -> dict[str, str | None]:
        """After a write: each directory's fingerprint with the `touched` files looked at
        again and the `gone` ones left out (every other file is the inode scanned)."""
        out: dict[str, str | None] = {}
        for unit, names in touched.items():
            lines = self._lines(unit)
            if lines is None:
                out[unit] = None
                continue
            lines = dict(lines)
            for name in (gone or {}).get(unit, ()):
                lines.pop(name, None)
            base = os.path.join(os.fspath(self.root), unit)
            try:
                for name in names:
                    st = os.lstat(os.path.join(base, name))
                    lines[name] = identity_line(name, (st.st_dev, st.st_ino, st.st_size,
                                                       st.st_mtime_ns, st.st_ctime_ns))
            except OSError:
                out[unit] = None
                continue
            out[unit] = digest_sorted(sorted(lines.values()))
        return out

    def ask_refingerprint(self, touched: Mapping[str, Iterable[str]],
                          gone: Mapping[str, Iterable[str]] | None = None) -> None:
        """`refingerprint`, answered by `refingerprinted` (a child works on it meanwhile)."""
        self.pending = Scan.refingerprint(self, touched, gone)

    def refingerprinted(self) -> dict[str, str | None]:
        found, self.pending = self.pending, None
        return found or {}

    def close(self) -> None:
        return None


class Forked(Scan):
    """The scan of `units` in a forked child, started at once; the child answers requests
    (one JSON line each way) and leaves when the parent closes its end."""

    def __init__(self, root: Path, units: Sequence[str]) -> None:
        super().__init__(root, units)
        # the child: scan, answer, and leave without running any exit handler
        child = forked.fork(lambda ask, tell: self._serve(os.fdopen(ask, "rb"),
                                                          os.fdopen(tell, "wb")))
        self.pid = child.pid
        self.ask = os.fdopen(child.ask, "wb")
        self.tell = os.fdopen(child.tell, "rb")
        self.broken = False
        self.scanned = set(units)
        self.asked: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
        self.sent = False

    def _serve(self, ask: Any, tell: Any) -> None:
        for unit in self.units:
            self._lines(unit)
        for line in ask:
            request = json.loads(line)
            if request[0] == "fingerprints":
                answer: Any = Scan.fingerprints(self, request[1])
            elif request[0] == "identities":
                answer = {k: list(v) for k, v in
                          Scan.identities(self, request[1], request[2]).items()}
            else:
                answer = Scan.refingerprint(self, request[1], request[2])
            tell.write(json.dumps(answer).encode("utf-8", "surrogateescape") + b"\n")
            tell.flush()

    def _send(self, *request: Any) -> bool:
        if self.broken:
            return False
        try:
            self.ask.write(json.dumps(request).encode("utf-8", "surrogateescape") + b"\n")
            self.ask.flush()
            return True
        except (OSError, ValueError):
            self.broken = True
            return False

    def _receive(self) -> Any:
        try:
            line = self.tell.readline()
            return json.loads(line) if line else None
        except (OSError, ValueError):
            self.broken = True
            return None

    def _call(self, *request: Any) -> Any:
        return self._receive() if self._send(*request) else None

    def fingerprints(self, units: Sequence[str] | None = None) -> dict[str, str | None]:
        wanted = list(self.units if units is None else units)
        theirs = [u for u in wanted if u in self.scanned]
        found = self._call("fingerprints", theirs) if theirs else {}
        if not isinstance(found, dict) or sorted(found) != sorted(theirs):
            return Scan.fingerprints(self, wanted)
        out = {str(k): None if v is None else str(v) for k, v in found.items()}
        mine = [u for u in wanted if u not in self.scanned]
        return {**out, **Scan.fingerprints(self, mine)}

    def identities(self, unit: str, names: Iterable[str]) -> dict[str, StatKey]:
        wanted = list(names)
        found = self._call("identities", unit, wanted) if unit in self.scanned else None
        if not isinstance(found, dict):
            return Scan.identities(self, unit, wanted)
        return {str(k): (int(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]))
                for k, v in found.items()}

    def refingerprint(self, touched: Mapping[str, Iterable[str]],
                      gone: Mapping[str, Iterable[str]] | None = None
                      ) -> dict[str, str | None]:
        self.ask_refingerprint(touched, gone)
        return self.refingerprinted()

    def ask_refingerprint(self, touched: Mapping[str, Iterable[str]],
                          gone: Mapping[str, Iterable[str]] | None = None) -> None:
        self.asked = ({unit: list(names) for unit, names in touched.items()},
                      {unit: list(names) for unit, names in (gone or {}).items()})
        self.sent = all(unit in self.scanned for unit in self.asked[0]) and \
            self._send("refingerprint", *self.asked)

    def refingerprinted(self) -> dict[str, str | None]:
        asked, dropped = self.asked
        found = self._receive() if self.sent else None
        if isinstance(found, dict) and sorted(found) == sorted(asked):
            return {str(k): None if v is None else str(v) for k, v in found.items()}
        return Scan.refingerprint(self, asked, dropped)

    def close(self) -> None:
        for stream in (self.ask, self.tell):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def subdirectories(root: Path, top: str) -> list[str]:
    """`top` and the directories right below it (root-relative): where output directories
    usually are (`overlays/<cluster>`)."""
    try:
        with os.scandir(root / top) as it:
            return sorted(f"{top}/{e.name}" for e in it if e.is_dir(follow_symlinks=False))
    except OSError:
        return []


_PRESET: dict[str, Any] = {}


def preset(root: str, found: Mapping[str, tuple[dict[str, str], str]]) -> None:
    """What `mtlsc serve` knows of the output directories below `root` (its real path) as
    this worker starts (`serve.watch`): unit -> (lines, fingerprint), as a scan now reads
    them. `start` uses it instead of scanning when it covers every unit asked for."""
    _PRESET.clear()
    _PRESET.update(root=root, found=dict(found))


def preset_used() -> bool:
    """Whether `start` took the server's scan (`preset`) instead of scanning."""
    return bool(_PRESET.get("used"))


def start(root: Path, units: Sequence[str]) -> Scan:
    """A child scanning `units` from now on (none: this process, on first use)."""
    found = _PRESET.get("found")
    if found is not None and units and all(u in found for u in units) and \
            os.path.realpath(root) == _PRESET["root"]:
        scan = Scan(root, units)
        for unit in units:
            scan.lines[unit], scan.prints[unit] = found[unit]
        _PRESET["used"] = True
        return scan
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus >= 2 and units:
        try:
            return Forked(root, units)
        except OSError:
            pass
    return Scan(root, units)
