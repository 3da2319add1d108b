"""Finding and reading policy files: nothing unsafe is opened, nothing unreadable is skipped.

The golden corpus (tests/cases/file-*) shows each problem's diagnostic; these tests check what
the corpus cannot: that special files are never opened, that failures of the environment are
reported as such, and that discovery is deterministic.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from compiler.diagnostics import ExitCode, exit_code
from compiler.load import load_texts
from compiler.policy_files import read_policy_files

DOC = "apiVersion: mtlsc.dev/v1alpha1\nkind: Nothing\n"


def _repo(tmp_path: Path) -> Path:
    (tmp_path / "policies" / "b").mkdir(parents=True)
    (tmp_path / "policies" / "b" / "z.yaml").write_text(DOC)
    (tmp_path / "policies" / "a.yml").write_text(DOC)
    (tmp_path / "policies" / "c.yaml").write_text(DOC)
    (tmp_path / "policies" / "notes.txt").write_text("not a policy")
    return tmp_path


def test_reads_every_policy_file_in_sorted_order(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    files = read_policy_files(root / "policies", root)
    assert list(files) == ["policies/a.yml", "policies/b/z.yaml", "policies/c.yaml"]
    assert not files.problems


def test_special_files_and_outside_links_are_never_opened(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    policies = root / "policies"
    os.mkfifo(policies / "pipe.yaml")
    os.symlink("/dev/zero", policies / "zero.yaml")
    os.symlink("/etc/hostname", policies / "host.yaml")
    opened: list[str] = []
    real_open = os.open

    def spy(path: Any, flags: int, *args: Any) -> int:
        opened.append(os.fspath(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", spy)
    files = read_policy_files(policies, root)
    assert sorted(Path(p).name for p in opened) == ["a.yml", "c.yaml", "z.yaml"]
    assert [(d.code, d.location.file) for d in files.problems  # type: ignore[union-attr]
            ] == [("LinkOutsideRepository", "policies/host.yaml"),
                  ("SpecialFile", "policies/pipe.yaml"),
                  ("LinkOutsideRepository", "policies/zero.yaml")]


def test_unreadable_file_is_reported_with_exit_3(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    real_open = os.open

    def deny(path: Any, flags: int, *args: Any) -> int:
        if os.fspath(path).endswith("c.yaml"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", deny)
    files = read_policy_files(root / "policies", root)
    _, diagnostics = load_texts(files)
    unreadable = [d for d in diagnostics if d.code == "UnreadableFile"]
    assert [d.location.file for d in unreadable] == ["policies/c.yaml"]  # type: ignore[union-attr]
    assert "policies/c.yaml" not in files
    assert exit_code(diagnostics) is ExitCode.SOURCE


def test_unlistable_directory_is_reported(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    real_scandir = os.scandir

    def deny(path: Any) -> Any:
        if os.fspath(path).endswith("/b"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", deny)
    files = read_policy_files(root / "policies", root)
    assert [(d.code, d.location.file) for d in files.problems  # type: ignore[union-attr]
            ] == [("UnreadableFile", "policies/b")]
    assert list(files) == ["policies/a.yml", "policies/c.yaml"]


def test_link_inside_the_repository_is_read_once_under_its_target(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    os.symlink("c.yaml", root / "policies" / "d.yaml")
    files = read_policy_files(root / "policies", root)
    assert list(files) == ["policies/a.yml", "policies/b/z.yaml", "policies/c.yaml"]


def test_file_growing_past_the_cap_while_read_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _repo(tmp_path)
    real_read = os.read

    def endless(fd: int, size: int) -> bytes:
        return b"#" * size if size > 0 else real_read(fd, size)

    monkeypatch.setattr(os, "read", endless)
    files = read_policy_files(root / "policies", root)
    assert {d.code for d in files.problems} == {"FileTooLarge"}
    assert not files
