"""What a write plan means for people: the unified diff `mtlsc check` and `--diff` print, and
a one-line description (with a hint) of a filesystem error. Re-exported by `write`."""

from __future__ import annotations

import difflib
import errno
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .write import WritePlan

__all__ = ["describe", "unified_diff"]


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def _read_text(path: Path) -> str:
    # A damaged generated file must not crash the diff: show undecodable bytes replaced.
    return path.read_bytes().decode("utf-8", errors="replace")


def unified_diff(p: WritePlan) -> str:
    """What `apply` would change, as a unified diff (used by `mtlsc check` and `--diff`)."""
    chunks: list[str] = []
    for rel in sorted({*p.create, *p.update, *p.delete}):
        old = _read_text(p.root / rel) if rel not in p.create else ""
        new = (p.create.get(rel) or p.update.get(rel) or b"").decode("utf-8")
        chunks += difflib.unified_diff(_lines(old), _lines(new),
                                       fromfile=f"a/{rel}" if rel not in p.create else "/dev/null",
                                       tofile=f"b/{rel}" if rel not in p.delete else "/dev/null")
    return "".join(chunks)


_HINTS = {
    errno.ENOSPC: "free space on the disk (or raise the quota), then run `mtlsc compile` again",
    errno.EDQUOT: "free space within your quota, then run `mtlsc compile` again",
    errno.EROFS: "the filesystem is mounted read-only; compile into a writable checkout",
    errno.EACCES: "check the permissions of the overlay directories and their parents",
    errno.EPERM: "check permissions and attributes (`lsattr`; `chattr -i` removes immutability)",
    errno.EIO: "the disk reported an I/O error: check the device (dmesg) before retrying",
    errno.EEXIST: "something is in the way of a path mtlsc writes: move it away",
    errno.ENOTDIR: "a file sits where mtlsc needs a directory: move it away",
    errno.EISDIR: "a directory sits where mtlsc writes a file: move it away",
}


def describe(exc: OSError) -> tuple[str, str]:
    """A one-line message naming the path and cause of a filesystem error, and a hint."""
    cause = exc.strerror or str(exc)
    where = exc.filename
    message = f"{where}: {cause}" if where else cause
    return message, _HINTS.get(exc.errno or 0, "check the filesystem and run `mtlsc compile` "
                               "again")
