"""The output directories' identities, taken by a forked child while a delta compile goes on.

A delta compile must know that each output directory is exactly what its base recorded:
every entry's `lstat` identity, hashed into the directory's fingerprint (`run_disk`), must
match. That scan is kernel time proportional to the fleet (about 0.14 s for 36,000 files),
so a child process takes it while the parent imports the compiler and compiles the edit,
then keeps every identity it saw and answers the parent over two pipes:

- `fingerprints()`: each directory's fingerprint as scanned;
- `identities(unit, names)`: the identities of some of its files as scanned;
- `refingerprint(touched)`: after the write, the fingerprint of each directory with the
  named files looked at again (everything else is the same inode as scanned, so its
  identity is unchanged: see `spare_write`).

Without a second CPU, or when anything about the child goes wrong, the parent does the same
work itself (`InProcess`); the answers are the same.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..manifest import StatKey
from ..run_disk import fingerprint_of, scan_identities

Identities = dict[str, StatKey]  # relative path -> identity, every non-directory entry


class InProcess:
    """The scan, done in this process when asked for."""

    def __init__(self, root: Path, units: Sequence[str]) -> None:
        self.root, self.units = root, list(units)
        self.seen: dict[str, Identities | None] | None = None

    def _seen(self) -> dict[str, Identities | None]:
        if self.seen is None:
            self.seen = {unit: scan_identities(self.root, unit) for unit in self.units}
        return self.seen

    def fingerprints(self) -> dict[str, str | None]:
        return {unit: None if ids is None else fingerprint_of(ids.items())
                for unit, ids in self._seen().items()}

    def identities(self, unit: str, names: Iterable[str]) -> dict[str, StatKey]:
        ids = self._seen().get(unit) or {}
        return {name: ids[name] for name in names if name in ids}

    def refingerprint(self, touched: Mapping[str, Iterable[str]]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for unit, names in touched.items():
            ids = self._seen().get(unit)
            if ids is None:
                out[unit] = None
                continue
            ids = dict(ids)
            base = os.path.join(os.fspath(self.root), unit)
            try:
                for name in names:
                    st = os.lstat(os.path.join(base, name))
                    ids[name] = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                 st.st_ctime_ns)
            except OSError:
                out[unit] = None
                continue
            out[unit] = fingerprint_of(ids.items())
        return out

    def close(self) -> None:
        return None


class Forked(InProcess):
    """The scan in a forked child, which answers requests (one JSON line each way)."""

    def __init__(self, root: Path, units: Sequence[str]) -> None:
        super().__init__(root, units)
        ask_r, ask_w = os.pipe()
        tell_r, tell_w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            for fd in (ask_r, ask_w, tell_r, tell_w):
                os.close(fd)
            raise
        if pid == 0:  # the child: scan, answer, and leave without running any exit handler
            status = 1
            try:
                os.close(ask_w)
                os.close(tell_r)
                self._serve(os.fdopen(ask_r, "rb"), os.fdopen(tell_w, "wb"))
                status = 0
            finally:
                os._exit(status)
        os.close(ask_r)
        os.close(tell_w)
        self.pid = pid
        self.ask = os.fdopen(ask_w, "wb")
        self.tell = os.fdopen(tell_r, "rb")
        self.broken = False

    def _serve(self, ask: Any, tell: Any) -> None:
        self._seen()
        for line in ask:
            request = json.loads(line)
            method = request[0]
            if method == "fingerprints":
                answer: Any = InProcess.fingerprints(self)
            elif method == "identities":
                answer = {k: list(v) for k, v in
                          InProcess.identities(self, request[1], request[2]).items()}
            else:
                answer = InProcess.refingerprint(self, request[1])
            tell.write(json.dumps(answer).encode("utf-8", "surrogateescape") + b"\n")
            tell.flush()

    def _call(self, *request: Any) -> Any:
        if self.broken:
            return None
        try:
            self.ask.write(json.dumps(request).encode("utf-8", "surrogateescape") + b"\n")
            self.ask.flush()
            line = self.tell.readline()
            return json.loads(line) if line else None
        except (OSError, ValueError):
            self.broken = True
            return None

    def fingerprints(self) -> dict[str, str | None]:
        found = self._call("fingerprints")
        if not isinstance(found, dict) or sorted(found) != sorted(self.units):
            return InProcess.fingerprints(self)
        return {str(k): None if v is None else str(v) for k, v in found.items()}

    def identities(self, unit: str, names: Iterable[str]) -> dict[str, StatKey]:
        wanted = list(names)
        found = self._call("identities", unit, wanted)
        if not isinstance(found, dict):
            return InProcess.identities(self, unit, wanted)
        return {str(k): (int(v[0]), int(v[1]), int(v[2]), int(v[3]), int(v[4]))
                for k, v in found.items()}

    def refingerprint(self, touched: Mapping[str, Iterable[str]]) -> dict[str, str | None]:
        asked = {unit: list(names) for unit, names in touched.items()}
        found = self._call("refingerprint", asked)
        if not isinstance(found, dict) or sorted(found) != sorted(asked):
            return InProcess.refingerprint(self, asked)
        return {str(k): None if v is None else str(v) for k, v in found.items()}

    def close(self) -> None:
        for stream in (self.ask, self.tell):
            with contextlib.suppress(OSError):
                stream.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def start(root: Path, units: Sequence[str]) -> InProcess:
    """A child scanning `units` from now on (this process, with one CPU or no fork)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    if cpus >= 2 and units:
        try:
            return Forked(root, units)
        except OSError:
            pass
    return InProcess(root, units)
