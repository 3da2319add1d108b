"""`mtlsc serve` (`compiler.serve`): a command handed to the server prints, writes and exits
exactly as the same command run on its own, including delta compiles over trees the server
watches, hand edits of the overlays between compiles, errors, signals and refusals.

Every test runs the real executable and a real server process in a generated fleet, next to
a twin repository where the same commands run without a server (`MTLSC_NO_SERVER=1`)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fleet_support import apply_edit, make_fleet
from tests.record_support import MTLSC

INTENTS, CLUSTERS = 12, 3
SOCKET = ".mtlsc/serve.sock"


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLSC_")}
    env.update({"CI": "1", "MTLSC_SPARE_MIN": "1"}, **extra)  # spares: the watch follows swaps
    return env


@dataclass(frozen=True)
class Shown:
    code: int
    stdout: bytes
    stderr: bytes
    delta: str
    scan: str  # "server": the output trees' scan came from the server's watch


def run(root: Path, *args: str, served: bool, env: dict[str, str] | None = None,
        umask: int = -1) -> Shown:
    log = root.parent / f"{root.name}-record.json"
    log.unlink(missing_ok=True)
    full = base_env(MTLSC_TEST_RECORD_LOG=str(log), **(env or {}))
    if not served:
        full["MTLSC_NO_SERVER"] = "1"
    done = subprocess.run([MTLSC, *args], cwd=root, env=full, capture_output=True,
                          timeout=300, check=False, umask=umask)
    found = json.loads(log.read_text()) if log.exists() else {}
    return Shown(done.returncode, done.stdout, done.stderr, str(found.get("delta", "")),
                 str(found.get("scan", "")))


def overlays(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every output file's bytes and mode (a worker writes with the client's umask)."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode)
            for p in sorted((root / "overlays").rglob("*")) if p.is_file()}


@contextmanager
def serving(root: Path, *args: str, env: dict[str, str] | None = None,
            files: int | None = None) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """`mtlsc serve` in `root`; `files`: its limit of open files (soft and hard)."""
    import resource

    def limit() -> None:
        if files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (files, files))

    log = root.parent / f"{root.name}-serve.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([MTLSC, "serve", "--idle-timeout", "600", *args], cwd=root,
                                env=env or base_env(), stdout=subprocess.DEVNULL, stderr=err,
                                preexec_fn=limit)
    try:
        deadline = time.monotonic() + 120
        while not _answers(root):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def _answers(root: Path) -> bool:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(os.fspath(root / SOCKET))
        return True
    except OSError:
        return False
    finally:
        conn.close()


def served_commands(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "(pid " in line]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("serve-fleet"), INTENTS, CLUSTERS)


@pytest.fixture
def twins(fleet: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of the fleet with the same recorded compile: one served, one not."""
    served, local = tmp_path / "served", tmp_path / "local"
    for root in (served, local):
        shutil.copytree(fleet, root)
        assert run(root, "compile", served=False).code == 0
    return served, local


def same(served: Shown, local: Shown) -> None:
    assert (served.code, served.stdout, served.stderr) == (local.code, local.stdout, local.stderr)


def test_served_commands_match_commands_run_alone(twins: tuple[Path, Path]) -> None:
    served, local = twins
    steps: list[tuple[str, ...]] = [("--version",), ("check",), ("validate",)]
    edits = [("hostname", True), ("mode", True), ("route", True), ("break", True),
             ("hostname", True), ("add", False), ("override", False)]
    with serving(served) as (proc, log):
        for args in steps:
            same(run(served, *args, served=True), run(local, *args, served=False))
        deltas = []
        for step, (kind, _) in enumerate(edits):
            for root in (served, local):
                apply_edit(root, kind, 3, step)
            a, b = run(served, "compile", served=True), run(local, "compile", served=False)
            same(a, b)
            assert overlays(served) == overlays(local)
            assert a.delta == b.delta
            assert b.scan != "server"
            deltas.append((a.delta, a.scan))
            # a hand edit of the output between two compiles: the server's watch must see it
            if step % 2 == 0 and a.code == 0:
                for root in (served, local):
                    victim = sorted((root / "overlays").rglob("*.yaml"))[step]
                    victim.write_bytes(victim.read_bytes() + b"# hand edit\n")
        drift = run(served, "check", served=True)
        same(drift, run(local, "check", served=False))
        assert proc.poll() is None
        lines = served_commands(log)
    # the served compiles included delta compiles, with the server's scan of the trees
    assert ("applied", "server") in deltas
    assert len(lines) == len(steps) + len(edits) + 1, lines
    assert all("exit " in line for line in lines)
    assert not (served / SOCKET).exists()  # removed when the server stopped


