"""Finding and reading policy files: the loader's only contact with the disk.

Every `*.yaml`/`*.yml` below the policies directory is read, in sorted order. Policy files come
from pull requests, so nothing is opened before it is known to be safe to open:

- each entry is `lstat`ed first; a FIFO, device or socket is refused (`SpecialFile`) without being
  opened (opening a FIFO would block, reading a device could never end);
- a symbolic link is followed only when its target lies inside the repository root
  (`LinkOutsideRepository` otherwise) and exists (`DanglingLink`); directory links are not followed;
- a file larger than `MAX_FILE_BYTES` is refused from its size (`FileTooLarge`) and every read is
  bounded, so a file that grows while it is read cannot exhaust memory;
- a file that cannot be read (permissions, I/O error, a link loop) is `UnreadableFile` (exit 3);
- the bytes must be UTF-8 without control characters (`YAMLEncoding`, at the first bad byte).

Each problem is a diagnostic located at the file; nothing is skipped silently. The result is a
mapping from display path (relative to the root) to text, which also carries these problems so
that `load_texts` reports them with everything else.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from .diagnostics import Diagnostic, Location, error
from .policy_text import MAX_FILE_BYTES, decode, too_large

SUFFIXES = (".yaml", ".yml")
StatKey = tuple[int, int, int, int, int]  # device, inode, size, mtime and ctime (ns)
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


_T = TypeVar("_T")


class Found(dict[str, _T]):
    """What was found of each policy file by display path, plus the problems of the entries
    that could not be read."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[Diagnostic] = []


class PolicyFiles(Found[str]):
    """Policy texts by display path, plus the problems of the entries that could not be read."""


class PolicyDigests(Found[bytes]):
    """The SHA-256 of every policy file's text (`text_digest`) by display path, plus the
    problems of the entries that could not be read: what a run record is keyed by."""


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def digests_of(texts: PolicyFiles) -> PolicyDigests:
    out = PolicyDigests()
    out.update((name, text_digest(text)) for name, text in texts.items())
    out.problems = list(texts.problems)
    return out


def read_policy_files(policies_dir: Path, root: Path, *,
                      identities: dict[str, StatKey] | None = None) -> PolicyFiles:
    """Every policy file below `policies_dir`, keyed by its path relative to `root`.

    A link inside the repository is shown under its target's path, so a file linked into the
    policies directory next to itself is read once. `identities` receives the identity
    (`stat_key`) of every regular file read in place (not through a link), as it was opened.
    """
    def take(path: str, shown: str, real_root: str) -> tuple[str, str | Diagnostic]:
        return _taken(_read(path, shown, real_root, identities), shown, real_root)

    out = PolicyFiles()
    _gather(policies_dir, root, take, out)
    return out


def digest_policy_files(policies_dir: Path, root: Path,
                        known: Mapping[str, tuple[StatKey, bytes]]) -> PolicyDigests:
    """`digests_of(read_policy_files(...))`, without reading the files `known` vouches for:
    a regular file whose identity (`lstat`) is exactly the one recorded gets the recorded
    digest; every other entry is read (and checked) as `read_policy_files` reads it."""
    def take(path: str, shown: str, real_root: str) -> tuple[str, bytes | Diagnostic]:
        vouched = known.get(shown)
        if vouched is not None:
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and stat_key(st) == vouched[0]:
                    return shown, vouched[1]
            except OSError:
                pass  # read below, which says why it cannot be read
        shown, value = _taken(_read(path, shown, real_root), shown, real_root)
        return shown, text_digest(value) if isinstance(value, str) else value

    out = PolicyDigests()
    _gather(policies_dir, root, take, out)
    return out


def read_named(root: Path, names: Iterable[str], identities: dict[str, StatKey]
               ) -> dict[str, str] | None:
    """The texts of some policy files, by display path (a plain path below `root`), read as
    `read_policy_files` reads them; None when one is not a regular file with a readable text
    (the full compile then says why). `identities` receives each file's identity as opened."""
    real_root = os.path.realpath(root)
    out: dict[str, str] = {}
    for name in names:
        value = _read(os.path.join(real_root, name), name, real_root, identities)
        if not isinstance(value, str):
            return None
        out[name] = value
    return out


