"""compiler/spare/ (write, plan, trees): an edit written through spare trees gives exactly the
tree a full write gives, keeps every output directory old or new through faults and kills,
and leaves hash manifests that vouch for every file.

Two repositories are moved through the same versions side by side: one by the full writer
only (the reference), one by `write_changes` after a first full write with spares."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from compiler import fsops, journal, manifest, run_disk, write
from compiler.emit import HEADER
from compiler.journal import Journal
from compiler.manifest import Entry
from compiler.spare import plan as spare_plan
from compiler.spare import trees as spare
from compiler.spare import view as spare_view
from compiler.spare import write as spare_write
from tests.support import REPO

UNITS = ("overlays/a", "overlays/b")
FOREIGN = "ns0/mine.txt"  # a hand-written file in overlays/a, in its manifest as not owned

Files = dict[str, bytes]
Snapshot = dict[str, tuple[str, int, bytes]]


def version(v: int) -> Files:
    """Every file of both output directories at version `v`: some files change with each
    version, `extra/` exists only in odd versions, `ns2/gone-*` only in version 0."""
    out: Files = {}
    for unit in UNITS:
        for i in range(24):
            body = f"v{v} " if i % 8 == 0 else ""
            out[f"{unit}/ns{i % 3}/obj-{i}.yaml"] = f"{HEADER}{body}{unit} {i}\n".encode()
        out[f"{unit}/envoy/ns0/gw.yaml"] = f"{HEADER}envoy {v % 2}\n".encode()
        if v % 2:
            out[f"{unit}/extra/deep/x-{v}.yaml"] = f"{HEADER}extra {v}\n".encode()
        if v == 0:
            out[f"{unit}/ns2/gone-{unit[-1]}.yaml"] = f"{HEADER}gone\n".encode()
    return out


def changes_between(old: Files, new: Files) -> dict[str, dict[str, bytes | None]]:
    out: dict[str, dict[str, bytes | None]] = {unit: {} for unit in UNITS}
    for path in sorted({*old, *new}):
        unit, _, rel = path.partition("/")[2].partition("/")
        if old.get(path) != new.get(path):
            out[f"overlays/{unit}"][rel] = new.get(path)
    return out


def full_write(root: Path, files: Files, keep_spare: bool = True) -> write.WritePlan:
    p = write.plan(root, files, UNITS)
    write.apply(p, keep_spare=keep_spare)
    return p


def snapshot(directory: Path) -> Snapshot:
    """Every entry with its kind, mode and content (directories included, and the top)."""
    out: Snapshot = {"": ("dir", stat.S_IMODE(directory.lstat().st_mode), b"")}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        rel = path.relative_to(directory).as_posix()
        if stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
    return out


def trees(root: Path) -> dict[str, Snapshot]:
    return {unit: snapshot(root / unit) for unit in UNITS}


def assert_vouched(root: Path, unit: str) -> None:
    """The hash manifest names every file of the directory with its identity and content."""
    known = manifest.load(root, unit)
    found = {p.relative_to(root / unit).as_posix(): p for p in (root / unit).rglob("*")
             if not p.is_dir()}
    assert set(known) == set(found)
    for rel, entry in known.items():
        assert entry.key == manifest.stat_key(found[rel].lstat()), rel
        assert entry.digest == hashlib.sha256(found[rel].read_bytes()).hexdigest(), rel


def leftovers(root: Path) -> list[str]:
    return sorted([p.name for p in (root / "overlays").iterdir() if p.name.startswith(".")]
                  + (["journal"] if (root / journal.JOURNAL).exists() else []))


def add_foreign(root: Path) -> None:
    """A file mtlsc does not own, and directories with their own modes, in overlays/a; the
    delta repository's manifest lists the foreign file (what a caller checks against)."""
    path = root / UNITS[0] / FOREIGN
    path.write_bytes(b"hand: written\n")
    (root / UNITS[0] / "empty").mkdir()
    os.chmod(root / UNITS[0] / "ns1", 0o750)
    known = manifest.load(root, UNITS[0])
    known[FOREIGN] = Entry(manifest.stat_key(path.lstat()),
                           hashlib.sha256(b"hand: written\n").hexdigest(), False)
    spare.settle(root, max(e.key[4] for e in known.values()))
    manifest.save(root, UNITS[0], known)


