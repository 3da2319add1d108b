"""Low-level filesystem operations the writer needs and the standard library lacks.

- `exchange(a, b)`: swap two directory entries atomically (Linux `renameat2(RENAME_EXCHANGE)`);
- `undeletable(path)`: whether the immutable or append-only attribute (`chattr +i/+a`) stops
  mtlsc from removing an entry, so the writer can refuse before it changes anything;
- durable writes: `write_file` and `fsync_dir`, and `sync_filesystem` for large batches;
- `write_below(base, rel, data)`: `write_file`, creating missing directories below `base`
  (never `base` itself): how a worker process fills a staging directory;
- `die_with_parent()`: a worker process is killed when the process that started it dies, so
  that nothing writes into a staging directory after the writer itself is gone.

Every function raises OSError; the writer turns it into a FilesystemError diagnostic.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import signal
import struct
from functools import cache
from pathlib import Path
from typing import Any

RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_FS_IOC_GETFLAGS = 0x80086601  # from linux/fs.h (a long-sized ioctl argument)
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20
# renameat2 answers these when the kernel or the filesystem cannot exchange: use two renames.
_NO_EXCHANGE = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP}


class ExchangeUnsupported(Exception):
    """The platform or filesystem cannot swap two entries atomically."""


@cache
def _libc() -> ctypes.CDLL | None:
    """The C library, as the symbols this process already has (`dlopen(NULL)`: libc's among
    them on Linux and macOS). Not `ctypes.util.find_library("c")`, which runs `ldconfig -p` in
    a subprocess: 20 ms of every mtlsc start-up."""
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def _function(name: str) -> Any:
    libc = _libc()
    return getattr(libc, name, None) if libc is not None else None


def exchange(a: Path, b: Path) -> None:
    """Atomically swap the entries at `a` and `b` (both must exist)."""
    func = _function("renameat2")
    if func is None:
        raise ExchangeUnsupported("renameat2 is not available")
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                     ctypes.c_uint]
    func.restype = ctypes.c_int
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        raise ExchangeUnsupported(os.strerror(code))
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def inode_flags(path: Path) -> int:
    """The inode attribute flags of `path` (0 where the filesystem has none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EACCES):
            return 0  # a symlink, socket or unreadable entry: its flags cannot be read
        raise
    try:
        out = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, struct.pack("l", 0))
    except OSError:
        return 0  # ENOTTY/EINVAL: the filesystem has no such flags
    finally:
        os.close(fd)
    value: int = struct.unpack("l", out)[0]
    return value


def undeletable(path: Path) -> bool:
    """True when `chattr +i` or `+a` forbids unlinking `path` or (for a directory) its entries."""
    return bool(inode_flags(path) & (_FS_IMMUTABLE_FL | _FS_APPEND_FL))


def write_file(path: Path | str, data: bytes, *, durable: bool,
               mode: int = 0o644) -> os.stat_result:
    """Create `path` (which must not exist) with `data`; fsync it when `durable`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        st = os.fstat(fd)
        if st.st_mode & 0o777 != mode:
            os.fchmod(fd, mode)  # the umask may have removed bits
            st = os.fstat(fd)
        if durable:
            os.fsync(fd)
        return st
    finally:
        os.close(fd)


def write_below(base: str, rel: str, data: bytes) -> os.stat_result:
    """Create `base/rel` (not durably: the writer syncs the whole filesystem once), with any
    missing directory between `base` and the file (mode 0o777 less the umask). `base` must
    exist: a staging directory removed meanwhile is an error, never created again."""
    path = f"{base}/{rel}"
    with contextlib.suppress(FileNotFoundError):
        return write_file(path, data, durable=False)
    parts = rel.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        # another worker may have made it first (a file in its place fails the write)
        with contextlib.suppress(FileExistsError):
            os.mkdir(f"{base}/{'/'.join(parts[:depth])}", 0o777)
    return write_file(path, data, durable=False)


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Ask the kernel (Linux prctl PR_SET_PDEATHSIG) to SIGKILL this process when its parent
    (process id `parent`) dies; exits at once if it is gone already. Elsewhere: nothing.
    The kernel ties the signal to the *thread* that forked the worker, so the pool must be
    started from a thread that lives as long as the compile (the main thread does)."""
    func = _function("prctl")
    if func is None:
        return
    func(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush the whole filesystem holding `path` (one call instead of thousands of fsyncs)."""
    func = _function("syncfs")
    if func is None:
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if func(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), str(path))
    finally:
        os.close(fd)
