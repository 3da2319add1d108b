"""How `mtlsc` hands a command to `mtlsc serve`, over a Unix socket in the repository.

The client connects to `SOCKET` (relative to its working directory), sends one byte with its
standard input, output and error attached (SCM_RIGHTS), then the request: a length-prefixed
Python literal (`request`: `repr` of a dict of strings, numbers and lists, which keeps any
string exactly, surrogate escapes included; read with `ast.literal_eval`). The server answers
with fixed-size replies: `STARTED` and the worker's pid, then `EXITED` and its exit code or
`KILLED` and the signal that ended it; or `REFUSED` (and nothing else) when the command must
run in the client's own process: another interpreter, another installation of mtlsc, code
changed since the server started.

Only modules Python has already loaded, or that load in microseconds, are imported here:
the client runs this before anything else (`client`).
"""

from __future__ import annotations

import os
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Protocol

    class Connection(Protocol):
        def recv(self, size: int, /) -> bytes: ...

SOCKET = ".mtlsc/serve.sock"
VERSION = 1
MAX_REQUEST = 8 << 20  # an environment is a few kilobytes; a larger request is not ours

STARTED = b"P"
EXITED = b"X"
KILLED = b"K"
REFUSED = b"R"
_REPLY = struct.Struct("!ci")
_LENGTH = struct.Struct("!I")


def identity() -> dict[str, Any]:
    """What must be the same in the client and the server for the server's process to be
    the one the client would have started: the interpreter, its module path, this package."""
    return {"version": VERSION, "executable": os.path.realpath(sys.executable),
            "prefix": sys.prefix, "python": sys.version,
            "path": sys.path[1:],  # [0] is the directory of the script that started Python
            "package": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}


def request(argv: list[str]) -> dict[str, Any]:
    """The command as this process would run it: arguments, directory, environment, umask
    and how its standard streams encode text."""
    mask = os.umask(0o022)
    os.umask(mask)
    streams = [[getattr(s, "encoding", None) or "utf-8", getattr(s, "errors", None) or "strict"]
               for s in (sys.stdin, sys.stdout, sys.stderr)]
    return {**identity(), "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
            "umask": mask, "streams": streams}


def encode(obj: dict[str, Any]) -> bytes:
    data = repr(obj).encode("utf-8", "surrogatepass")
    return _LENGTH.pack(len(data)) + data


def read_exactly(conn: Connection, size: int) -> bytes:
    """`size` bytes, or fewer when the peer closed the connection first."""
    chunks = []
    while size:
        chunk = conn.recv(size)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def decode(conn: Connection) -> dict[str, Any] | None:
    """The request that follows the stream byte; None when it is malformed or cut short."""
    import ast

    head = read_exactly(conn, _LENGTH.size)
    if len(head) != _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    if size > MAX_REQUEST:
        return None
    data = read_exactly(conn, size)
    if len(data) != size:
        return None
    try:
        obj = ast.literal_eval(data.decode("utf-8", "surrogatepass"))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def reply(kind: bytes, value: int = 0) -> bytes:
    return _REPLY.pack(kind, value)


def read_reply(conn: Connection) -> tuple[bytes, int] | None:
    data = read_exactly(conn, _REPLY.size)
    if len(data) != _REPLY.size:
        return None
    kind, value = _REPLY.unpack(data)
    return kind, value