@pytest.fixture(autouse=True)
def small_spares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MTLSC_SPARE_MIN", "1")


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """(full-write reference, delta) repositories at version 0, each with a foreign file."""
    ref, delta = tmp_path / "ref", tmp_path / "delta"
    for root in (ref, delta):
        full_write(root, version(0), keep_spare=root == delta)
        add_foreign(root)
    return ref, delta


def test_a_full_write_with_keep_spare_links_a_spare_then_keeps_the_old_tree(
        tmp_path: Path) -> None:
    full_write(tmp_path, version(0))
    for unit in UNITS:  # a first spare: the live tree hard-linked, the manifest still exact
        live = {p.relative_to(tmp_path / unit): p.lstat().st_ino
                for p in (tmp_path / unit).rglob("*") if p.is_file()}
        home = spare.path_of(tmp_path, unit)
        assert {p.relative_to(home): p.lstat().st_ino for p in home.rglob("*")
                if p.is_file()} == live
        assert_vouched(tmp_path, unit)
    before = trees(tmp_path)
    full_write(tmp_path, version(1))
    for unit in UNITS:  # the swapped-out tree is the spare, and nothing was left beside
        assert snapshot(spare.path_of(tmp_path, unit)) == before[unit]
        assert_vouched(tmp_path, unit)
    assert leftovers(tmp_path) == []


def test_without_keep_spare_the_writer_keeps_no_spare(tmp_path: Path) -> None:
    full_write(tmp_path, version(0), keep_spare=False)
    full_write(tmp_path, version(1), keep_spare=False)
    assert not (tmp_path / spare.SPARE_DIR).exists()
    assert leftovers(tmp_path) == []


def test_a_removed_output_directory_loses_its_spare(tmp_path: Path) -> None:
    full_write(tmp_path, version(0))
    files = {k: v for k, v in version(0).items() if k.startswith(UNITS[0])}
    p = write.plan(tmp_path, files, [UNITS[0]], prune=["overlays"])
    write.apply(p, keep_spare=True)
    assert not (tmp_path / UNITS[1]).exists()
    assert not spare.exists(tmp_path, UNITS[1]) and spare.exists(tmp_path, UNITS[0])


def test_changes_give_the_tree_a_full_write_gives(pair: tuple[Path, Path]) -> None:
    """Versions 0 -> 1 -> 2 -> 1 -> 3 -> 0: files changed, created, deleted, a directory
    created and removed, the same spare reused each time (A -> B -> C -> B)."""
    ref, delta = pair
    current = version(0)
    for v in (1, 2, 1, 3, 0):
        target = version(v)
        plan = full_write(ref, target)
        done = spare_write.write_changes(delta, changes_between(current, target))
        assert done is not None
        assert trees(delta) == trees(ref), f"version {v}"
        assert done.counts == (len(plan.create), len(plan.update), len(plan.delete),
                               len(plan.unchanged))
        for unit in UNITS:
            assert_vouched(delta, unit)
            assert done.units[unit].entries == manifest.load(delta, unit)
            assert (delta / UNITS[0] / FOREIGN).read_bytes() == b"hand: written\n"
        assert leftovers(delta) == []
        current = target