def test_a_server_that_cannot_watch_every_directory_still_serves_right(
        twins: tuple[Path, Path]) -> None:
    """With fewer descriptors than directories, what the watch cannot follow is scanned by
    the worker, as without a server: the output is the same."""
    served, local = twins
    dirs = sum(1 for p in (served / "overlays").rglob("*") if p.is_dir())
    assert dirs > 40
    with serving(served, files=48) as (proc, _):
        for step, kind in enumerate(("hostname", "mode")):
            for root in (served, local):
                apply_edit(root, kind, 3, step)
            a, b = run(served, "compile", served=True), run(local, "compile", served=False)
            same(a, b)
            assert a.delta == b.delta == "applied"
            assert a.scan == "own"
            assert overlays(served) == overlays(local)
        assert proc.poll() is None


def test_a_served_command_has_the_clients_umask(twins: tuple[Path, Path]) -> None:
    """Directories a compile makes get 0o777 less the umask: the client's, not the server's."""
    served, local = twins

    def modes(root: Path) -> dict[str, int]:
        return {p.relative_to(root).as_posix(): p.stat().st_mode
                for p in sorted((root / "overlays").rglob("*"))}

    with serving(served):
        for root in (served, local):
            shutil.move(root / "overlays", root.parent / f"{root.name}-old-overlays")
        same(run(served, "compile", served=True, umask=0o077),
             run(local, "compile", served=False, umask=0o077))
    assert modes(served) == modes(local)
    assert any(mode & 0o777 == 0o700 for mode in modes(served).values())


@pytest.mark.parametrize("change", ["edit", "remove", "chmod", "swap-spare", "new-dir"])
def test_the_watch_follows_changes_to_the_output(twins: tuple[Path, Path], change: str) -> None:
    """After a change to the overlays made outside mtlsc, a served delta compile sees exactly
    what a compile that scans sees: it repairs or falls back the same way."""
    served, local = twins
    with serving(served):
        for root in (served, local):
            apply_edit(root, "hostname", 1, 0)
        same(run(served, "compile", served=True), run(local, "compile", served=False))
        for root in (served, local):
            files = sorted((root / "overlays").rglob("*.yaml"))
            if change == "edit":
                files[0].write_text(files[0].read_text() + "# edited\n")
            elif change == "remove":
                files[1].unlink()
            elif change == "chmod":
                files[2].chmod(0o600)
            elif change == "swap-spare":  # a spare tree edited by hand: never trusted
                for spare in sorted((root / ".mtlsc" / "write" / "spare").rglob("*.yaml"))[:3]:
                    spare.unlink()
                    spare.write_text("stale\n")
            else:
                extra = root / "overlays" / files[0].relative_to(root / "overlays").parts[0] / "x"
                extra.mkdir()
                (extra / "stray.yaml").write_text("kind: Stray\n")
            apply_edit(root, "hostname", 1, 1)
        a, b = run(served, "compile", served=True), run(local, "compile", served=False)
        same(a, b)
        assert a.delta == b.delta
        assert (a.scan, b.scan) == ("server", "own")
        assert overlays(served) == overlays(local)


