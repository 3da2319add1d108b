"""compiler/tree_ops.py: bulk links, tree removal through directory descriptors, identities."""

from __future__ import annotations

import os
from pathlib import Path

from compiler import manifest, tree_ops


def _tree(base: Path) -> None:
    for rel in ("a.yaml", "ns-1/b.yaml", "ns-1/deep/c.yaml", "ns-2/d.yaml"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(rel)
    (base / "empty").mkdir()


def test_remove_trees_removes_everything_and_follows_no_link(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    doomed = tmp_path / "doomed"
    _tree(doomed)
    (doomed / "ns-1" / "to-outside").symlink_to(outside)
    (doomed / "file-link").symlink_to(outside / "keep.txt")
    single = tmp_path / "single.txt"
    single.write_text("x")
    dangling = tmp_path / "dangling"
    dangling.symlink_to(outside)

    tree_ops.remove_trees([str(doomed), str(single), str(dangling), str(tmp_path / "absent")])

    assert sorted(p.name for p in tmp_path.iterdir()) == ["outside"]
    assert (outside / "keep.txt").read_text() == "keep"


def test_remove_trees_in_one_thread_does_the_same(tmp_path: Path) -> None:
    _tree(tmp_path / "t")
    tree_ops.remove_trees([str(tmp_path / "t")], threads=1)
    assert not (tmp_path / "t").exists()


def test_link_all_shares_inodes_and_reports_what_needs_a_copy(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _tree(src)
    for rel in ("ns-1/deep", "ns-2"):
        (dst / rel).mkdir(parents=True)
    names = ["a.yaml", "ns-1/deep/c.yaml", "ns-2/d.yaml"]

    assert tree_ops.link_all(str(src), str(dst), names) == []

    for rel in names:
        assert (dst / rel).stat().st_ino == (src / rel).stat().st_ino
    found = tree_ops.identities(str(dst), [*names, "missing.yaml"])
    assert sorted(found) == sorted(names)
    assert found["a.yaml"] == manifest.stat_key(os.lstat(dst / "a.yaml"))
