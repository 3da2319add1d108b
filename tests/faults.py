"""Run the real `mtlsc` CLI in this process with one filesystem fault injected.

Usage: python -m tests.faults '<spec as JSON>' compile --root DIR ...

The spec names functions to break, each as {"target": "os.write", "errno": 28, "nth": 3}:
the nth call (1-based) and every later one raise OSError(errno) (only the nth with
"once": true; only in the worker processes, each counting its own calls, with
"workers": true). `"target": "renameat2"`
makes `renameat2` unavailable, so the writer takes its two-rename fallback;
`"target": "immutable"` makes every path whose name is in "names" behave as with chattr +i
(the immutable flag reported, link(2) refused). `"target": "kill"` sends the process SIGKILL
just before its nth filesystem change (any of the `CHANGES` below, counted from the start);
`"target": "count"` writes the number of filesystem changes the run made to the file "path"
at exit. Nothing here is imported by mtlsc.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _failing(real: Callable[..., Any], code: int, nth: int, once: bool,
             workers: bool = False) -> Callable[..., Any]:
    calls = 0
    main = os.getpid()

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        if workers and os.getpid() == main:
            return real(*args, **kwargs)
        calls += 1
        if calls == nth or (calls > nth and not once):
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)
    return wrapper


CHANGES = ("write", "link", "symlink", "mkdir", "rename", "replace", "unlink", "rmdir",
           "fsync", "chmod")


def _count_changes(kill_at: int | None, report: str | None) -> None:
    from compiler import fsops

    calls = 0

    def counted(real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)
        return wrapper

    for name in CHANGES:
        setattr(os, name, counted(getattr(os, name)))
    fsops.exchange = counted(fsops.exchange)
    if report is not None:
        atexit.register(lambda: Path(report).write_text(str(calls)))


def _immutable(real: Callable[[Path], int], names: set[str]) -> Callable[[Path], int]:
    def flags(path: Path) -> int:
        return 0x10 if os.path.basename(path) in names else real(path)
    return flags


def _unlinkable(real: Callable[..., None], names: set[str]) -> Callable[..., None]:
    def link(src: Any, dst: Any, **kwargs: Any) -> None:
        if os.path.basename(src) in names:
            raise PermissionError(1, os.strerror(1), str(src))
        real(src, dst, **kwargs)
    return link


def install(spec: list[dict[str, Any]]) -> None:
    from compiler import fsops

    for fault in spec:
        target = fault["target"]
        if target in ("kill", "count"):
            _count_changes(fault.get("nth"), fault.get("path"))
        elif target == "renameat2":
            def unsupported(a: object, b: object) -> None:
                raise fsops.ExchangeUnsupported("disabled by the test")
            fsops.exchange = unsupported
        elif target == "immutable":  # what chattr +i does to inode flags and link(2)
            fsops.inode_flags = _immutable(  # type: ignore[assignment]
                fsops.inode_flags, set(fault["names"]))
            os.link = _unlinkable(os.link, set(fault["names"]))
        else:
            module_name, _, attr = target.rpartition(".")
            module = {"os": os, "fsops": fsops}[module_name]
            setattr(module, attr, _failing(getattr(module, attr), int(fault["errno"]),
                                           int(fault.get("nth", 1)), bool(fault.get("once")),
                                           bool(fault.get("workers"))))


def main() -> None:
    install(json.loads(sys.argv[1]))
    from compiler.cli import main as cli

    sys.argv = ["mtlsc", *sys.argv[2:]]
    cli()


if __name__ == "__main__":
    main()
