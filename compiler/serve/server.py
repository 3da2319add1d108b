"""`mtlsc serve`: import the compiler once, then run each command a client hands over in a
worker forked for it (`worker.become`), and tell the client how the worker ended.

One process, one loop over three things: the listening socket, the inotify descriptor of
`watch` (when the output directories are watched) and a pipe its signal handlers write to
(SIGCHLD: a worker ended; SIGTERM, SIGINT, SIGHUP: stop). A worker is a child of the server
and the only process it waits for; the worker waits for its own children.

The server refuses (the client then runs the command itself) a request from another user,
another interpreter or module path, or another installation of mtlsc, and when the code it
imported is no longer the code on disk: an edit, a reinstall or an upgrade of mtlsc or of a
library stops it (`code_key`).
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import importlib
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ..delta import live_scan
from ..spare.trees import SPARE_DIR
from . import protocol, worker
from .watch import Watch, WatchUnavailable

OVERLAYS = "overlays"  # the overlays directory the watch covers (`--overlays`' default)
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_REQUEST_TIMEOUT = 10.0  # seconds a connected client has to send its request
_SETTLE = 0.05  # seconds without events before the server looks at what changed


class ServeError(Exception):
    """The server cannot start (the message says why and what to do)."""


def warm() -> None:
    """Import what the commands run, so that workers do not: every module of mtlsc (each
    command imports its own on first use: its CLI module, the writer of a delta compile,
    the Vault client)."""
    import pkgutil

    import compiler

    for module in pkgutil.walk_packages(compiler.__path__, "compiler."):
        with contextlib.suppress(ImportError):  # an optional dependency is missing
            importlib.import_module(module.name)
    gc.collect()
    gc.freeze()  # the imported objects stay shared with every worker, never touched by its GC


def watching(log: TextIO) -> Watch | None:
    """The watch of the overlays directory and the spare trees, or None (said in `log`) when
    inotify cannot be used: the workers then scan as `mtlsc compile` always does."""
    try:
        return Watch([OVERLAYS, SPARE_DIR])
    except WatchUnavailable as exc:
        with contextlib.suppress(OSError, ValueError):
            print(f"mtlsc serve: not watching the output directories ({exc}); "
                  f"workers scan them", file=log, flush=True)
        return None


def code_key() -> str:
    """The code this process imported, as it is on disk: mtlsc's files (as the run record
    keys them) and the identity of every directory on the module path, which an install or
    removal of a distribution changes."""
    from ..run_inputs import code_identity

    digest = hashlib.sha256(code_identity().encode())
    for entry in sys.path[1:]:  # [0]: the directory of the script that started Python
        try:
            st = os.stat(entry or ".")
            digest.update(f"{entry}\0{st.st_ino}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode(
                "utf-8", "surrogateescape"))
        except OSError:
            digest.update(f"{entry}\0-\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


class Server:
    def __init__(self, root: Path, idle: float, log: TextIO, watch: Watch | None = None
                 ) -> None:
        self.root = root
        self.idle = idle
        self.log = log
        self.watch = watch
        self.limits = resource.getrlimit(resource.RLIMIT_NOFILE) if watch is None else \
            watch.limits
        self.identity = protocol.identity()
        self.key = code_key()
        self.workers: dict[int, tuple[socket.socket, str, float]] = {}
        self.stopping = False
        self.stale = False  # the watch saw changes it has not looked at yet
        self.last = time.monotonic()
        self.listener = _listen(root)
        self.inode = os.lstat(protocol.SOCKET).st_ino
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.sel: selectors.BaseSelector = selectors.DefaultSelector()

    def run(self) -> int:
        for sig in (signal.SIGCHLD, *_SIGNALS):
            signal.signal(sig, self._signalled)
        signal.set_wakeup_fd(self.wake_w, warn_on_full_buffer=False)
        self._scanned()  # the first command need not wait for it
        sel = self.sel
        sel.register(self.listener, selectors.EVENT_READ, "accept")
        sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        if self.watch is not None:
            sel.register(self.watch.fileno(), selectors.EVENT_READ, "watch")
        try:
            while not (self.stopping and not self.workers):
                timeout = None
                if self.idle > 0 and not self.workers and not self.stopping:
                    timeout = max(0.0, self.last + self.idle - time.monotonic())
                    if timeout == 0.0:
                        self._say("idle: stopping")
                        self.stopping = True
                        continue
                if self.stale and not self.workers:  # changes seen: look once they settle
                    timeout = _SETTLE if timeout is None else min(timeout, _SETTLE)
                ready = sel.select(timeout)
                for key, _ in ready:
                    if key.data == "accept" and not self.stopping:
                        self._accept()
                    elif key.data == "watch" and self.watch is not None:
                        self.watch.drain()
                        self.stale = True
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            os.read(self.wake_r, 4096)
                    elif isinstance(key.data, tuple):  # a client's end: only ever closed
                        self._hang_up(key.data[1])
                ended = self._reap()
                if (ended or (self.stale and not ready)) and not self.workers and \
                        not self.stopping:
                    self._scanned()  # now, rather than when the next command waits for it
                if self.stopping:
                    self._close_listener(sel)
        finally:
            self._close_listener(sel)
            signal.set_wakeup_fd(-1)
        return 0

    def _signalled(self, signum: int, _frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self.stopping = True

    def _say(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"mtlsc serve: {text}", file=self.log, flush=True)

    def _close_listener(self, sel: selectors.BaseSelector) -> None:
        if self.listener.fileno() < 0:
            return
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(self.listener)
        with contextlib.suppress(OSError):
            if os.lstat(protocol.SOCKET).st_ino == self.inode:  # not a later server's
                os.unlink(protocol.SOCKET)
        self.listener.close()

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        self.last = time.monotonic()
        fds: list[int] = []
        try:
            conn.setblocking(True)
            conn.settimeout(_REQUEST_TIMEOUT)
            _, fds, _, _ = socket.recv_fds(conn, 1, 3)
            request = protocol.decode(conn)
            reason = self._refusal(conn, request, fds)
            if reason is not None:
                conn.sendall(protocol.reply(protocol.REFUSED))
                self._say(f"refused a command: {reason}")
                conn.close()
                return
            assert request is not None
            if request.get("stop"):
                self.stopping = True
                conn.sendall(protocol.reply(protocol.EXITED, 0))
                conn.close()
                return
            conn.settimeout(None)
            found = self._scanned()
            # signals wait until the worker has its own handlers (`worker.become`)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, worker.SIGNALS)
            try:
                pid = os.fork()
                if pid == 0:
                    if found:
                        live_scan.preset(os.fspath(self.root), found)
                    worker.become(request, fds, self.limits, mask)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            with contextlib.suppress(OSError):  # as the worker does: a client may signal
                os.setpgid(pid, pid)  # the group as soon as it knows the pid
            self.workers[pid] = (conn, _command(request), time.monotonic())
            try:
                conn.sendall(protocol.reply(protocol.STARTED, pid))
                self.sel.register(conn, selectors.EVENT_READ, ("client", pid))
            except (OSError, ValueError):
                self._hang_up(pid)
        except OSError:
            conn.close()
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _scanned(self) -> dict[str, tuple[dict[str, str], str]]:
        """The output directories below `OVERLAYS` as a scan would read them now (those the
        watch can tell)."""
        self.stale = False
        if self.watch is None:
            return {}
        try:
            self.watch.refresh()
        except WatchUnavailable as exc:  # more directories than watches or descriptors
            self._say(f"no longer watching the output directories ({exc}); workers scan them")
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(self.watch.fileno())
            self.watch.close()
            self.watch = None
            return {}
        found = {}
        for unit in live_scan.subdirectories(Path("."), OVERLAYS):
            lines = self.watch.lines(unit)
            if lines is not None:
                found[unit] = lines
        return found

    def _refusal(self, conn: socket.socket, request: dict[str, Any] | None,
                 fds: list[int]) -> str | None:
        """Why the command must not run here, or None."""
        try:
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                    struct.calcsize("3i"))
            uid = struct.unpack("3i", creds)[1]
        except (OSError, AttributeError):
            return "the client's user cannot be told"
        if uid != os.getuid():
            return f"the client runs as user {uid}"
        if code_key() != self.key:  # before reading the request: its form may have changed
            self.stopping = True
            self._say("mtlsc or a library changed on disk since the server started: stopping")
            return "the code changed"
        if request is None:
            return "malformed request"
        if request.get("stop"):
            return None
        if len(fds) != 3:
            return "the client's standard streams did not arrive"
        mine = self.identity
        for field in ("version", "executable", "prefix", "python", "path", "package"):
            if request.get(field) != mine[field]:
                return f"another {field} ({str(request.get(field))[:200]})"
        return None

    def _hang_up(self, pid: int) -> None:
        """The client of worker `pid` is gone (killed, say): the worker's process group gets
        SIGHUP, as a command does whose terminal closes."""
        started = self.workers.get(pid)
        if started is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(started[0])
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGHUP)

    def _reap(self) -> bool:
        """Tell the clients of the workers that ended how they did; True if any did."""
        reaped = False
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.workers.clear()
                break
            except InterruptedError:
                continue
            if pid == 0:
                break
            started = self.workers.pop(pid, None)
            if started is None:
                continue
            conn, command, since = started
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn)
            code = os.waitstatus_to_exitcode(status)
            self._say(f"{command} (pid {pid}): " + (f"exit {code}" if code >= 0 else
                      f"signal {-code}") + f" after {time.monotonic() - since:.2f} s")
            message = protocol.reply(protocol.KILLED, -code) if code < 0 \
                else protocol.reply(protocol.EXITED, code)
            with contextlib.suppress(OSError):
                conn.sendall(message)
            conn.close()
            self.last = time.monotonic()
            reaped = True
        return reaped


def _command(request: dict[str, Any]) -> str:
    """The command's name for the log (never its other arguments)."""
    from ..cli import COMMANDS

    name = next((str(a) for a in request.get("argv", [])[1:] if a in COMMANDS), "")
    return f"mtlsc {name}".rstrip()


def _listen(root: Path) -> socket.socket:
    """The listening socket at `protocol.SOCKET`, below `root` (the working directory: a
    relative path keeps within the length a socket path may have)."""
    os.makedirs(os.path.dirname(protocol.SOCKET), exist_ok=True)
    path = protocol.SOCKET
    if os.path.lexists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise ServeError(f"cannot use {root / path}: {exc.strerror}") from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)  # left by a server that did not stop cleanly
        else:
            raise ServeError(f"a server already answers on {root / path}; stop it with "
                             f"'mtlsc serve --stop'")
        finally:
            probe.close()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket is the user's alone (connecting needs write access)
    try:
        listener.bind(path)
    except OSError as exc:
        listener.close()
        raise ServeError(f"cannot listen on {root / path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    listener.listen(64)
    listener.setblocking(False)
    return listener


def stop(root: Path) -> bool:
    """Ask the server of `root` (the working directory) to stop; False when none answers."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(protocol.SOCKET)
        socket.send_fds(conn, [b"\0"], [])
        conn.sendall(protocol.encode({"stop": True}))
        answer = protocol.read_reply(conn)
    except OSError:
        return False
    finally:
        conn.close()
    return answer is not None and answer[0] == protocol.EXITED