@pytest.fixture(scope="module")
def big_fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fleet whose cold compile takes seconds: a signal sent soon after the worker starts
    comes mid-compile."""
    return make_fleet(tmp_path_factory.mktemp("serve-big-fleet"), 160, 3)


def test_an_interrupted_served_command_ends_as_one_run_alone(big_fleet: Path,
                                                              tmp_path: Path) -> None:
    """Ctrl-C at the client, while the worker compiles, reaches the worker (its process
    group): the worker reports the interruption and exits 130, and no half-written overlay
    is left."""
    root = tmp_path / "repo"
    shutil.copytree(big_fleet, root)
    with serving(root) as (proc, log):
        env = base_env()
        client = subprocess.Popen([MTLSC, "compile", "--no-cache"], cwd=root, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        worker = _wait_for_child(proc.pid)
        time.sleep(0.5)  # into the compile (click has parsed the command by then)
        client.send_signal(signal.SIGINT)
        _, err = client.communicate(timeout=120)
        assert client.returncode == 130, err
        assert b"mtlsc: interrupted" in err
        assert worker not in _children(proc.pid)
        # the client has the status only once the server has logged it
        assert any(f"(pid {worker}): exit 130" in line for line in served_commands(log))
    assert run(root, "check", served=False).code in (0, 4)  # the overlays are whole


def test_a_worker_whose_client_is_killed_is_hung_up(big_fleet: Path, tmp_path: Path) -> None:
    """A client killed outright (SIGKILL: nothing to forward) closes its connection: the
    server hangs the worker up (SIGHUP to its group), as a terminal closing would."""
    root = tmp_path / "repo"
    shutil.copytree(big_fleet, root)
    with serving(root) as (proc, log):
        client = subprocess.Popen([MTLSC, "compile", "--no-cache"], cwd=root, env=base_env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        worker = _wait_for_child(proc.pid)
        client.kill()
        client.wait(timeout=60)
        deadline = time.monotonic() + 60
        # the server reaps the worker, then logs how it ended: wait for the log line
        while not any(f"(pid {worker}): signal {int(signal.SIGHUP)}" in line
                      for line in served_commands(log)):
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.01)
        assert worker not in _children(proc.pid)
        assert proc.poll() is None
    assert run(root, "check", served=False).code in (0, 4)  # the overlays are whole


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # the task ended meanwhile
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _wait_for_child(pid: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        children = _children(pid)
        if children:
            return children[0]
        time.sleep(0.005)
    raise AssertionError("the server started no worker")


def test_a_client_of_another_python_path_runs_the_command_itself(twins: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    served, local = twins
    with serving(served) as (_, log):
        other = {"PYTHONPATH": os.fspath(tmp_path)}
        a = run(served, "check", served=True, env=other)
        same(a, run(local, "check", served=False))
        assert "refused a command: another path" in log.read_text()
        assert served_commands(log) == []


def test_a_code_change_stops_the_server(fleet: Path, tmp_path: Path) -> None:
    """The server runs a copy of the package: once a file of it changes, the next command is
    refused (and runs in the client, with the changed code) and the server stops."""
    import compiler

    package = tmp_path / "pkg"
    shutil.copytree(Path(compiler.__file__).parent, package / "compiler",
                    ignore=shutil.ignore_patterns("__pycache__"))
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    env = base_env(PYTHONPATH=os.fspath(package))
    with serving(root, env=env) as (proc, log):
        assert run(root, "--version", served=True, env={"PYTHONPATH": os.fspath(package)}
                   ).code == 0
        assert len(served_commands(log)) == 1
        changed = package / "compiler" / "emit.py"
        changed.write_text(changed.read_text() + "\n# changed\n")
        done = run(root, "--version", served=True, env={"PYTHONPATH": os.fspath(package)})
        assert done.code == 0 and done.stdout.startswith(b"mtlsc, version")
        proc.wait(timeout=30)
        assert proc.returncode == 0
        assert "changed on disk" in log.read_text()
        assert len(served_commands(log)) == 1
    assert not (root / SOCKET).exists()


def test_a_dead_servers_socket_is_ignored_and_replaced(fleet: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    with serving(root) as (proc, _):
        proc.kill()
        proc.wait(timeout=30)
    assert (root / SOCKET).exists()  # killed: it could not remove it
    done = run(root, "--version", served=True)
    assert done.code == 0 and done.stdout.startswith(b"mtlsc, version")
    with serving(root) as (_, log):
        assert run(root, "--version", served=True).code == 0
        assert len(served_commands(log)) == 1


def test_one_server_per_repository_and_stop(fleet: Path, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    env = base_env()
    stop = [MTLSC, "serve", "--stop"]
    nobody = subprocess.run(stop, cwd=root, env=env, capture_output=True, timeout=60,
                            check=False)
    assert nobody.returncode == 1
    assert b"no server answers" in nobody.stderr
    with serving(root) as (proc, _):
        second = subprocess.run([MTLSC, "serve"], cwd=root, env=env, capture_output=True,
                                timeout=60, check=False)
        assert second.returncode == 1
        assert b"a server already answers" in second.stderr
        assert b"Traceback" not in second.stderr
        stopped = subprocess.run(stop, cwd=root, env=env, capture_output=True, timeout=60,
                                 check=False)
        assert stopped.returncode == 0, stopped.stderr
        proc.wait(timeout=30)
        assert proc.returncode == 0
    assert not (root / SOCKET).exists()


def test_the_client_alone_imports_almost_nothing() -> None:
    """Start-up is what a served command costs: the client imports no click, no compiler."""
    code = ("import sys; import compiler.serve.client; "
            "print(sorted(m for m in sys.modules if m.startswith(('click', 'compiler.cli', "
            "'compiler.pipeline', 'json', 'socket', 'signal', 'typing'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_client_never_talks_to_another_users_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """The request carries the environment (a Vault token, say): the client checks who
    listens (SO_PEERCRED) before it sends anything."""
    import _socket

    from compiler.serve import client

    mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        assert client.same_user(mine)
        real = os.getuid()
        monkeypatch.setattr(os, "getuid", lambda: real + 1)
        assert not client.same_user(mine)
    finally:
        mine.close()
        theirs.close()


RAW_CLIENT = """
import os, socket, struct, sys
from compiler.serve import protocol
request = protocol.request(["mtlsc", "--version"])
request["cwd"] = sys.argv[1]  # a directory that is gone
read, write = os.pipe()
conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
conn.connect(protocol.SOCKET)
socket.send_fds(conn, [b"\\0"], [0, 1, write])
conn.sendall(protocol.encode(request))
os.close(write)
print(protocol.read_reply(conn), protocol.read_reply(conn), os.read(read, 4096).decode())
"""


def test_a_command_the_server_cannot_set_up_says_so(fleet: Path, tmp_path: Path) -> None:
    """A worker that cannot take the client's place (its directory is gone) tells the
    client's stderr why and exits 70 (an internal error), never silently."""
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    with serving(root) as (_, log):
        done = subprocess.run([sys.executable, "-c", RAW_CLIENT, os.fspath(tmp_path / "gone")],
                              cwd=root, env=base_env(), capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "(b'X', 70)" in done.stdout, (done.stdout, log.read_text())
        assert "the server could not run the command" in done.stdout
        assert "MTLSC_NO_SERVER=1" in done.stdout