def stat_key(st: os.stat_result) -> StatKey:
    """A file's identity: any change to the file (content, `touch`, `chmod`) changes it."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _gather(policies_dir: Path, root: Path,
            take: Callable[[str, str, str], tuple[str, _T | Diagnostic]],
            out: Found[_T]) -> None:
    """Fill `out` with `take(path, shown, real_root)` of every policy-file entry, in the order
    of display paths."""
    real_root = os.path.realpath(root)
    found: dict[str, _T | Diagnostic] = {}
    paths, unlisted = _walk(os.path.realpath(policies_dir))
    for path in paths:
        shown, value = take(path, _display(path, real_root), real_root)
        found[shown] = value
    for directory, exc in unlisted:
        shown = _display(directory, real_root)
        found[shown] = error("UnreadableFile", f"cannot list {shown}: {exc.strerror or exc}",
                             Location(shown, 1, 1), "check the directory's permissions",
                             source_failure=True)
    for shown in sorted(found):
        value = found[shown]
        if isinstance(value, Diagnostic):
            out.problems.append(value)
        else:
            out[shown] = value


def _taken(value: str | Diagnostic | tuple[str, str], shown: str,
           real_root: str) -> tuple[str, str | Diagnostic]:
    """A link's text is shown under its target's path."""
    if isinstance(value, tuple):
        return _display(value[0], real_root), value[1]
    return shown, value


def _walk(top: str) -> tuple[list[str], list[tuple[str, OSError]]]:
    """Policy-file entries below `top` (directory links are not followed), and the
    directories that could not be listed."""
    paths: list[str] = []
    unlisted: list[tuple[str, OSError]] = []
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except FileNotFoundError:
            continue  # a missing --policies directory is NoPolicies, reported by the caller
        except OSError as exc:
            unlisted.append((directory, exc))
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.name.endswith(SUFFIXES):
                paths.append(entry.path)
    return paths, unlisted


def _display(path: str, real_root: str) -> str:
    if os.sep == "/" and path.startswith(real_root) and path[len(real_root):len(real_root) + 1] \
            == "/" and "/." not in path and "//" not in path:
        return path[len(real_root) + 1:]  # a plain path below the root (walks give these)
    rel = os.path.relpath(path, real_root)
    return Path(path).as_posix() if rel.startswith("..") else Path(rel).as_posix()


def _inside(path: str, real_root: str) -> bool:
    return path == real_root or path.startswith(real_root.rstrip(os.sep) + os.sep)


def _read(path: str, shown: str, real_root: str,
          identities: dict[str, StatKey] | None = None) -> str | Diagnostic | tuple[str, str]:
    """The file's text (with its target's path for a link), or why it cannot be used;
    `identities` gets a regular file's identity as opened."""
    at = Location(shown, 1, 1)
    try:
        info = os.lstat(path)
        target = None
        if stat.S_ISLNK(info.st_mode):
            target = os.path.realpath(path)
            written = os.readlink(path)  # messages name what the link says, not machine paths
            if not _inside(target, real_root):
                return error("LinkOutsideRepository", f"{shown} is a symbolic link to {written}, "
                             "which leads outside the repository; it was not read", at,
                             "commit the file itself instead of a link to it")
            try:
                info = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                return _dangling(shown, f"{written}, which does not exist", at)
            except OSError as exc:
                if exc.errno != errno.ELOOP:
                    raise
                return _dangling(shown, "itself (a loop of links)", at)
            path = target
        if not stat.S_ISREG(info.st_mode):
            return _special(info.st_mode, shown, at)
        if info.st_size > MAX_FILE_BYTES:
            return too_large(info.st_size, shown)
        data = _bounded_read(path, shown, at,
                             identities if target is None and identities is not None else None)
    except OSError as exc:
        return error("UnreadableFile", f"cannot read {shown}: {exc.strerror or exc}", at,
                     "check the file's permissions, or remove it", source_failure=True)
    if isinstance(data, Diagnostic):
        return data
    text, problem = decode(data, shown)
    if problem is not None:
        return problem
    return text if target is None else (target, text)


def _dangling(shown: str, what: str, at: Location) -> Diagnostic:
    return error("DanglingLink", f"{shown} is a symbolic link to {what}", at,
                 "remove the link or restore its target")


def _special(mode: int, shown: str, at: Location) -> Diagnostic:
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a directory" if stat.S_ISDIR(mode) else "not a regular file")
    return error("SpecialFile", f"{shown} is {kind}; policy files must be regular files, so it "
                 "was not opened", at, "remove it from the policies directory")


def _bounded_read(path: str, shown: str, at: Location,
                  identities: dict[str, StatKey] | None = None) -> bytes | Diagnostic:
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)  # what was opened, in case the entry changed since lstat
        if not stat.S_ISREG(info.st_mode):
            return _special(info.st_mode, shown, at)
        if identities is not None:
            identities[shown] = stat_key(info)  # before reading: a later write changes it
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            return too_large(size, shown)
        return b"".join(chunks)
    finally:
        os.close(fd)
