"""Is the output tree on disk exactly what a recorded compile produced? Read-only.

The same question `mtlsc check` answers with `write.plan` (docs/output.md), asked of a
recorded manifest (path -> SHA-256 and size) instead of the compiled bytes:

- every recorded file of an output directory is a regular file with the recorded content
  (its hash taken from the write stage's hash manifest while the file's dev/inode/size/mtime/
  ctime still match, read and hashed otherwise);
- no other file of an output directory is one mtlsc owns (starts with the generated-code
  header); foreign files, links and special files are left alone, as `check` leaves them;
- with every cluster compiled, no generated file sits elsewhere below `--overlays`;
- loose files (mtlsc.lock) hold the recorded content.

Anything else (a missing or extra generated file, an edit, a directory in the way, an
unreadable entry) answers False, and the caller runs the full `check`, which reports it.

Most lookups are answered before that, by an output directory's **fingerprint**: a SHA-256
over the sorted name and identity (dev/inode/size/mtime/ctime) of every entry below it
except directories. A compile records it from the hash manifest it has just saved, when the
manifest vouches for every compiled file with its recorded content (`fingerprint_of`); a
lookup scans the directory and compares (`fingerprint`). Equal fingerprints mean the same
entries with the same identities as the manifest's, which the manifest's own rule (a file's
identity changes with any change to it) makes the recorded files; a directory holding
anything else (a foreign file, a link) never matches and is compared file by file.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from . import manifest, write
from .emit import HEADER
from .journal import OLD_PREFIX, STAGE_PREFIX

Expected = Mapping[str, tuple[str, int]]  # relative path -> (hex SHA-256, size)
_HEADER = HEADER.encode("utf-8")
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def read_at_most(path: str, limit: int, *, regular: bool = False) -> bytes | None:
    """Up to `limit` bytes of a file, never following a symlink; with `regular`, None when it
    is not a regular file."""
    fd = os.open(path, _OPEN_FLAGS)
    try:
        if regular and not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        while limit > 0:
            chunk = os.read(fd, limit)
            if not chunk:
                break
            chunks.append(chunk)
            limit -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read(path: str, limit: int) -> bytes:
    return read_at_most(path, limit) or b""


def identity_line(rel: str, key: manifest.StatKey) -> str:
    """One entry's line in a fingerprint (`fingerprint_of`)."""
    # a name never holds NUL, and the five numbers end at the newline: one decoding only
    return f"{rel}\0{key[0]}\0{key[1]}\0{key[2]}\0{key[3]}\0{key[4]}\n"


def _digest_lines(lines: list[str]) -> str:
    lines.sort()
    return digest_sorted(lines)


