"""The `mtlsc` executable (`[project.scripts]`): hand the command to `mtlsc serve` when one
answers on the repository's socket (`protocol.SOCKET`), else run it in this process.

A handed-over command runs in a worker forked from the server, with this process's standard
streams, arguments, directory, environment and umask: its output, files and exit code are
those it would have had here. This process waits, passes on the signals it gets (Ctrl-C
included) to the worker's process group, and exits as the worker did. Anything that goes
wrong before the worker starts (no server, a stale socket, another installation, a refusal)
runs the command here instead; `MTLSC_NO_SERVER=1` always does. A socket served by another
user is never used: the request carries the environment, which may hold a Vault token.

Start-up is what a served command costs, so until the command is known to run here only
modules that load in microseconds are imported: the C halves of `socket` and `signal`
(their Python halves import `enum`, `selectors` and more: 5 ms together).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # no stub; `signal` re-exports it
import _socket
import os
import struct
import sys

from . import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import NoReturn

_FORWARDED = (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT)
EXIT_INTERNAL = 70  # diagnostics.ExitCode.INTERNAL, not imported: it pulls in the compiler


def run() -> None:
    status = handed_over(sys.argv)
    if status is None:
        from ..cli import run as here

        here()
        return
    _leave(status)


def handed_over(argv: list[str]) -> int | None:
    """The worker's exit status (negative: the signal that ended it) when a server ran the
    command, None when it must run here."""
    if os.environ.get("MTLSC_NO_SERVER") or "serve" in argv[1:]:
        return None
    try:
        os.lstat(protocol.SOCKET)  # most runs have no server: one failed lstat
    except OSError:
        return None
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    pid: list[int] = []
    pending: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if pid:
            try:  # noqa: SIM105 - contextlib is not loaded yet: see the module's docstring
                os.killpg(pid[0], signum)
            except OSError:
                pass
        else:
            pending.append(signum)

    previous = {sig: _signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        try:
            conn.connect(protocol.SOCKET)
            first = None
            if same_user(conn):  # never hand the environment (tokens) to another user
                conn.sendmsg([b"\0"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                        struct.pack("3i", 0, 1, 2))])
                conn.sendall(protocol.encode(protocol.request(argv)))
                first = protocol.read_reply(conn)
        except OSError:
            first = None
        if first is None or first[0] != protocol.STARTED:
            if pending:  # stopped before any worker started: end as if without handlers
                return -pending[0]
            return None
        pid.append(first[1])
        for sig in pending:  # came while the worker was being started: it is the worker's
            forward(sig, None)
        try:
            last = protocol.read_reply(conn)
        except OSError:
            last = None
    finally:
        conn.close()
        for sig, handler in previous.items():
            _signal.signal(sig, handler)
    if last is None or last[0] not in (protocol.EXITED, protocol.KILLED):
        try:  # noqa: SIM105
            os.write(2, f"mtlsc: the server's worker (pid {pid[0]}) ended without an exit "
                        f"status; run the command again with MTLSC_NO_SERVER=1\n".encode())
        except OSError:
            pass
        return EXIT_INTERNAL
    return last[1] if last[0] == protocol.EXITED else -last[1]


def same_user(conn: _socket.socket) -> bool:
    """Whether the process listening on the socket runs as this process's user."""
    try:
        creds = conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return False
    uid: int = struct.unpack("3i", creds)[1]
    return uid == os.getuid()


def _leave(status: int) -> NoReturn:
    if status < 0:  # end as the worker did: by the same signal
        try:
            _signal.signal(-status, _signal.SIG_DFL)
            os.kill(os.getpid(), -status)
        except (OSError, ValueError):
            pass
        status = 128 - status
    os._exit(status)
