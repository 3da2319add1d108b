"""The server's watch of the output trees (`compiler.serve.watch`): after any sequence of
changes to the watched trees, what it answers for a directory is exactly what a scan
(`run_disk.scan_lines`) reads at that moment, fingerprint included. The changes are those a
write, a spare swap or a person makes: files written, appended, touched, chmod-ed, removed,
hard-linked between the live and the spare tree, renamed, directories made, removed and
swapped, an interrupted write's leftovers."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.run_disk import digest_sorted, scan_lines
from compiler.serve.watch import Watch

UNITS = ("out/a", "out/b")
TOPS = ("out", "spare")
_COUNTER = itertools.count()


def seed(root: Path) -> None:
    for unit in UNITS:
        for sub in ("", "ns1/", "ns2/deep/"):
            (root / unit / sub).mkdir(parents=True, exist_ok=True)
            for i in range(3):
                (root / unit / f"{sub}f{i}.yaml").write_text(f"{unit} {sub} {i}\n")
    (root / "spare").mkdir()
    shutil.copytree(root / "out/a", root / "spare/x", copy_function=os.link)  # a spare


def agree(root: Path, watch: Watch, churned: frozenset[int] = frozenset()) -> None:
    """The watch answers what a scan reads; only the ctime of a file in `churned` (inodes
    that got a hard link which went again before the watch looked) may be older."""
    watch.refresh()
    for unit in UNITS:
        scanned = scan_lines(root, unit)
        answered = watch.lines(unit)
        if scanned is None:
            assert answered is None
            continue
        assert answered is not None, unit
        lines, fingerprint = answered
        assert sorted(lines) == sorted(scanned), unit
        for rel, line in lines.items():
            if line != scanned[rel]:
                mine, real = line.split("\0"), scanned[rel].split("\0")
                assert int(real[2]) in churned, (rel, mine, real)
                assert mine[:5] == real[:5] and int(mine[5]) < int(real[5]), (rel, mine, real)
        if lines == scanned:
            assert fingerprint == digest_sorted(sorted(scanned.values()))


def files(root: Path) -> list[Path]:
    return sorted(p for top in TOPS for p in (root / top).rglob("*")
                  if p.is_file() or p.is_symlink())


def dirs(root: Path) -> list[Path]:
    return sorted(p for top in TOPS for p in (root / top).rglob("*")
                  if p.is_dir() and not p.is_symlink())


OPS = ("write", "append", "touch", "chmod", "unlink", "link", "rename", "mkdir", "rmtree",
       "swap", "symlink", "leftover", "check")


def apply(root: Path, op: str, data: st.DataObject) -> None:
    live = files(root)
    folders = dirs(root) or [root / "out"]
    pick = lambda items: items[data.draw(st.integers(0, len(items) - 1))]  # noqa: E731
    if op in ("append", "touch", "chmod", "unlink", "link", "rename") and not live:
        op = "write"
    if op == "write":
        target = pick(folders) / f"n{data.draw(st.integers(0, 3))}.yaml"
        if not target.is_symlink():
            target.write_bytes(b"x" * data.draw(st.integers(0, 40)))
    elif op == "append":
        target = pick(live)
        if not target.is_symlink():
            with open(target, "ab") as out:
                out.write(b"more\n")
    elif op == "touch":
        os.utime(pick(live), ns=(10**18, data.draw(st.integers(1, 10**18))),
                 follow_symlinks=False)
    elif op == "chmod":
        target = pick(live)
        if not target.is_symlink():
            target.chmod(data.draw(st.sampled_from([0o600, 0o644, 0o444])))
    elif op == "unlink":
        pick(live).unlink()
    elif op == "link":
        source, where = pick(live), pick(folders)
        dest = where / f"l{next(_COUNTER)}.yaml"
        if not source.is_symlink():
            os.link(source, dest)
    elif op == "rename":
        source, where = pick(live), pick(folders)
        os.replace(source, where / data.draw(st.sampled_from(["f0.yaml", "r.yaml", "n1.yaml"])))
    elif op == "mkdir":
        (pick(folders) / f"d{next(_COUNTER)}").mkdir()
    elif op == "rmtree":
        target = pick(folders)
        if target.name not in ("a", "b", "x"):
            shutil.rmtree(target)
    elif op == "swap":  # what a delta write does: the spare becomes the live tree
        unit = root / pick(list(UNITS))
        spare = root / "spare/x"
        if unit.is_dir() and spare.is_dir():
            aside = root / "spare" / f".t{next(_COUNTER)}"
            os.rename(unit, aside)
            os.rename(spare, unit)
            os.rename(aside, spare)
    elif op == "symlink":
        (pick(folders) / f"s{next(_COUNTER)}").symlink_to("f0.yaml")
    elif op == "leftover":
        where = pick(folders)
        (where / f".mtlsc-stage-{next(_COUNTER)}").write_text("half\n")
        (where / f".mtlsc-old-{next(_COUNTER)}").mkdir()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("watch")


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_watch_answers_what_a_scan_reads(sandbox: Path, data: st.DataObject) -> None:
    root = sandbox / f"r{next(_COUNTER)}"
    root.mkdir()
    try:
        with watched(root) as watch:
            agree(root, watch)
            linked: dict[Path, int] = {}  # links made since the last look -> their inode
            churned: set[int] = set()
            for op in data.draw(st.lists(st.sampled_from(OPS), max_size=25)):
                before = set(files(root))
                apply(root, op, data)
                after = set(files(root))
                if op == "link":
                    linked.update((p, p.lstat().st_ino) for p in after - before)
                churned.update(ino for p, ino in linked.items() if p not in after)
                if op == "check" or data.draw(st.booleans()):
                    agree(root, watch, frozenset(churned))
                    linked.clear()
            agree(root, watch, frozenset(churned))
    finally:
        shutil.rmtree(root)


@contextmanager
def watched(root: Path) -> Iterator[Watch]:
    """A watch of the seeded trees at `root`, from `root` (tops and units are relative to
    the server's directory)."""
    seed(root)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        watch = Watch(TOPS)
        try:
            yield watch
        finally:
            watch.close()
    finally:
        os.chdir(cwd)


def test_dropped_events_mean_reading_everything_again(tmp_path: Path) -> None:
    with watched(tmp_path) as watch:
        (tmp_path / "out/a/f0.yaml").write_text("changed\n")
        watch.drain()
        watch.suspects.clear()  # as if the kernel had dropped the events...
        watch.overflowed = True  # ...and said so (IN_Q_OVERFLOW)
        agree(tmp_path, watch)
        shutil.rmtree(tmp_path / "out")  # a top removed and made again is watched again
        (tmp_path / "out/a").mkdir(parents=True)
        (tmp_path / "out/a/new.yaml").write_text("new\n")
        agree(tmp_path, watch)
        (tmp_path / "out/a/later.yaml").write_text("later\n")
        agree(tmp_path, watch)


def test_a_unit_that_is_not_a_directory_is_unknown(tmp_path: Path) -> None:
    with watched(tmp_path) as watch:
        shutil.rmtree(tmp_path / "out/b")
        (tmp_path / "out/b").write_text("a file\n")
        watch.refresh()
        assert watch.lines("out/b") is None
        assert watch.lines("elsewhere") is None
