"""What a worker forked by `mtlsc serve` does to become the process its client would have
started: the client's standard streams, arguments, directory, environment and umask, default
signal handling, a process group of its own (the client signals the group, as a terminal
would), and then the `mtlsc` command itself (`cli.run`), which ends the process.

What cannot be carried over is documented (docs/scale.md "The server"): resource limits,
the nice value and the controlling terminal are the server's; Python's hash seed is the
server's (output never depends on it).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import resource
import signal
import sys
import traceback
from collections.abc import Iterable
from typing import Any, NoReturn

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD)


def become(request: dict[str, Any], fds: list[int], nofile: tuple[int, int],
           mask: Iterable[int]) -> NoReturn:
    """Run the client's command in this (just forked) process, with the client's streams
    `fds` (0, 1, 2) and the limit of open files `nofile`; never returns. The server forked
    it with `SIGNALS` blocked: they are let through (`mask`, the server's own signal mask)
    once the command's handlers are in place."""
    status = 70
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setpgid(0, 0)
        # above 2 first: a server started without standard streams received some as 0-2
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in fds]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(3, max(nofile[1], 3) if nofile[1] != resource.RLIM_INFINITY else 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
        os.chdir(request["cwd"])
        os.umask(int(request["umask"]))
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        _streams(request["streams"])
        sys.argv = [str(a) for a in request["argv"]]
        from ..cli import run

        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            run()  # ends the process itself when the command allows it (`guard.leave`)
            status = 0
        except SystemExit as done:
            status = _code(done)
        except KeyboardInterrupt:  # before the command's own guard, or after it
            with contextlib.suppress(OSError, ValueError):
                print("mtlsc: interrupted", file=sys.stderr)
            status = 130
        except BaseException:  # the interpreter's own last resort, as in a fresh process
            traceback.print_exc()
            status = 1
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                status = 120  # what Python exits with when its last flush fails
    except BaseException as exc:  # taking the client's place failed (its directory is gone)
        with contextlib.suppress(OSError):
            os.write(2, f"mtlsc: the server could not run the command: {exc!r}; run it "
                        f"again with MTLSC_NO_SERVER=1\n".encode("utf-8", "replace"))
    finally:
        os._exit(status)


def _code(done: SystemExit) -> int:
    """The exit status Python gives `raise SystemExit(code)`."""
    code = done.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    with contextlib.suppress(OSError, ValueError):
        print(code, file=sys.stderr)
    return 1


def _streams(spec: list[list[str]]) -> None:
    """Text streams over descriptors 0-2 as Python would have opened them for the client:
    its encodings and error handlers, stdout line-buffered on a terminal, stderr always."""
    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = spec
    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)),
                                 encoding=in_enc, errors=in_err)
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                  encoding=out_enc, errors=out_err,
                                  line_buffering=os.isatty(1), write_through=False)
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                  encoding=err_enc, errors=err_err, line_buffering=True)
