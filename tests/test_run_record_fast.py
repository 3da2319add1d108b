"""The parts of a run-record lookup that answer without reading: the policy memo (policy files
vouched for by their identity) and the output directories' fingerprints. Each must never
vouch for a change, and a damaged one must only cost speed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compiler import policy_memo, run_disk
from compiler.policy_files import digest_policy_files, digests_of, read_policy_files
from tests.record_support import both, example, mtlsc

from .test_run_record_cli import assert_same


def _compiled(tmp_path: Path) -> Path:
    root = example(tmp_path)
    first = mtlsc(root, "compile")
    assert first.code == 0, first.stderr
    assert mtlsc(root, "check").outcome == "hit"
    return root


def _same_size_edit(path: Path) -> None:
    """Change one byte, keeping the size, the mtime and the atime (what `touch -r` or a
    careless tool could restore); only the ctime tells."""
    before = os.stat(path)
    data = bytearray(path.read_bytes())
    at = data.index(b"name")
    data[at] = ord("N")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size


def _entries(root: Path, kind: str) -> list[Path]:
    return sorted(p for p in (root / ".mtlsc" / "cache" / kind).glob("*/*") if p.is_file())


def test_a_policy_edit_that_keeps_size_and_mtime_is_not_replayed(tmp_path: Path) -> None:
    root = _compiled(tmp_path)
    _same_size_edit(root / "policies" / "gateways" / "mtls.yaml")
    recorded, full = both(root, "check")
    assert_same(recorded, full, "miss")
    assert recorded.outcome == "no record"


def test_an_overlay_edit_that_keeps_size_and_mtime_is_drift(tmp_path: Path) -> None:
    root = _compiled(tmp_path)
    [gateway] = [p for p in (root / "overlays" / "demo").rglob("*.yaml")
                 if b"kind: Gateway\n" in p.read_bytes()][:1]
    _same_size_edit(gateway)
    recorded, full = both(root, "check")
    assert_same(recorded, full, "miss")
    assert recorded.outcome == "the output tree differs"
    assert recorded.code == 4


def test_the_fingerprints_answer_without_the_recorded_files(tmp_path: Path) -> None:
    root = _compiled(tmp_path)
    for path in _entries(root, "run-files"):
        path.unlink()
    recorded, full = both(root, "check")
    assert_same(recorded, full, "hit")  # no file list was needed: the fingerprints matched
    recorded, full = both(root, "compile", "--format", "json")  # lists every file: needs them
    assert recorded.outcome == "damaged record"
    assert_same(recorded, full)


def test_a_foreign_file_is_compared_file_by_file(tmp_path: Path) -> None:
    root = _compiled(tmp_path)
    (root / "overlays" / "demo" / "NOTES.md").write_text("kept by hand\n")
    recorded, full = both(root, "check")
    assert_same(recorded, full, "hit")  # the fingerprint differs; the files still match
    for path in _entries(root, "run-files"):
        path.write_bytes(path.read_bytes()[:-10])  # damaged: only the fingerprints are left
    recorded, full = both(root, "check")
    assert_same(recorded, full, "miss")
    assert recorded.outcome == "damaged record"


def test_a_damaged_policy_memo_costs_only_speed(tmp_path: Path) -> None:
    root = _compiled(tmp_path)
    [memo] = _entries(root, policy_memo.KIND)
    memo.write_bytes(memo.read_bytes().replace(b'"files":{', b'"files":{"x":1,'))
    recorded, full = both(root, "check")
    assert_same(recorded, full, "hit")


def test_a_missed_check_writes_nothing(tmp_path: Path) -> None:
    root = _compiled(tmp_path)
    (root / "policies" / "gateways" / "mtls.yaml").write_text(
        (root / "policies" / "gateways" / "mtls.yaml").read_text() + "# changed\n")

    def state() -> dict[Path, tuple[int, ...]]:
        return {p: (s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
                for p in (root / ".mtlsc").rglob("*") for s in [p.lstat()]}

    before = state()
    assert mtlsc(root, "check").outcome == "no record"
    assert state() == before


def _policies(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "policies" / "a").mkdir(parents=True)
    (root / "policies" / "a" / "one.yaml").write_text("kind: One\nname: one\n")
    (root / "policies" / "two.yml").write_text("kind: Two\nname: two\n")
    (root / "policies" / "bad.yaml").write_bytes(b"kind: \xff\n")  # YAMLEncoding
    (root / "shared.yaml").write_text("kind: Shared\nname: shared\n")
    (root / "policies" / "link.yaml").symlink_to(root / "shared.yaml")
    return root


def test_the_memo_gives_the_digests_a_full_read_gives(tmp_path: Path) -> None:
    root = _policies(tmp_path)
    policies = root / "policies"
    identities: dict[str, tuple[int, int, int, int, int]] = {}
    texts = read_policy_files(policies, root, identities=identities)
    assert sorted(identities) == ["policies/a/one.yaml", "policies/bad.yaml",
                                  "policies/two.yml"]  # opened in place (not the link)
    full = digests_of(texts)
    known = {name: (key, full[name]) for name, key in identities.items() if name in full}
    assert digest_policy_files(policies, root, known) == full
    assert [d.code for d in digest_policy_files(policies, root, known).problems] == \
        [d.code for d in full.problems] == ["YAMLEncoding"]
    # an edit, a replaced file and a link over a vouched file are all read again
    _same_size_edit(policies / "a" / "one.yaml")
    (policies / "two.yml").unlink()
    (policies / "two.yml").symlink_to(root / "shared.yaml")
    now = digests_of(read_policy_files(policies, root))
    assert now != full
    assert digest_policy_files(policies, root, known) == now


def test_a_memo_entry_vouches_only_while_the_identity_is_unchanged(tmp_path: Path) -> None:
    root = _policies(tmp_path)
    policies = root / "policies"
    identities: dict[str, tuple[int, int, int, int, int]] = {}
    read_policy_files(policies, root, identities=identities)
    planted = {name: (key, b"\0" * 32) for name, key in identities.items()}
    # the recorded identity is trusted as such (that is the speed-up) ...
    assert digest_policy_files(policies, root, planted)["policies/two.yml"] == b"\0" * 32
    # ... and any change to the file, even a chmod, ends the trust
    os.chmod(policies / "two.yml", 0o600)
    assert digest_policy_files(policies, root, planted)["policies/two.yml"] != b"\0" * 32


def test_only_files_older_than_the_clock_are_recorded(tmp_path: Path) -> None:
    root = _policies(tmp_path)
    cache = root / ".mtlsc" / "cache"
    identities: dict[str, tuple[int, int, int, int, int]] = {}
    texts = read_policy_files(root / "policies", root, identities=identities)
    digests = digests_of(texts)
    one = identities["policies/a/one.yaml"][4]
    policy_memo.save(cache, root, root / "policies", identities, digests, before=one)
    assert "policies/a/one.yaml" not in policy_memo.load(cache, root, root / "policies")
    clock = policy_memo.clock(cache)
    assert clock is not None and clock >= max(key[4] for key in identities.values())
    policy_memo.save(cache, root, root / "policies", identities, digests, before=clock + 1)
    assert sorted(policy_memo.load(cache, root, root / "policies")) == \
        ["policies/a/one.yaml", "policies/two.yml"]  # never a file that could not be used
    assert not list(cache.glob(".clock-*"))  # the clock's file is gone again


def test_a_fingerprint_covers_names_and_identities(tmp_path: Path) -> None:
    unit = tmp_path / "out"
    (unit / "ns").mkdir(parents=True)
    (unit / "ns" / "a.yaml").write_text("a\n")
    (unit / "b.yaml").write_text("b\n")

    def identities() -> list[tuple[str, tuple[int, int, int, int, int]]]:
        return [(rel, (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns))
                for rel in ("ns/a.yaml", "b.yaml") for s in [os.lstat(unit / rel)]]

    first = run_disk.fingerprint(tmp_path, "out")
    assert first == run_disk.fingerprint_of(identities())
    assert first == run_disk.fingerprint_of(reversed(identities()))  # order-free
    (unit / ".mtlsc-stage-x").mkdir()  # an interrupted write's leftovers are looked at apart
    assert run_disk.fingerprint(tmp_path, "out") == first
    os.rename(unit / "b.yaml", unit / "c.yaml")
    os.rename(unit / "c.yaml", unit / "b.yaml")
    assert run_disk.fingerprint(tmp_path, "out") != first  # renamed back: a new ctime
    second = run_disk.fingerprint(tmp_path, "out")
    (unit / "ns" / "link").symlink_to("a.yaml")
    assert run_disk.fingerprint(tmp_path, "out") != second


def test_a_policy_file_name_that_is_not_utf8_is_cached_and_replayed(tmp_path: Path) -> None:
    """Git allows any bytes in a file name; Python shows the bad ones as lone surrogates,
    which UTF-8 cannot encode: cache entries escape them instead of failing the compile."""
    root = example(tmp_path)
    gateways = root / "policies" / "gateways"
    os.rename(gateways / "mtls.yaml", os.fsdecode(os.fsencode(gateways) + b"/mt\xffls.yaml"))
    first = mtlsc(root, "compile")
    assert first.code == 0, first.stderr
    shown = b"gateways/mt\\udcffls.yaml:"  # as the output streams escape it
    assert shown in first.stderr
    recorded, full = both(root, "check")
    assert_same(recorded, full, "hit")
    assert shown in recorded.stderr


def _three_units(tmp_path: Path) -> dict[str, int]:
    for name, count in (("a", 5), ("b", 3), ("c", 1)):
        (tmp_path / name / "ns").mkdir(parents=True)
        for i in range(count):
            (tmp_path / name / "ns" / f"{i}.yaml").write_text(f"{name}{i}\n")
    return {"a": 5, "b": 3, "c": 1}


def test_fingerprints_taken_by_a_forked_child_are_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    units = _three_units(tmp_path)
    alone = {unit: run_disk.fingerprint(tmp_path, unit) for unit in units}
    monkeypatch.setattr(run_disk, "PARALLEL_MIN", 0)
    monkeypatch.setattr(run_disk, "_cpus", lambda: 2)
    forked: list[list[str]] = []
    real = run_disk._fork_scan

    def spy(root: Path, share: list[str]) -> object:
        forked.append(list(share))
        return real(root, share)

    monkeypatch.setattr(run_disk, "_fork_scan", spy)
    assert run_disk.scan_all(tmp_path, units) == alone
    assert forked and forked[0] and set(forked[0]) < set(units)  # the child had a share


@pytest.mark.parametrize("answer", [None, {"b": "0" * 64}, {"b": None, "zz": None}])
def test_a_child_that_fails_or_lies_about_its_share_is_not_believed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: object) -> None:
    units = _three_units(tmp_path)
    alone = {unit: run_disk.fingerprint(tmp_path, unit) for unit in units}
    monkeypatch.setattr(run_disk, "PARALLEL_MIN", 0)
    monkeypatch.setattr(run_disk, "_cpus", lambda: 2)
    monkeypatch.setattr(run_disk, "_fork_scan", lambda root, share: lambda: answer)
    assert run_disk.scan_all(tmp_path, units) == alone  # its share is scanned again


def test_the_scan_relative_to_each_directory_sees_every_entry_as_lstat_does(
        tmp_path: Path) -> None:
    """`run_disk` looks each entry up relative to its opened directory (one path walk per
    directory): it must see every entry with its `lstat` identity: nested directories, links
    (an entry of their own, never followed), odd names; an interrupted write's leftovers are
    left out."""
    base = tmp_path / "overlays" / "c0"
    for rel in ("kustomization.yaml", "a/gw.yaml", "a/b/c/deep.yaml", "odd name\n.yaml"):
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(rel)
    (base / "link").symlink_to(tmp_path)
    (base / "a" / "dirlink").symlink_to(base / "a" / "b")
    (base / ".mtlsc-stage-x").mkdir()
    (base / ".mtlsc-stage-x" / "f.yaml").write_text("x")
    found = dict(run_disk._entries(str(base)))
    assert sorted(found) == sorted(["a/b/c/deep.yaml", "a/dirlink", "a/gw.yaml",
                                    "kustomization.yaml", "link", "odd name\n.yaml"])
    assert all(tuple(st) == tuple(os.lstat(base / rel)) for rel, st in found.items())