def digest_sorted(lines: list[str]) -> str:
    """The fingerprint of a directory whose entries' lines (`identity_line`) these are, in
    sorted order."""
    return hashlib.sha256("".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def fingerprint_of(identities: Iterable[tuple[str, manifest.StatKey]]) -> str:
    """The fingerprint of a directory whose only non-directory entries have these names
    (relative) and identities."""
    return _digest_lines([identity_line(rel, key) for rel, key in identities])


def fingerprint(root: Path, unit: str) -> str | None:
    """The fingerprint of the output directory `unit` as it is now (None: not a directory)."""
    base = os.path.join(os.fspath(root), unit)
    if not stat.S_ISDIR(os.lstat(base).st_mode):
        return None
    # `identity_line(rel, stat_key(st))` spelled out: two calls per file cost a tenth of the scan
    # (tests/test_run_record_fast.py pins that both give the same fingerprint)
    return _digest_lines([f"{rel}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
                          f"\0{st.st_ctime_ns}\n" for rel, st in _entries(base)])


def scan_lines(root: Path, unit: str) -> dict[str, str] | None:
    """Every non-directory entry below the output directory `unit` with its line in the
    fingerprint (`identity_line`), as `fingerprint` sees them (None: not a directory)."""
    base = os.path.join(os.fspath(root), unit)
    try:
        if not stat.S_ISDIR(os.lstat(base).st_mode):
            return None
        # `stat_line` spelled out: a call per file is measurable in a 36,000-file scan
        return {rel: f"{rel}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}"
                     f"\0{st.st_ctime_ns}\n" for rel, st in _entries(base)}
    except OSError:
        return None


def stat_line(rel: str, st: os.stat_result) -> str:
    """`identity_line` of an entry from its `lstat`."""
    return f"{rel}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n"


SKIPPED = (STAGE_PREFIX, OLD_PREFIX)  # names no scan looks at: an interrupted write's leftovers


def _entries(base: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry below the directory `base` but directories (relative name, `lstat`),
    leaving out an interrupted write's leftovers (looked at apart). Each directory is opened
    once and its entries are looked up relative to it: a path walk per file was a tenth of
    the scan of a 36,000-file tree."""
    todo = [""]
    skip = SKIPPED
    is_dir = stat.S_ISDIR
    lstat = os.lstat
    while todo:
        rel_dir = todo.pop()
        prefix = rel_dir + "/" if rel_dir else ""
        # O_NOFOLLOW: a directory replaced by a link since its `lstat` is not followed
        fd = os.open(os.path.join(base, rel_dir) if rel_dir else base, _DIR_FLAGS)
        try:
            with os.scandir(fd) as it:
                names = [entry.name for entry in it]
            for name in names:
                if name.startswith(skip):
                    continue
                st = lstat(name, dir_fd=fd)
                if is_dir(st.st_mode):
                    todo.append(prefix + name)
                else:
                    yield prefix + name, st
        finally:
            os.close(fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def unit_same(root: Path, unit: str, expected: Expected) -> bool:
    """One output directory holds exactly the expected generated files."""
    base = os.path.join(os.fspath(root), unit)
    try:
        if not stat.S_ISDIR(os.lstat(base).st_mode):
            return False  # a file or link in the way
    except FileNotFoundError:
        return not expected
    known = manifest.load(root, unit)
    seen = 0
    is_reg = stat.S_ISREG
    for rel, st in _entries(base):
        mode = st.st_mode
        want = expected.get(rel)
        vouched = known.get(rel)
        if vouched is not None and vouched.key != (st.st_dev, st.st_ino, st.st_size,
                                                   st.st_mtime_ns, st.st_ctime_ns):
            vouched = None
        if want is None:
            if not is_reg(mode):
                continue  # carried along untouched by `compile`
            if vouched.owned if vouched is not None else \
                    _read(os.path.join(base, rel), len(_HEADER)) == _HEADER:
                return False  # a stale generated file: `check` reports it
        elif not is_reg(mode) or st.st_size != want[1] or want[0] != (
                vouched.digest if vouched is not None else
                manifest.digest(_read(os.path.join(base, rel), want[1] + 1))):
            return False
        else:
            seen += 1
    return seen == len(expected)


def loose_same(root: Path, expected: Expected) -> bool:
    for rel, (digest, size) in expected.items():
        path = os.path.join(os.fspath(root), rel)
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            return False
        if manifest.digest(_read(path, size + 1)) != digest:
            return False
    return True


def stale_elsewhere(root: Path, units: Sequence[str], prune: Sequence[str]) -> bool:
    """A generated file below `prune` outside every output directory (what `write.plan`
    deletes as stale when every cluster is compiled)."""
    loose: list[str] = []
    return bool(write.stale_units(root, sorted(set(units)), prune, loose) or loose)


def tree_same(root: Path, dirs: Sequence[str],
              expected: Callable[[], Mapping[str, Expected] | None], loose: Expected,
              prune: Sequence[str], fingerprints: Mapping[str, tuple[str, int]],
              scanned: Callable[[Sequence[str]], Mapping[str, str | None]] | None = None
              ) -> bool:
    """The whole output tree is as recorded (any filesystem error: not the same): each
    output directory of `dirs` by its fingerprint when one was recorded (with the number of
    files it covers), else file by file against `expected()` (the recorded files; None when
    they cannot be read: not the same). `scanned`: how to get the directories'
    fingerprints, when something has scanned them already (`delta.live_scan`)."""
    try:
        now = scanned(sorted(fingerprints)) if scanned is not None else \
            scan_all(root, {unit: count for unit, (_, count) in fingerprints.items()})

        def same(unit: str) -> bool:
            recorded = fingerprints.get(unit)
            if recorded is not None and now.get(unit) == recorded[0]:
                return True
            files = expected()
            return files is not None and unit in files and unit_same(root, unit, files[unit])

        return (all(same(unit) for unit in dirs)
                and loose_same(root, loose)
                and not stale_elsewhere(root, list(dirs), prune))
    except OSError:
        return False


PARALLEL_MIN = 4096  # files below which fingerprints are taken in this process alone


def scan_all(root: Path, units: Mapping[str, int]) -> dict[str, str | None]:
    """The `fingerprint` of each output directory of `units` (with the number of files each
    is expected to hold). Scanning is mostly `lstat`, kernel time that a second CPU halves:
    with more than one CPU for this process and enough files, a forked child takes about half
    of the directories and sends their fingerprints back through a pipe. Anything wrong with
    the child (it failed, died, or said something else) and its share is scanned here."""
    order = sorted(units, key=lambda u: (-units[u], u))
    if len(order) < 2 or sum(units.values()) < PARALLEL_MIN or _cpus() < 2:
        return {unit: fingerprint(root, unit) for unit in order}
    mine: list[str] = []
    theirs: list[str] = []
    loads = [0, 0]
    for unit in order:  # the larger directories first, each to the less loaded side
        side = 0 if loads[0] <= loads[1] else 1
        (mine, theirs)[side].append(unit)
        loads[side] += units[unit]
    child = _fork_scan(root, theirs)
    try:
        found = {unit: fingerprint(root, unit) for unit in mine}
    finally:  # the child is waited for even when this side fails
        sent = child() if child is not None else None
    if sent is None or sorted(sent) != sorted(theirs):
        sent = {unit: fingerprint(root, unit) for unit in theirs}
    return {**found, **sent}


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _fork_scan(root: Path, units: Sequence[str]
               ) -> Callable[[], dict[str, str | None] | None] | None:
    """Fork a child that prints `unit NUL fingerprint` lines for `units`; returns how to
    collect them (None: no child could be started)."""
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        return None
    if pid == 0:  # the child: scan, write, and leave without running any exit handler
        status = 1
        try:
            os.close(read_end)
            lines = "".join(f"{unit}\0{fingerprint(root, unit) or ''}\n" for unit in units)
            with os.fdopen(write_end, "wb") as out:
                out.write(lines.encode("utf-8", "surrogateescape"))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)

    def collect() -> dict[str, str | None] | None:
        with os.fdopen(read_end, "rb") as fh:
            data = fh.read()
        _, status = os.waitpid(pid, 0)
        if status != 0:
            return None
        sent: dict[str, str | None] = {}
        for line in data.decode("utf-8", "surrogateescape").splitlines():
            unit, _, value = line.partition("\0")
            sent[unit] = value or None
        return sent

    return collect
