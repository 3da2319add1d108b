"""Worker processes write a new output directory's files straight into its staging directory
(`unit_files`, `stream_write.StreamingWrite.open`). The guarantees of docs/output.md hold as
when the main process writes: the same bytes, modes and write manifest; a fault in a worker ends
in the same FilesystemError with nothing changed; a kill leaves every cluster absent or complete;
and workers die with the main process, so nothing writes into a staging directory after it.

Forced on small repositories with MTLSC_STREAM_MIN=1 (stream), MTLSC_PARALLEL_MIN=1 and
MTLSC_JOBS=2 (workers).
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler import manifest
from compiler.cli import main
from compiler.stream_write import StreamingWrite
from tests.fleet_support import make_fleet
from tests.test_crash import CLUSTERS, command, env, leftovers, snapshot, write_policies
from tests.test_write_faults import assert_refused_unchanged, mtlsc, tree

WORKERS = {"MTLSC_STREAM_MIN": "1", "MTLSC_PARALLEL_MIN": "1", "MTLSC_JOBS": "2"}


def modes(root: Path) -> dict[str, int]:
    base = root / "overlays"
    return {p.relative_to(base).as_posix(): stat.S_IMODE(p.lstat().st_mode)
            for p in [base, *base.rglob("*")]}


def compile_cli(root: Path, **environ: str) -> tuple[int, str]:
    result = CliRunner(env=environ).invoke(main, ["compile", "--no-cache", "-q", "--root",
                                                  str(root)], catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def with_workers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stream with two workers; records the staging directories workers were given."""
    for name, value in WORKERS.items():
        monkeypatch.setenv(name, value)
    opened: list[str] = []
    real = StreamingWrite.open

    def record(self: StreamingWrite, directory: str) -> str | None:
        found = real(self, directory)
        if found is not None:
            opened.append(directory)
        return found

    monkeypatch.setattr(StreamingWrite, "open", record)
    return opened


def test_workers_write_the_bytes_modes_and_manifest_of_a_whole_write(
        tmp_path: Path, with_workers: list[str]) -> None:
    staged = make_fleet(tmp_path / "staged")
    whole = tmp_path / "whole"
    shutil.copytree(staged, whole)

    assert compile_cli(staged)[0] == 0
    assert with_workers == ["overlays/c0", "overlays/c1", "overlays/c2"]
    assert compile_cli(whole, MTLSC_JOBS="1", MTLSC_STREAM_MIN="1000000")[0] == 0
    assert tree(staged) == tree(whole) and len(tree(staged)) > 100
    assert modes(staged) == modes(whole)
    assert leftovers(staged) == []
    # the manifest records what the workers wrote: a recompile reads none of it again
    for cluster in ("c0", "c1", "c2"):
        entries = manifest.load(staged, f"overlays/{cluster}")
        files = {p.relative_to(staged / "overlays" / cluster).as_posix(): p
                 for p in (staged / "overlays" / cluster).rglob("*") if p.is_file()}
        assert set(entries) == set(files)
        for rel, entry in entries.items():
            assert entry.key == manifest.stat_key(files[rel].lstat())
            assert entry.digest == manifest.digest(files[rel].read_bytes()) and entry.owned
    with_workers.clear()
    # existing directories: compared with the new files here, not staged by workers
    assert compile_cli(staged)[0] == 0 and with_workers == []
    assert tree(staged) == tree(whole)


@pytest.fixture(scope="module")
def cold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with its dev PKI and lock, but no overlays and no cache yet."""
    root = tmp_path_factory.mktemp("cold") / "repo"
    write_policies(root, 0, 6)
    assert mtlsc(root, "compile").returncode == 0
    for state in ("overlays", ".mtlsc/write", ".mtlsc/cache"):
        shutil.rmtree(root / state)
    return root


# Only in the workers, each counting its own calls (os.write would also break the pipe that
# carries their results: a broken worker, tested with SIGKILL below).
WORKER_FAULTS = {
    "ENOSPC writing a file": [{"target": "fsops.write_file", "errno": errno.ENOSPC, "nth": 5,
                               "workers": True}],
    "EIO creating a namespace directory": [{"target": "os.mkdir", "errno": errno.EIO,
                                            "nth": 2, "workers": True}],
    "EROFS creating a file": [{"target": "os.open", "errno": errno.EROFS, "nth": 3,
                               "workers": True}],
    "EIO on the first file, once": [{"target": "fsops.write_file", "errno": errno.EIO,
                                     "nth": 1, "workers": True, "once": True}],
}


@pytest.mark.parametrize("fault", WORKER_FAULTS, ids=list(WORKER_FAULTS))
def test_a_fault_in_a_worker_changes_nothing(cold: Path, tmp_path: Path, fault: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WORKERS.items():
        monkeypatch.setenv(name, value)
    repo = tmp_path / "repo"
    shutil.copytree(cold, repo, symlinks=True)
    before = tree(repo)

    result = mtlsc(repo, "compile", faults=WORKER_FAULTS[fault])

    assert_refused_unchanged(result)
    assert tree(repo) == before and not (repo / "overlays").exists()
    assert not (repo / ".mtlsc/write/journal.json").exists()
    assert mtlsc(repo, "compile").returncode == 0


def test_a_killed_cold_compile_leaves_each_cluster_absent_or_complete(
        cold: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL at a random filesystem change (of the main process or of a worker: each one
    counts its own), over and over, each time towards an empty overlays/ (what a kill left
    is recovered by the next compile)."""
    for name, value in WORKERS.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "repo"
    shutil.copytree(cold, root, symlinks=True)
    counter = tmp_path / "changes"
    done = subprocess.run(command(root, "compile", extra=({"target": "count",
                                                          "path": str(counter)},)),
                          env=env(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    full = {c: snapshot(root / "overlays" / c) for c in CLUSTERS}
    changes = int(counter.read_text())
    rng = random.Random(20261130)
    for trial in range(6):
        for cluster in CLUSTERS:  # cold again, but keep what the kill left for recovery
            shutil.rmtree(root / "overlays" / cluster, ignore_errors=True)
        nth = rng.randint(1, changes)
        subprocess.run(command(root, "compile", extra=({"target": "kill", "nth": nth},)),
                       env=env(), capture_output=True, timeout=120)
        for cluster in CLUSTERS:
            seen = snapshot(root / "overlays" / cluster)
            assert seen is None or seen == full[cluster], f"trial {trial}: {cluster}"
    assert subprocess.run(command(root, "compile"), env=env(), capture_output=True,
                          timeout=120).returncode == 0
    assert leftovers(root) == []
    assert {c: snapshot(root / "overlays" / c) for c in CLUSTERS} == full


def test_workers_die_with_the_main_process(cold: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in WORKERS.items():
        monkeypatch.setenv(name, value)
    root = tmp_path / "repo"
    shutil.copytree(cold, root, symlinks=True)
    write_policies(root, 0, 200)  # enough work for the workers to be busy when it dies
    proc = subprocess.Popen(command(root, "compile"), env=env(), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any((root / "overlays").glob(".mtlsc-stage-*/*/*")):
        assert proc.poll() is None and time.monotonic() < deadline, "no worker wrote"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the session holds only the workers now
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "a worker outlived the main process"
        time.sleep(0.01)
    assert subprocess.run(command(root, "compile"), env=env(), capture_output=True,
                          timeout=300).returncode == 0
    assert leftovers(root) == []