def test_the_spare_record_spares_listing_the_spare(pair: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With a valid record (made by the write that linked or swapped the spare) only the
    spare's directories are looked at: listing the spare would fail here."""
    ref, delta = pair
    full_write(ref, version(1))  # the first lists: the foreign file changed the manifest
    assert spare_write.write_changes(delta, changes_between(version(0), version(1)))

    def refused(base: str) -> spare_view.SpareView:
        raise AssertionError(f"listed {base}")

    monkeypatch.setattr(spare_view, "full_listing", refused)
    current = version(1)
    for v in (2, 3, 0):
        full_write(ref, version(v))
        assert spare_write.write_changes(delta, changes_between(current, version(v)))
        assert trees(delta) == trees(ref)
        current = version(v)


def test_a_full_write_records_the_spare_it_keeps(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The old tree kept by a full write comes with a record (the files written, deleted or
    copied differ): the next delta write lists nothing."""
    ref, delta = tmp_path / "ref", tmp_path / "delta"
    full_write(delta, version(0))
    full_write(delta, version(1))

    def refused(base: str) -> spare_view.SpareView:
        raise AssertionError(f"listed {base}")

    monkeypatch.setattr(spare_view, "full_listing", refused)
    full_write(ref, version(2), keep_spare=False)
    assert spare_write.write_changes(delta, changes_between(version(1), version(2)))
    assert trees(delta) == trees(ref)
    for unit in UNITS:
        assert_vouched(delta, unit)


def test_a_record_made_against_another_manifest_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full write without spares changes the live tree but not the spare: the spare's
    record no longer describes how the two differ, so the whole spare is listed."""
    ref, delta = tmp_path / "ref", tmp_path / "delta"
    full_write(delta, version(0))
    assert spare_write.write_changes(delta, changes_between(version(0), version(1)))
    full_write(delta, version(2), keep_spare=False)
    full_write(delta, version(2), keep_spare=False)  # the manifest of every file again
    assert all(_trusted(delta, unit) for unit in UNITS)  # what the caller checks first
    listed: list[str] = []
    real = spare_view.full_listing

    def counted(base: str) -> spare_view.SpareView:
        listed.append(base)
        return real(base)

    monkeypatch.setattr(spare_view, "full_listing", counted)
    full_write(ref, version(3))
    assert spare_write.write_changes(delta, changes_between(version(2), version(3)))
    assert trees(delta) == trees(ref)
    assert len(listed) == len(UNITS)


def test_the_returned_entries_give_the_directory_fingerprint(pair: tuple[Path, Path]) -> None:
    _, delta = pair
    done = spare_write.write_changes(delta, changes_between(version(0), version(1)))
    assert done is not None
    for unit in UNITS:
        assert run_disk.fingerprint(delta, unit) == run_disk.fingerprint_of(
            [(rel, entry.key) for rel, entry in done.units[unit].entries.items()])


def test_no_change_at_all_touches_nothing(pair: tuple[Path, Path]) -> None:
    _, delta = pair
    before = {unit: manifest.load(delta, unit) for unit in UNITS}
    same = {UNITS[0]: {"ns0/obj-0.yaml": version(0)[f"{UNITS[0]}/ns0/obj-0.yaml"]}}
    done = spare_write.write_changes(delta, same)
    assert done is not None and done.counts == (0, 0, 0, 26)
    assert {unit: manifest.load(delta, unit) for unit in UNITS} == before


def test_a_spare_tampered_with_is_repaired(pair: tuple[Path, Path]) -> None:
    """Files replaced, added, removed, a directory's mode changed in the spare: a spare is
    never trusted, every file that is not the live inode is replaced."""
    ref, delta = pair
    full_write(ref, version(1))
    assert spare_write.write_changes(delta, changes_between(version(0), version(1)))
    home = spare.path_of(delta, UNITS[0])
    victim = home / "ns1/obj-4.yaml"  # the same content in every version: a shared inode
    victim.unlink()
    victim.write_bytes(f"{HEADER}tampered\n".encode())
    (home / "ns2/obj-5.yaml").unlink()
    (home / "ns0/junk.yaml").write_bytes(b"junk\n")
    (home / "junkdir/deeper").mkdir(parents=True)
    os.chmod(home / "ns0", 0o700)
    recheck(delta, UNITS[0])
    full_write(ref, version(2))
    assert spare_write.write_changes(delta, changes_between(version(1), version(2)))
    assert trees(delta) == trees(ref)
    assert_vouched(delta, UNITS[0])


def test_an_edit_in_place_of_a_shared_file_shows_in_the_live_fingerprint(
        pair: tuple[Path, Path]) -> None:
    """A spare file is the live file's inode: editing it in place edits the live file, which
    the caller's check of the live tree against its manifest sees (so it writes in full)."""
    _, delta = pair
    known = manifest.load(delta, UNITS[0])
    recorded = run_disk.fingerprint_of([(r, e.key) for r, e in known.items()])
    assert run_disk.fingerprint(delta, UNITS[0]) == recorded
    with open(spare.path_of(delta, UNITS[0]) / "ns1/obj-4.yaml", "ab") as fh:
        fh.write(b"# edited\n")
    assert run_disk.fingerprint(delta, UNITS[0]) != recorded


@pytest.mark.parametrize("damage", ["no spare", "no spare of one", "no manifest",
                                    "spare too far away", "spare on a file",
                                    "journal pending", "manifest lacks a file"])
def test_without_a_usable_spare_nothing_changes(pair: tuple[Path, Path], damage: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, delta = pair
    if damage == "no spare":
        shutil.rmtree(delta / spare.SPARE_DIR)
    elif damage == "no spare of one":
        shutil.rmtree(spare.path_of(delta, UNITS[1]))
    elif damage == "no manifest":
        manifest.forget(delta, UNITS[1])
    elif damage == "spare too far away":
        monkeypatch.setattr(spare_plan, "REPAIR_MIN", 1)
        for path in sorted(spare.path_of(delta, UNITS[1]).rglob("obj-1*.yaml")):
            path.unlink()
    elif damage == "manifest lacks a file":  # the caller's check would fail: it is seen
        known = manifest.load(delta, UNITS[1])
        del known["ns1/obj-4.yaml"]
        manifest.save(delta, UNITS[1], known)
    elif damage == "spare on a file":
        shutil.rmtree(spare.path_of(delta, UNITS[1]))
        spare.path_of(delta, UNITS[1]).write_text("not a tree\n")
    else:
        journal.begin(delta, Journal((), ()))
    before = trees(delta)
    manifests = {unit: manifest.load(delta, unit) for unit in UNITS}

    assert spare_write.write_changes(delta, changes_between(version(0), version(1))) is None

    assert trees(delta) == before
    assert {unit: manifest.load(delta, unit) for unit in UNITS} == manifests
    assert leftovers(delta) == (["journal"] if damage == "journal pending" else [])


@pytest.mark.parametrize("change", [
    {UNITS[0]: {FOREIGN: b"mine now\n"}},  # a file mtlsc does not own is in the way
    {UNITS[0]: {FOREIGN: None}},  # ... and is never deleted
    {UNITS[0]: {"ns0": HEADER.encode()}},  # a directory is in the way
    {UNITS[0]: {"ns0/obj-0.yaml/x.yaml": HEADER.encode()}},  # a file is in the way
    {UNITS[0]: {"../escape.yaml": HEADER.encode()}},
    {"overlays": {"a/ns0/obj-0.yaml": HEADER.encode()}, UNITS[0]: {}},  # nested
])
def test_what_the_full_writer_must_judge_is_left_to_it(pair: tuple[Path, Path],
                                                        change: dict[str, Any]) -> None:
    _, delta = pair
    before = trees(delta)
    assert spare_write.write_changes(delta, change) is None
    assert trees(delta) == before


def _fail(real: Any, nth: int, code: int = errno.EIO) -> Any:
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == nth:
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)
    return wrapper


def tamper(root: Path, unit: str) -> None:
    """Make the spare need every kind of repair: links, a directory made and one removed,
    entries unlinked."""
    home = spare.path_of(root, unit)
    shutil.rmtree(home / "ns1")
    (home / "junkdir/deeper").mkdir(parents=True)
    (home / "ns0/junk.yaml").write_bytes(b"junk\n")
    recheck(root, unit)


def recheck(root: Path, unit: str) -> None:
    """Unlinking a spare file that is a live file's inode changes the live file's ctime:
    record the live identities again, as the caller's check of the live tree requires."""
    manifest.save(root, unit, spare.restat(root, unit, manifest.load(root, unit)))


# (function, which call fails): the first calls of write, fsync, replace and unlink are the
# journal's (a journal that cannot be written; unlink 2 and 3 drop the spares' records), the
# later ones the spare's.
FAULTS = [("write", 1), ("write", 2), ("fsync", 1), ("fsync", 3), ("replace", 1),
          ("replace", 2), ("unlink", 2), ("unlink", 4), ("link", 1), ("link", 5),
          ("mkdir", 1), ("rmdir", 1), ("chmod", 1)]


@pytest.mark.parametrize(("name", "nth"), FAULTS, ids=[f"{n}-{i}" for n, i in FAULTS])
def test_a_fault_while_updating_the_spare_changes_nothing(pair: tuple[Path, Path], name: str,
                                                          nth: int,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          ) -> None:
    ref, delta = pair
    tamper(delta, UNITS[0])
    before = trees(delta)
    monkeypatch.setattr(os, name, _fail(getattr(os, name), nth, errno.ENOSPC))

    assert spare_write.write_changes(delta, changes_between(version(0), version(1))) is None

    monkeypatch.undo()
    assert trees(delta) == before
    assert leftovers(delta) == []
    for unit in UNITS:
        assert_vouched(delta, unit)  # re-recorded: the full write that follows reads nothing
    full_write(ref, version(1))  # and the next attempt simply works
    assert spare_write.write_changes(delta, changes_between(version(0), version(1)))
    assert trees(delta) == trees(ref)


def test_a_failed_second_swap_is_undone(pair: tuple[Path, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _, delta = pair
    before = trees(delta)
    monkeypatch.setattr(fsops, "exchange", _fail(fsops.exchange, 2))

    with pytest.raises(OSError) as caught:
        spare_write.write_changes(delta, changes_between(version(0), version(1)))

    assert not isinstance(caught.value, write.PartialWriteError)
    assert trees(delta) == before
    assert leftovers(delta) == []


def test_a_failed_swap_back_is_reported_as_partial(pair: tuple[Path, Path],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _, delta = pair
    real = fsops.exchange
    calls = 0

    def exchange(a: Path, b: Path) -> None:
        nonlocal calls
        calls += 1
        if calls >= 2:
            raise OSError(errno.EIO, "I/O error")
        real(a, b)

    monkeypatch.setattr(fsops, "exchange", exchange)
    with pytest.raises(write.PartialWriteError):
        spare_write.write_changes(delta, changes_between(version(0), version(1)))
    assert journal.pending(delta) is not None  # `check` reports it; the next compile recovers
    journal.recover(delta)
    assert journal.pending(delta) is None


def test_no_exchange_means_none(pair: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch,
                                ) -> None:
    _, delta = pair
    before = trees(delta)

    def unsupported(a: Path, b: Path) -> None:
        raise fsops.ExchangeUnsupported("disabled by the test")

    monkeypatch.setattr(fsops, "exchange", unsupported)
    assert spare_write.write_changes(delta, changes_between(version(0), version(1))) is None
    assert trees(delta) == before and leftovers(delta) == []


def test_the_journal_names_the_spares() -> None:
    entry = Journal((), ("mtlsc.lock",), ("overlays/a", "overlays/b"))
    assert Journal.from_json(entry.to_json()) == entry
    assert b"spares" not in Journal((), ()).to_json()  # unchanged for the full writer


_KILLED = """
import json, sys
from pathlib import Path
from tests.faults import install
install(json.loads(sys.argv[1]))
from compiler.spare import write as spare_write
raw = json.loads(Path(sys.argv[3]).read_text())
changes = {u: {r: None if v is None else bytes.fromhex(v) for r, v in c.items()}
           for u, c in raw.items()}
print(spare_write.write_changes(Path(sys.argv[2]), changes) is not None)
"""


def _run_killed(root: Path, changes: Mapping[str, Mapping[str, bytes | None]],
                fault: dict[str, object]) -> subprocess.CompletedProcess[str]:
    spec = root.parent / "changes.json"
    spec.write_text(json.dumps({u: {r: None if v is None else v.hex() for r, v in c.items()}
                                for u, c in changes.items()}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", _KILLED, json.dumps([fault]), str(root),
                           str(spec)], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=60)


def test_a_killed_write_leaves_every_directory_old_or_new(tmp_path: Path) -> None:
    """SIGKILL just before the n-th filesystem change, for n over the whole run: each output
    directory is the old or the new tree; the next run recovers and writes the new one."""
    ref = tmp_path / "ref"
    full_write(ref, version(1), keep_spare=False)
    new = trees(ref)
    changes = changes_between(version(0), version(1))

    def fresh(name: str) -> Path:
        root = tmp_path / name
        full_write(root, version(0))
        return root

    counted = fresh("count")
    result = _run_killed(counted, changes, {"target": "count", "path": str(tmp_path / "n")})
    assert result.stdout.strip() == "True", result.stderr
    total = int((tmp_path / "n").read_text())
    assert trees(counted) == new
    seen = set()
    for nth in sorted({1, 2, 3, total - 2, total - 1, total, *range(4, total, 5)}):
        root = fresh(f"kill-{nth}")
        old = trees(root)
        result = _run_killed(root, changes, {"target": "kill", "nth": nth})
        # (waiting for the filesystem clock makes a run's count vary by a few: a run may
        # finish before its n-th change)
        assert result.returncode in (-9, 0), (nth, result.stderr)
        for unit in UNITS:
            state = snapshot(root / unit)
            assert state in (old[unit], new[unit]), (nth, unit)
            seen.add("new" if state == new[unit] else "old")
        journal.recover(root)  # what the next compile does first
        assert journal.pending(root) is None
        done = spare_write.write_changes(root, _towards(root, changes)) \
            if all(_trusted(root, unit) for unit in UNITS) else None
        if done is None:  # the full writer takes over
            full_write(root, version(1))
        assert trees(root) == new, nth
        for unit in UNITS:
            assert_vouched(root, unit)
        shutil.rmtree(root)
    assert seen == {"old", "new"}


def _trusted(root: Path, unit: str) -> bool:
    """The caller's check before a delta write: the live directory is exactly what its hash
    manifest vouches for (the run record's fingerprint comparison)."""
    known = manifest.load(root, unit)
    return run_disk.fingerprint(root, unit) == run_disk.fingerprint_of(
        [(rel, entry.key) for rel, entry in known.items()])


def _towards(root: Path, changes: Mapping[str, Mapping[str, bytes | None]]
             ) -> dict[str, dict[str, bytes | None]]:
    """The changes still to make (a killed run may have swapped some directories in)."""
    out: dict[str, dict[str, bytes | None]] = {}
    for unit, change in changes.items():
        base = root / unit
        out[unit] = {rel: data for rel, data in change.items()
                     if (base / rel).exists() != (data is not None) or
                     (data is not None and (base / rel).read_bytes() != data)}
    return out


_KILLED_FULL = """
import json, sys
from pathlib import Path
from tests.faults import install
install(json.loads(sys.argv[1]))
from compiler import write
files = {k: bytes.fromhex(v) for k, v in json.loads(Path(sys.argv[3]).read_text()).items()}
write.apply(write.plan(Path(sys.argv[2]), files, ["overlays/a", "overlays/b"]), keep_spare=True)
"""


def test_a_killed_full_write_keeping_spares_leaves_every_directory_old_or_new(
        tmp_path: Path) -> None:
    """The full writer with `keep_spare`: the swapped-out trees are moved to be the spares,
    or new spares linked; killed anywhere, each directory is old or new, the next run
    recovers, and a delta write after it gives the right tree."""
    ref = tmp_path / "ref"
    full_write(ref, version(1), keep_spare=False)
    new = trees(ref)
    spec = tmp_path / "files.json"
    spec.write_text(json.dumps({k: v.hex() for k, v in version(1).items()}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def killed(root: Path, fault: dict[str, object]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _KILLED_FULL, json.dumps([fault]),
                               str(root), str(spec)], capture_output=True, text=True,
                              env=env, cwd=REPO, timeout=60)

    counted = tmp_path / "count"
    full_write(counted, version(0), keep_spare=False)  # no spare yet: linked at the end
    assert killed(counted, {"target": "count", "path": str(tmp_path / "n")}).returncode == 0
    total = int((tmp_path / "n").read_text())
    full_write(ref, version(2), keep_spare=False)
    after = trees(ref)
    for nth in sorted({1, total - 1, total, *range(3, total, max(1, total // 12))}):
        root = tmp_path / f"kill-{nth}"
        full_write(root, version(0), keep_spare=nth % 2 == 0)  # with and without a spare
        old = trees(root)
        result = killed(root, {"target": "kill", "nth": nth})
        assert result.returncode in (-9, 0), (nth, result.stderr)  # see above
        for unit in UNITS:
            assert snapshot(root / unit) in (old[unit], new[unit]), (nth, unit)
        journal.recover(root)
        full_write(root, version(1))
        assert trees(root) == new and leftovers(root) == []
        assert not [p.name for p in (root / spare.SPARE_DIR).iterdir()
                    if p.name.endswith((".trash", ".mtlsc-tmp"))]
        if all(_trusted(root, unit) for unit in UNITS):
            assert spare_write.write_changes(root, changes_between(version(1), version(2)))
        else:
            full_write(root, version(2))
        assert trees(root) == after, nth
        shutil.rmtree(root)


def test_the_streamed_writer_keeps_spares_too(tmp_path: Path) -> None:
    """`StreamingWrite.finish(keep_spare=True)`: the first write links spares, the next one
    keeps the swapped-out trees; a delta write then works on them."""
    from compiler.stream_write import StreamingWrite

    def streamed(files: Files) -> None:
        writer = StreamingWrite(tmp_path)
        try:
            for unit in UNITS:
                writer.add(unit, {k: v for k, v in files.items() if k.startswith(unit + "/")})
            writer.finish({}, ("overlays",), keep_spare=True)
        finally:
            writer.abort()

    streamed(version(0))
    assert all(spare.exists(tmp_path, unit) for unit in UNITS)
    before = trees(tmp_path)
    streamed(version(1))
    for unit in UNITS:
        assert snapshot(spare.path_of(tmp_path, unit)) == before[unit]
        assert _trusted(tmp_path, unit)
    assert spare_write.write_changes(tmp_path, changes_between(version(1), version(2)))
    ref = tmp_path / "ref"
    full_write(ref, version(2), keep_spare=False)
    assert trees(tmp_path) == trees(ref)


def test_an_immutable_file_in_the_spare_changes_nothing(pair: tuple[Path, Path]) -> None:
    """For real with chattr(1) where permitted: replacing the spare's file fails (EPERM);
    nothing visible changed, and the full writer then works."""
    ref, delta = pair
    assert spare_write.write_changes(delta, changes_between(version(0), version(1)))
    victim = spare.path_of(delta, UNITS[0]) / "ns0/obj-0.yaml"  # an old version: replaced
    if shutil.which("chattr") is None or \
            subprocess.run(["chattr", "+i", str(victim)], capture_output=True).returncode:
        pytest.skip("chattr +i is not permitted here (the injected faults above cover it)")
    try:
        before = trees(delta)
        assert spare_write.write_changes(delta, changes_between(version(1), version(2))) is None
        assert trees(delta) == before and leftovers(delta) == []
    finally:
        subprocess.run(["chattr", "-i", str(victim)], check=True)
    full_write(delta, version(2))
    full_write(ref, version(2))
    assert trees(delta) == trees(ref)
