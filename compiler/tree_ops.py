"""Bulk filesystem work of the writer, close to the syscalls: linking thousands of unchanged
files into a staged directory, removing an old tree, and reading back file identities.

Paths are plain strings joined once (pathlib's joins cost more than the `link` itself), and
trees are removed through directory file descriptors (`unlinkat`/`rmdir` relative to an
opened directory, never following a symbolic link), with top-level subdirectories removed by a
few threads at once: the syscalls release the GIL and the filesystem overlaps them.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import fsops
from .manifest import StatKey, stat_key

REMOVE_THREADS = 4
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A link that fails with one of these is carried by a copy instead (`tree_ops.link_or_copy`).
COPY_INSTEAD = frozenset({errno.EPERM, errno.EMLINK, errno.EXDEV, errno.EOPNOTSUPP})


def link_all(source: str, target: str, names: Iterable[str]) -> list[str]:
    """Hard-link `source/<name>` at `target/<name>` for each name; returns the names the
    filesystem refused to link for a reason a copy can get around (`COPY_INSTEAD`). Other
    errors raise."""
    refused: list[str] = []
    link = os.link
    for name in names:
        try:
            link(f"{source}/{name}", f"{target}/{name}", follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in COPY_INSTEAD:
                raise
            refused.append(name)
    return refused


def link_or_copy(src: Path, dst: Path, durable: bool) -> None:
    """Hard-link `src` at `dst`; copy when the filesystem refuses links."""
    try:
        os.link(src, dst, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno == errno.EPERM and fsops.undeletable(src):
            raise OSError(errno.EPERM, "has the immutable or append-only attribute "
                          "(chattr +i/+a), so mtlsc cannot replace its directory",
                          str(src)) from None
        if exc.errno not in COPY_INSTEAD:
            raise
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        fsops.write_file(dst, src.read_bytes(), durable=durable, mode=stat.S_IMODE(st.st_mode))
    else:
        raise OSError(errno.EPERM, "cannot carry this special file into the new directory",
                      str(src))


def identities(base: str, names: Iterable[str]) -> dict[str, StatKey]:
    """The `lstat` identity of `base/<name>` for each name (missing files are left out)."""
    out: dict[str, StatKey] = {}
    lstat = os.lstat
    for name in names:
        try:
            out[name] = stat_key(lstat(f"{base}/{name}"))
        except FileNotFoundError:
            continue
    return out


def _clear(dir_fd: int) -> None:
    """Remove everything inside the open directory `dir_fd`."""
    with os.scandir(dir_fd) as it:
        entries = list(it)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            _remove_dir(dir_fd, entry.name)
        else:
            os.unlink(entry.name, dir_fd=dir_fd)


def _remove_dir(parent_fd: int, name: str) -> None:
    fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    try:
        _clear(fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent_fd)


def remove_trees(paths: Sequence[str], threads: int = REMOVE_THREADS) -> None:
    """Remove each of `paths` (a directory tree, a file or a symbolic link; absent is fine),
    the subdirectories of all of them in parallel. Raises the first error met."""
    jobs: list[tuple[int, str]] = []
    opened: list[tuple[str, int]] = []
    try:
        for path in paths:
            try:
                fd = os.open(path, _DIR_FLAGS)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                os.unlink(path)  # a file or a symbolic link, not a directory
                continue
            opened.append((path, fd))
            with os.scandir(fd) as it:
                entries = list(it)
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    jobs.append((fd, entry.name))
                else:
                    os.unlink(entry.name, dir_fd=fd)
        if len(jobs) > 1 and threads > 1:
            # here, not at the top: concurrent.futures brings logging with it, and a delta
            # compile imports this module without removing anything
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=threads) as pool:
                for done in [pool.submit(_remove_dir, fd, name) for fd, name in jobs]:
                    done.result()
        else:
            for fd, name in jobs:
                _remove_dir(fd, name)
    finally:
        for _, fd in opened:
            os.close(fd)
    for path, _ in opened:
        os.rmdir(path)
