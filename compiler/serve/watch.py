"""The output directories' scan (`run_disk.scan_lines`), kept current by inotify so that a
worker of `mtlsc serve` does not `lstat` 36,000 files before a delta compile.

What is watched: whole directory trees (the overlays directory and the spare trees' home,
`.mtlsc/write/spare`), every directory in them by its inode. A delta write fills a spare and
swaps it with the live tree by renaming directories; watching inodes rather than paths makes
that swap nothing but two renames. Each watched directory keeps an open descriptor, its
entries and their `lstat` identities. An event names an entry that may have changed: it is
looked at again (`lstat`, relative to the directory's descriptor) when the lines are next
asked for (`refresh`). A file's identity is its inode's, so every watched name of the same
inode takes the new identity at once (a link made or removed in a spare changes the live
file's ctime without an event in the live directory).

`lines(unit)` walks the unit's tree from its path through the watched directories and gives
exactly what `scan_lines` would read now, or None when it cannot: a directory that is not
watched (could not be opened or listed), or everything after the kernel dropped events
(queue overflow), until the trees are read again.

One difference is allowed, and costs speed only: a hard link to a watched file made and
removed again between two looks (or made in a directory before it was watched, and removed)
changed that file's ctime, and no event says which file it was. Its identity then keeps the
old ctime. The content cannot have changed unseen (a write through a watched name is an
event), so what a stale ctime can do is make an identity differ where nothing changed: the
delta compile falls back to the full compile, or the writer reads a file to hash it again.

The limits of inotify are the limits here (docs/scale.md "The server"): a change made
through a hard link from outside the watched trees, or from another machine on a network
filesystem, produces no event. The server then gives a stale identity; the delta compile
either falls back to the full compile (the fingerprint no longer matches the base) or, for
a file changed in place through such a link, does not see the change. `mtlsc check` in CI,
which never runs in a server, still does.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import resource
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..run_disk import SKIPPED, digest_sorted, stat_line

# <sys/inotify.h>
IN_MODIFY = 0x2
IN_ATTRIB = 0x4
IN_CLOSE_WRITE = 0x8
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
        | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
_EVENT = struct.Struct("iIII")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RESERVE = 64  # descriptors left for the server itself: sockets, pipes, a command's streams

Key = tuple[int, int]  # (st_dev, st_ino)


class WatchUnavailable(Exception):
    """inotify cannot be used here (not Linux, no watches or descriptors left)."""


@dataclass(eq=False)
class Dir:
    """A watched directory: its descriptor, watch and entries (name -> `lstat`)."""

    key: Key
    fd: int
    wd: int
    entries: dict[str, os.stat_result] = field(default_factory=dict)
    version: int = 0
    cached: tuple[str, dict[str, str]] | None = None  # (prefix, rel -> line) of its files

    def lines(self, prefix: str) -> dict[str, str]:
        if self.cached is None or self.cached[0] != prefix:
            self.cached = (prefix, {
                prefix + name: stat_line(prefix + name, st) for name, st in self.entries.items()
                if not stat.S_ISDIR(st.st_mode) and not name.startswith(SKIPPED)})
        return self.cached[1]


def _libc() -> ctypes.CDLL:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.inotify_init1  # noqa: B018 - raises AttributeError where there is no inotify
    except (OSError, AttributeError) as exc:
        raise WatchUnavailable("inotify is not available") from exc
    return libc


class Watch:
    """The trees below `tops` (paths relative to the working directory) under watch."""

    def __init__(self, tops: Iterable[str]) -> None:
        self.libc = _libc()
        # one descriptor per directory: as many as the hard limit allows (workers get the
        # limit back, `worker.become`)
        self.limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (self.limits[1], self.limits[1]))
        self.room = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - _RESERVE
        fd = self.libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise WatchUnavailable(os.strerror(ctypes.get_errno()))
        self.fd: int = fd
        self.tops = list(tops)
        self.dirs: dict[Key, Dir] = {}
        self.by_wd: dict[int, Dir] = {}
        self.inodes: dict[Key, set[tuple[Key, str]]] = {}  # file inode -> (dir, name) holding it
        self.suspects: dict[Key, set[str]] = {}
        self.overflowed = False
        self.units: dict[str, tuple[tuple[tuple[Key, int], ...], dict[str, str], str]] = {}
        self._read_all()

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        for d in self.dirs.values():
            with contextlib.suppress(OSError):
                os.close(d.fd)
        self.dirs.clear()
        self.by_wd.clear()
        with contextlib.suppress(OSError):
            os.close(self.fd)

    # -- reading trees -------------------------------------------------------------------

    def _read_all(self) -> None:
        for d in list(self.dirs.values()):
            self._forget(d)
        self.inodes.clear()
        self.suspects.clear()
        self.units.clear()
        self.overflowed = False
        for top in self.tops:
            with contextlib.suppress(OSError):
                self._add(os.open(top, _DIR_FLAGS))

    def _add(self, fd: int) -> None:
        """Watch the directory open at `fd` and everything below it (watch first, then list:
        an entry made meanwhile is both listed and reported); takes `fd` over."""
        todo = [fd]
        while todo:
            if len(self.dirs) + len(todo) > self.room:
                for fd in todo:
                    os.close(fd)
                raise WatchUnavailable("more directories than the open files allowed")
            fd = todo.pop()
            try:
                st = os.fstat(fd)
            except OSError:
                os.close(fd)
                continue
            key = (st.st_dev, st.st_ino)
            if key in self.dirs:
                os.close(fd)
                continue
            wd = self.libc.inotify_add_watch(self.fd, f"/proc/self/fd/{fd}".encode(), MASK)
            if wd < 0:
                err = ctypes.get_errno()
                os.close(fd)
                if err in (errno.ENOSPC, errno.EMFILE, errno.ENOMEM):
                    for other in todo:
                        os.close(other)
                    raise WatchUnavailable(f"cannot watch more directories: "
                                           f"{os.strerror(err)}")
                continue  # gone or unreadable: left unwatched, its units unknown
            d = Dir(key, fd, wd)
            old = self.by_wd.get(wd)
            if old is not None:  # a watch is an inode's: the same wd under another key
                del self.by_wd[wd]  # cannot be, but if it were, the watch is the new one's
                self._forget(old)
            self.dirs[key] = d
            self.by_wd[wd] = d
            try:
                with os.scandir(fd) as it:
                    names = [e.name for e in it]
            except OSError:
                self._forget(d)
                continue
            for name in names:
                try:
                    est = os.lstat(name, dir_fd=fd)
                except OSError:
                    continue  # gone since the listing: its deletion is reported
                self._set(d, name, est)
                self._spread(d, name, est)
                if stat.S_ISDIR(est.st_mode):
                    try:
                        todo.append(os.open(name, _DIR_FLAGS, dir_fd=fd))
                    except OSError as exc:
                        if exc.errno in (errno.EMFILE, errno.ENFILE):
                            for other in todo:
                                os.close(other)
                            raise WatchUnavailable(os.strerror(exc.errno)) from None
                        # gone or unreadable: left unwatched, its units unknown

    def _forget(self, d: Dir) -> None:
        if self.dirs.get(d.key) is d:
            del self.dirs[d.key]
        if self.by_wd.get(d.wd) is d:
            del self.by_wd[d.wd]
            self.libc.inotify_rm_watch(self.fd, d.wd)
        for name, st in d.entries.items():
            holders = self.inodes.get((st.st_dev, st.st_ino))
            if holders is not None:
                holders.discard((d.key, name))
        d.entries.clear()
        with contextlib.suppress(OSError):
            os.close(d.fd)

    def _set(self, d: Dir, name: str, st: os.stat_result | None) -> None:
        old = d.entries.get(name)
        if old is not None and (st is None or (st.st_dev, st.st_ino) != (old.st_dev, old.st_ino)):
            holders = self.inodes.get((old.st_dev, old.st_ino))
            if holders is not None:
                holders.discard((d.key, name))
                for other, other_name in holders:  # the inode lost a link: its ctime changed
                    self.suspects.setdefault(other, set()).add(other_name)
        d.version += 1
        d.cached = None
        if st is None:
            d.entries.pop(name, None)
            return
        d.entries[name] = st
        if not stat.S_ISDIR(st.st_mode):
            self.inodes.setdefault((st.st_dev, st.st_ino), set()).add((d.key, name))

    def _spread(self, d: Dir, name: str, st: os.stat_result) -> None:
        """Give every other watched name of the file's inode the identity just read."""
        if stat.S_ISDIR(st.st_mode):
            return
        inode = (st.st_dev, st.st_ino)
        for other, other_name in self.inodes.get(inode, ()):
            od = self.dirs.get(other)
            if od is None or (other, other_name) == (d.key, name):
                continue
            current = od.entries.get(other_name)
            if current is not None and (current.st_dev, current.st_ino) == inode:
                od.entries[other_name] = st
                od.version += 1
                od.cached = None

    # -- events --------------------------------------------------------------------------

    def drain(self) -> None:
        """Note what the pending events name (nothing is looked at yet)."""
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            if not data:
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, size = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size:offset + _EVENT.size + size].rstrip(b"\0")
                offset += _EVENT.size + size
                if mask & IN_Q_OVERFLOW:
                    self.overflowed = True
                    continue
                d = self.by_wd.get(wd)
                if d is None:
                    continue
                if mask & IN_IGNORED:  # the directory is gone (or its watch was removed)
                    del self.by_wd[wd]  # the kernel dropped the watch: nothing to remove
                    self._forget(d)
                    continue
                if name:
                    self.suspects.setdefault(d.key, set()).add(os.fsdecode(name))

    def refresh(self) -> None:
        """Bring every watched directory up to date with the events so far."""
        self.drain()
        if self.overflowed:
            self._read_all()
            self.drain()
        for top in self.tops:  # a top made (again) since: watch it now
            with contextlib.suppress(OSError):
                top_st = os.lstat(top)
                if stat.S_ISDIR(top_st.st_mode) and \
                        (top_st.st_dev, top_st.st_ino) not in self.dirs:
                    self._add(os.open(top, _DIR_FLAGS))
        while self.suspects:
            key, names = self.suspects.popitem()
            d = self.dirs.get(key)
            if d is None:
                continue
            for name in names:
                try:
                    st: os.stat_result | None = os.lstat(name, dir_fd=d.fd)
                except FileNotFoundError:
                    st = None
                except OSError:
                    st = None
                    self.overflowed = True  # cannot be told: read everything again
                self._set(d, name, st)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if (st.st_dev, st.st_ino) not in self.dirs:
                        with contextlib.suppress(OSError):
                            self._add(os.open(name, _DIR_FLAGS, dir_fd=d.fd))
                    continue
                self._spread(d, name, st)
            if self.overflowed:
                self._read_all()
                self.drain()

    # -- answers -------------------------------------------------------------------------

    def lines(self, unit: str) -> tuple[dict[str, str], str] | None:
        """What `scan_lines(root, unit)` reads now, and its fingerprint; None when the
        watched trees cannot tell (call `refresh` first)."""
        try:
            st = os.lstat(unit)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        walk: list[tuple[Key, int]] = []
        parts: list[tuple[Dir, str]] = []
        todo: list[tuple[Key, str]] = [((st.st_dev, st.st_ino), "")]
        while todo:
            key, prefix = todo.pop()
            d = self.dirs.get(key)
            if d is None:
                return None
            walk.append((key, d.version))
            parts.append((d, prefix))
            for name, est in d.entries.items():
                if stat.S_ISDIR(est.st_mode) and not name.startswith(SKIPPED):
                    todo.append(((est.st_dev, est.st_ino), f"{prefix}{name}/"))
        signature = tuple(sorted(walk))
        known = self.units.get(unit)
        if known is not None and known[0] == signature:
            return known[1], known[2]
        out: dict[str, str] = {}
        for d, prefix in parts:
            out.update(d.lines(prefix))
        fingerprint = digest_sorted(sorted(out.values()))
        self.units[unit] = (signature, out, fingerprint)
        return out, fingerprint
