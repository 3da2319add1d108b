"""compiler/write.py: plan what changes, apply it all or nothing, own only generated files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from compiler import fsops, journal, write
from compiler.emit import HEADER

OLD = 1_000_000_000_000_000_000  # an mtime (ns) far in the past, to see whether a file was touched


def generated(body: str) -> bytes:
    return (HEADER + body).encode("utf-8")


def put(root: Path, rel: str, data: bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(OLD, OLD))
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` except mtlsc's local state in .mtlsc/."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()
            and not p.relative_to(root).as_posix().startswith(".mtlsc/")}


def temp_files(root: Path) -> list[Path]:
    """Anything a write leaves beside the tree: staging, old copies, temporaries, a journal."""
    return sorted([*root.rglob(".mtlsc-*"), *root.rglob("*.mtlsc-tmp"),
                   *root.rglob("*.mtlsc-bak"), *root.glob(".mtlsc/write/journal.json")])


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """overlays/c/ with one file of each kind the planner distinguishes."""
    put(tmp_path, "overlays/c/same.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/c/changed.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/c/stale.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/c/hand.yaml", b"hand: written\n")
    return tmp_path


WANTED = {
    "overlays/c/same.yaml": generated("a: 1\n"),
    "overlays/c/changed.yaml": generated("a: 2\n"),
    "overlays/c/new/created.yaml": generated("a: 3\n"),
}


# --- plan ----------------------------------------------------------------------------------------


def test_plan_classifies_every_file(repo: Path) -> None:
    p = write.plan(repo, WANTED, ["overlays/c"], ["overlays"])

    assert p.create == {"overlays/c/new/created.yaml": generated("a: 3\n")}
    assert p.update == {"overlays/c/changed.yaml": generated("a: 2\n")}
    assert p.delete == ("overlays/c/stale.yaml",)
    assert p.unchanged == ("overlays/c/same.yaml",)
    assert p.conflicts == ()
    assert p.changed


def test_plan_without_changes(repo: Path) -> None:
    wanted = {rel: data for rel, data in tree(repo).items() if rel != "overlays/c/hand.yaml"}

    p = write.plan(repo, wanted, ["overlays/c"], ["overlays"])

    assert not p.changed
    assert p.unchanged == tuple(sorted(wanted))


def test_plan_is_read_only(repo: Path) -> None:
    before = tree(repo)

    write.plan(repo, WANTED, ["overlays/c"], ["overlays"])

    assert tree(repo) == before


def test_only_files_in_owned_dirs_can_be_stale(repo: Path) -> None:
    put(repo, "elsewhere/old.yaml", generated("a: 1\n"))

    p = write.plan(repo, WANTED, ["overlays/c", "missing-dir"])

    assert p.delete == ("overlays/c/stale.yaml",)
    assert write.plan(repo, {}, ["missing-dir"]).delete == ()


def test_unowned_files_and_symlinks_are_never_stale(repo: Path) -> None:
    (repo / "overlays/c/link.yaml").symlink_to(repo / "overlays/c/same.yaml")
    put(repo, "overlays/c/almost.yaml", HEADER[:-5].encode())  # truncated header

    p = write.plan(repo, WANTED, ["overlays/c"], ["overlays"])

    assert p.delete == ("overlays/c/stale.yaml",)


@pytest.mark.parametrize("obstacle", ["hand-written file", "directory"])
def test_plan_reports_unowned_paths_in_the_way(repo: Path, obstacle: str) -> None:
    rel = "overlays/c/hand.yaml"
    if obstacle == "directory":
        rel = "overlays/c/dir.yaml"
        (repo / rel).mkdir()
    wanted = {**WANTED, rel: generated("mine: now\n")}

    p = write.plan(repo, wanted, ["overlays/c"], ["overlays"])

    assert p.conflicts == (rel,)
    assert rel not in p.create and rel not in p.update


def test_apply_refuses_a_plan_with_conflicts(repo: Path) -> None:
    before = tree(repo)
    p = write.plan(repo, {**WANTED, "overlays/c/hand.yaml": generated("x: 1\n")},
                   ["overlays/c"], ["overlays"])

    with pytest.raises(FileExistsError, match=r"overlays/c/hand\.yaml"):
        write.apply(p)

    assert tree(repo) == before


def test_is_owned_requires_the_header_at_the_start(tmp_path: Path) -> None:
    assert write.is_owned(put(tmp_path, "a.yaml", generated("a: 1\n")))
    assert write.is_owned(put(tmp_path, "b.yaml", HEADER.encode()))
    assert not write.is_owned(put(tmp_path, "c.yaml", HEADER[:-2].encode()))
    assert not write.is_owned(put(tmp_path, "d.yaml", b"# mine\n" + generated("a: 1\n")))
    assert not write.is_owned(put(tmp_path, "e.yaml", b""))
    assert not write.is_owned(tmp_path / "missing.yaml")
    assert not write.is_owned(tmp_path)  # a directory


# --- apply ---------------------------------------------------------------------------------------


def test_apply_writes_the_planned_tree(repo: Path) -> None:
    write.apply(write.plan(repo, WANTED, ["overlays/c"], ["overlays"]))

    assert tree(repo) == {**WANTED, "overlays/c/hand.yaml": b"hand: written\n"}
    created = repo / "overlays/c/new/created.yaml"
    assert stat.S_IMODE(created.stat().st_mode) == 0o644
    assert temp_files(repo) == []


def test_apply_leaves_unchanged_and_unowned_files_alone(repo: Path) -> None:
    write.apply(write.plan(repo, WANTED, ["overlays/c"], ["overlays"]))

    assert (repo / "overlays/c/same.yaml").stat().st_mtime_ns == OLD
    assert (repo / "overlays/c/hand.yaml").stat().st_mtime_ns == OLD
    assert (repo / "overlays/c/changed.yaml").stat().st_mtime_ns != OLD


def test_apply_removes_stale_files_and_prunes_empty_directories(tmp_path: Path) -> None:
    put(tmp_path, "overlays/c/keep.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/c/gone/deep/old.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/c/mixed/old.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/c/mixed/notes.md", b"mine\n")
    put(tmp_path, "overlays/d/old.yaml", generated("a: 1\n"))

    p = write.plan(tmp_path, {"overlays/c/keep.yaml": generated("a: 1\n")}, ["overlays/c"],
                   ["overlays"])
    write.apply(p)

    assert p.delete == ("overlays/c/gone/deep/old.yaml", "overlays/c/mixed/old.yaml",
                        "overlays/d/old.yaml")
    assert tree(tmp_path) == {"overlays/c/keep.yaml": generated("a: 1\n"),
                              "overlays/c/mixed/notes.md": b"mine\n"}
    assert not (tmp_path / "overlays/c/gone").exists()
    assert not (tmp_path / "overlays/d").exists()
    assert (tmp_path / "overlays/c/mixed").is_dir()


def test_pruning_stops_at_the_root(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    put(root, "overlays/c/old.yaml", generated("a: 1\n"))

    write.apply(write.plan(root, {}, [], ["overlays"]))

    assert root.is_dir()
    assert not (root / "overlays/c").exists()


def test_a_staging_failure_changes_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = tree(repo)
    real_write = fsops.write_file
    staged: list[Path] = []

    def fail_on_second(path: Path, data: bytes, **kwargs: Any) -> os.stat_result:
        if staged:
            raise OSError(28, "No space left on device")
        staged.append(path)
        return real_write(path, data, **kwargs)

    monkeypatch.setattr(fsops, "write_file", fail_on_second)
    p = write.plan(repo, WANTED, ["overlays/c"], ["overlays"])
    assert len(p.create) + len(p.update) == 2

    with pytest.raises(OSError, match="No space left"):
        write.apply(p)

    assert staged and not staged[0].exists()  # the first file was staged, then cleaned up
    assert tree(repo) == before  # stale.yaml still there, changed.yaml not replaced
    assert temp_files(repo) == []


def test_a_file_where_a_directory_is_needed_is_in_the_way(repo: Path) -> None:
    wanted = {**WANTED, "overlays/c/hand.yaml/inside.yaml": generated("a: 4\n")}

    p = write.plan(repo, wanted, ["overlays/c"], ["overlays"])

    assert p.conflicts == ("overlays/c/hand.yaml/inside.yaml",)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root ignores directory permissions")
def test_a_read_only_destination_changes_nothing(repo: Path) -> None:
    locked = repo / "overlays/c/new"
    locked.mkdir()
    p = write.plan(repo, {**WANTED, "overlays/c/a-first.yaml": generated("b: 1\n")},
                   ["overlays/c"], ["overlays"])
    before = tree(repo)
    locked.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            write.apply(p)
    finally:
        locked.chmod(0o755)

    assert tree(repo) == before
    assert temp_files(repo) == []


# --- unified_diff --------------------------------------------------------------------------------


def test_unified_diff_of_create_update_and_delete(repo: Path) -> None:
    diff = write.unified_diff(write.plan(repo, WANTED, ["overlays/c"], ["overlays"]))

    assert diff == (
        "--- a/overlays/c/changed.yaml\n"
        "+++ b/overlays/c/changed.yaml\n"
        "@@ -1,2 +1,2 @@\n"
        f" {HEADER}"
        "-a: 1\n"
        "+a: 2\n"
        "--- /dev/null\n"
        "+++ b/overlays/c/new/created.yaml\n"
        "@@ -0,0 +1,2 @@\n"
        f"+{HEADER}"
        "+a: 3\n"
        "--- a/overlays/c/stale.yaml\n"
        "+++ /dev/null\n"
        "@@ -1,2 +0,0 @@\n"
        f"-{HEADER}"
        "-a: 1\n"
    )


def test_unified_diff_is_empty_without_changes(repo: Path) -> None:
    p = write.plan(repo, {"overlays/c/same.yaml": generated("a: 1\n"),
                          "overlays/c/stale.yaml": generated("a: 1\n"),
                          "overlays/c/changed.yaml": generated("a: 1\n")}, ["overlays"])

    assert write.unified_diff(p) == ""


def test_unified_diff_does_not_write(repo: Path) -> None:
    before = tree(repo)

    write.unified_diff(write.plan(repo, WANTED, ["overlays/c"], ["overlays"]))

    assert tree(repo) == before


def test_unified_diff_of_a_file_without_final_newline(tmp_path: Path) -> None:
    put(tmp_path, "overlays/a.yaml", generated("a: 1"))

    diff = write.unified_diff(write.plan(tmp_path, {"overlays/a.yaml": generated("a: 2\n")},
                                         ["overlays"]))

    assert "-a: 1" in diff.splitlines()
    assert "+a: 2" in diff.splitlines()


# --- units, manifest, journal --------------------------------------------------------------------


def test_a_unit_keeps_foreign_files_and_links_unchanged_ones(repo: Path) -> None:
    (repo / "overlays/c/link.yaml").symlink_to("same.yaml")
    same_inode = (repo / "overlays/c/same.yaml").stat().st_ino

    write.apply(write.plan(repo, WANTED, ["overlays/c"], ["overlays"]))

    assert (repo / "overlays/c/same.yaml").stat().st_ino == same_inode  # not rewritten
    assert (repo / "overlays/c/hand.yaml").read_bytes() == b"hand: written\n"
    assert os.readlink(repo / "overlays/c/link.yaml") == "same.yaml"
    assert temp_files(repo) == []


def test_a_removed_cluster_directory_goes_as_a_whole(tmp_path: Path) -> None:
    put(tmp_path, "overlays/old/ns/a.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/mixed/ns/a.yaml", generated("a: 1\n"))
    put(tmp_path, "overlays/mixed/README.md", b"mine\n")

    p = write.plan(tmp_path, {"overlays/c/k.yaml": generated("k: 1\n")}, ["overlays/c"],
                   ["overlays"])
    write.apply(p)

    assert p.delete == ("overlays/mixed/ns/a.yaml", "overlays/old/ns/a.yaml")
    assert not (tmp_path / "overlays/old").exists()
    assert tree(tmp_path) == {"overlays/c/k.yaml": generated("k: 1\n"),
                              "overlays/mixed/README.md": b"mine\n"}


def test_the_manifest_spares_reading_unchanged_files(tmp_path: Path) -> None:
    files = {f"overlays/c/f{i}.yaml": generated(f"i: {i}\n") for i in range(20)}
    write.apply(write.plan(tmp_path, files, ["overlays/c"]))
    time.sleep(0.05)  # let the filesystem clock pass the files' ctime ("racy" entries)
    write.apply(write.plan(tmp_path, files, ["overlays/c"]))  # records what the first wrote

    again = write.plan(tmp_path, files, ["overlays/c"])

    assert not again.changed and again.units[0].misses == 0


def test_the_manifest_is_not_trusted_after_an_edit(tmp_path: Path) -> None:
    files = {"overlays/c/a.yaml": generated("a: 1\n")}
    write.apply(write.plan(tmp_path, files, ["overlays/c"]))
    write.apply(write.plan(tmp_path, files, ["overlays/c"]))
    path = tmp_path / "overlays/c/a.yaml"
    st = path.stat()
    with path.open("r+b") as fh:  # same size, same inode, mtime put back: only ctime moves
        fh.seek(len(HEADER) + 3)
        fh.write(b"2")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    p = write.plan(tmp_path, files, ["overlays/c"])

    assert p.update == files and p.units[0].misses == 1


def test_a_damaged_manifest_is_ignored(tmp_path: Path) -> None:
    files = {"overlays/c/a.yaml": generated("a: 1\n")}
    write.apply(write.plan(tmp_path, files, ["overlays/c"]))
    for manifest_file in (tmp_path / ".mtlsc/write/manifests").iterdir():
        manifest_file.write_text('{"version": 1, "dir": "overlays/c", "files": {"a.yaml": [1]}}')

    assert not write.plan(tmp_path, files, ["overlays/c"]).changed


def test_recovery_rolls_back_a_half_done_fallback_swap(tmp_path: Path) -> None:
    put(tmp_path, "overlays/.mtlsc-old-c/a.yaml", generated("old\n"))
    put(tmp_path, "overlays/.mtlsc-stage-c/a.yaml", generated("new\n"))
    journal.begin(tmp_path, journal.Journal((journal.UnitPaths("overlays/c"),), ()))

    removed = journal.recover(tmp_path)

    assert tree(tmp_path) == {"overlays/c/a.yaml": generated("old\n")}
    assert removed == ["overlays/.mtlsc-old-c", "overlays/.mtlsc-stage-c"]
    assert temp_files(tmp_path) == []


def test_recovery_sweeps_strays_without_a_journal(tmp_path: Path) -> None:
    put(tmp_path, "overlays/.mtlsc-stage-c/a.yaml", generated("new\n"))
    put(tmp_path, "overlays/c/a.yaml", generated("old\n"))

    assert journal.recover(tmp_path, ["overlays"]) == ["overlays/.mtlsc-stage-c"]
    assert tree(tmp_path) == {"overlays/c/a.yaml": generated("old\n")}


def test_the_two_rename_fallback_gives_the_same_tree(repo: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(a: Path, b: Path) -> None:
        raise fsops.ExchangeUnsupported("test")

    monkeypatch.setattr(fsops, "exchange", unsupported)
    put(repo, "overlays/.mtlsc-old-c/x.yaml", b"a crash's leftover, its journal lost\n")
    write.apply(write.plan(repo, WANTED, ["overlays/c"], ["overlays"]))

    assert tree(repo) == {**WANTED, "overlays/c/hand.yaml": b"hand: written\n"}
    assert temp_files(repo) == []


def test_the_manifest_matches_the_tree_after_a_swap(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Removing the old tree changes the ctime of every file it shared with the new one: the
    manifest is saved after that, so the next plan reads nothing it kept."""
    from compiler import tree_ops

    real = tree_ops.remove_trees

    def slow(paths: list[str], threads: int = tree_ops.REMOVE_THREADS) -> None:
        real(paths, threads)
        time.sleep(0.05)  # let the filesystem clock pass the removal (no "racy" entries)

    monkeypatch.setattr(tree_ops, "remove_trees", slow)
    files = {f"overlays/c/ns-{i % 3}/f{i}.yaml": generated(f"i: {i}\n") for i in range(30)}
    write.apply(write.plan(tmp_path, files, ["overlays/c"]))
    edited = {**files, "overlays/c/ns-0/f0.yaml": generated("i: edited\n")}

    swap = write.plan(tmp_path, edited, ["overlays/c"])
    write.apply(swap)
    again = write.plan(tmp_path, edited, ["overlays/c"])

    assert list(swap.update) == ["overlays/c/ns-0/f0.yaml"]
    assert not again.changed and again.units[0].misses == 0
    assert temp_files(tmp_path) == []


@pytest.mark.skipif(sys.platform != "linux", reason="renameat2, syncfs and prctl are Linux's")
def test_the_c_functions_are_found_without_running_ldconfig() -> None:
    """fsops finds libc's functions among the process's own symbols: importing it starts no
    subprocess (`ctypes.util.find_library` ran `ldconfig -p`, 20 ms of every start-up)."""
    probe = ("import subprocess, sys\n"
             "def refuse(*a, **k): raise SystemExit('a subprocess was started')\n"
             "subprocess.Popen = refuse\n"
             "from compiler import fsops\n"
             "names = ('renameat2', 'syncfs', 'prctl')\n"
             "missing = [n for n in names if fsops._function(n) is None]\n"
             "assert not missing, missing\n"
             "assert 'ctypes.util' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
