"""Filesystem faults during a real `mtlsc compile` (a subprocess with one `os` call broken):
exit 3 with one clear FilesystemError, no traceback, the old tree byte for byte, no leftovers.

Faults are injected by tests/faults.py (ENOSPC, EIO, EROFS, EACCES at the n-th call of a
function the writer uses); root ignores permissions, so read-only directories are simulated the
same way. The immutable attribute is also tested for real with chattr(1) when it is available.
"""

from __future__ import annotations

import errno
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO
from tests.test_crash import env, leftovers, write_policies

INTENTS = 6


def tree(root: Path) -> dict[str, bytes]:
    """Everything in the repository except mtlsc's local state (.mtlsc/write, and the render
    cache, which a compile fills before it writes)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not p.relative_to(root).as_posix().startswith(
                (".mtlsc/write", ".mtlsc/cache"))}


def mtlsc(root: Path, *args: str, faults: list[dict[str, object]] | None = None,
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.faults", json.dumps(faults or []),
                           *args, "--root", str(root), "--quiet"], capture_output=True,
                          text=True, env=env(), cwd=REPO, timeout=120)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository compiled at version 0; tests copy it and move it to version 1."""
    root = tmp_path_factory.mktemp("faults") / "repo"
    write_policies(root, 0, INTENTS)
    assert mtlsc(root, "compile").returncode == 0
    return root


@pytest.fixture
def repo(compiled: Path, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(compiled, root, symlinks=True)
    write_policies(root, 1, INTENTS)  # changes, deletes and keeps files in every cluster
    return root


def assert_refused_unchanged(result: subprocess.CompletedProcess[str]) -> None:
    """A filesystem fault: exit 3, a located FilesystemError saying nothing changed, no
    traceback."""
    assert result.returncode == 3, result.stderr
    assert "error[FilesystemError]" in result.stderr
    assert "nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr


def assert_untouched(root: Path, before: dict[str, bytes]) -> None:
    assert tree(root) == before
    assert leftovers(root) == []


FAULTS = {
    "ENOSPC writing the journal": [{"target": "os.write", "errno": errno.ENOSPC, "nth": 1}],
    "ENOSPC staging a file": [{"target": "os.write", "errno": errno.ENOSPC, "nth": 4}],
    "EIO on fsync": [{"target": "os.fsync", "errno": errno.EIO, "nth": 3}],
    "EIO linking an unchanged file": [{"target": "os.link", "errno": errno.EIO, "nth": 5}],
    "EROFS creating the staging directory": [{"target": "os.mkdir", "errno": errno.EROFS}],
    "EACCES: overlays/ read-only": [{"target": "os.mkdir", "errno": errno.EACCES}],
    "EIO swapping the second cluster": [
        {"target": "fsops.exchange", "errno": errno.EIO, "nth": 2, "once": True}],
    "EIO in the two-rename fallback": [
        {"target": "renameat2"},
        {"target": "os.rename", "errno": errno.EIO, "nth": 2, "once": True}],
    "immutable stale file": [{"target": "immutable", "names": ["gateway-gw0.yaml"]}],
    "immutable kept file": [{"target": "immutable", "names": ["gateway-gw1.yaml"]}],
}


@pytest.mark.parametrize("writer", ["whole", "streamed"])
@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
def test_a_filesystem_fault_changes_nothing(repo: Path, fault: str, writer: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`streamed`: each cluster staged while the next ones compile (MTLSC_STREAM_MIN=1)."""
    if writer == "streamed":
        monkeypatch.setenv("MTLSC_STREAM_MIN", "1")
    before = tree(repo)

    result = mtlsc(repo, "compile", faults=FAULTS[fault])

    assert_refused_unchanged(result)
    assert_untouched(repo, before)
    assert mtlsc(repo, "compile").returncode == 0  # and the next run simply works


def test_a_failed_swap_back_is_reported_honestly(repo: Path) -> None:
    result = mtlsc(repo, "compile", faults=[{"target": "fsops.exchange", "errno": errno.EIO,
                                            "nth": 2}])

    assert result.returncode == 3
    assert "swapping back failed too" in result.stderr
    assert "nothing was changed" not in result.stderr
    assert "Traceback" not in result.stderr
    assert mtlsc(repo, "check").returncode == 1  # the journal is still there
    assert mtlsc(repo, "compile").returncode == 0  # which recovers and finishes the job
    assert leftovers(repo) == []
    assert mtlsc(repo, "check").returncode == 0


def test_the_immutable_attribute_for_real(repo: Path) -> None:
    victim = repo / "overlays/east/ns0/gateway-gw0.yaml"  # gw0 is deleted in version 1
    if shutil.which("chattr") is None or \
            subprocess.run(["chattr", "+i", str(victim)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here (the injected variant above covers it)")
    try:
        before = tree(repo)
        result = mtlsc(repo, "compile")
        assert result.returncode == 3, result.stderr
        assert "immutable" in result.stderr and "gateway-gw0.yaml" in result.stderr
        assert_untouched(repo, before)
    finally:
        subprocess.run(["chattr", "-i", str(victim)], check=True)
    assert mtlsc(repo, "compile").returncode == 0


def test_a_hand_written_file_in_the_way(repo: Path) -> None:
    (repo / "overlays/west/ns1/httproute-r1.yaml").write_text("# mine\n")
    before = tree(repo)

    result = mtlsc(repo, "compile")

    assert result.returncode == 1
    assert "error[FileInTheWay]" in result.stderr and "httproute-r1.yaml" in result.stderr
    assert_untouched(repo, before)


def test_a_file_where_the_cluster_directory_goes(repo: Path) -> None:
    shutil.rmtree(repo / "overlays/north")
    (repo / "overlays/north").write_text("not a directory\n")
    before = tree(repo)

    result = mtlsc(repo, "compile")

    assert result.returncode == 1
    assert "overlays/north exists and is not a directory" in result.stderr
    assert_untouched(repo, before)
