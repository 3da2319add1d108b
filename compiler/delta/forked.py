"""A child process joined to this one by two pipes, as the delta compile's children are
(`compute.Forked`, `live_scan.Forked`).

The child runs `serve(ask, tell)` (its ends: it reads requests from `ask` and answers on
`tell`) and leaves with `os._exit`: it never runs this process's exit handlers or flushes
its buffers twice. The parent gets the child's pid and its own ends (`ask` to write to,
`tell` to read from).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Child:
    """The parent's side of a forked child: its pid, the pipe end requests are written to and
    the one answers are read from (file descriptors, owned by the caller)."""

    pid: int
    ask: int
    tell: int


def fork(serve: Callable[[int, int], None]) -> Child:
    """Fork a child running `serve(ask, tell)`; OSError when it cannot be started (nothing
    is left open then)."""
    ask_r, ask_w = os.pipe()
    tell_r, tell_w = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        for fd in (ask_r, ask_w, tell_r, tell_w):
            os.close(fd)
        raise
    if pid == 0:
        status = 1
        try:
            os.close(ask_w)
            os.close(tell_r)
            serve(ask_r, tell_w)
            status = 0
        finally:
            os._exit(status)
    os.close(ask_r)
    os.close(tell_w)
    return Child(pid, ask_w, tell_r)
