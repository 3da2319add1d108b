"""The run record through the real `mtlsc` executable: a no-change `check`/`compile` replays the
last compile, and whatever changed makes the full run happen, with exactly its output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.record_support import Run, both, example, mtlsc, record_files, record_of

FORMATS = ("text", "json", "github", "sarif")
# Imported by a full compile, never by a replayed run.
HEAVY = ("jsonschema", "jinja2", "cryptography", "ruamel", "yaml", "hvac", "compiler.pipeline",
         "compiler.load", "compiler.k8s", "compiler.render", "compiler.render_units",
         "compiler.fanout", "compiler.verify", "compiler.guardrails", "compiler.model",
         "compiler.cli.common")


@pytest.fixture
def compiled(tmp_path: Path) -> Path:
    root = example(tmp_path)
    first = mtlsc(root, "compile")
    assert first.code == 0, first.stderr
    assert first.outcome == "no record"
    assert len(record_files(root)) == 1
    return root


def assert_same(recorded: Run, full: Run, outcome: str | None = None) -> None:
    assert recorded.shown == full.shown
    if outcome == "hit":
        assert recorded.outcome == "hit"
    elif outcome is not None:
        assert recorded.outcome not in (None, "hit")


def test_a_no_change_check_replays_the_compile_and_imports_little(compiled: Path) -> None:
    run = mtlsc(compiled, "check")
    assert (run.code, run.outcome) == (0, "hit")
    loaded = [m for m in run.modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)]
    assert loaded == []
    assert b"InsecureFrontendValidationMode" in run.stderr  # the compile's warnings, replayed


@pytest.mark.parametrize("fmt", FORMATS)
def test_replayed_output_is_byte_identical_in_every_format(compiled: Path, fmt: str) -> None:
    for command in (("check",), ("compile",), ("compile", "--diff")):
        recorded, full = both(compiled, *command, "--format", fmt)
        assert_same(recorded, full, "hit")
        assert full.outcome is None  # --no-cache never looks the record up
    if fmt == "json":
        document = json.loads(mtlsc(compiled, "compile", "--format", "json").stdout)
        assert "kustomization.yaml" in " ".join(document["files"])


def test_a_replayed_compile_writes_nothing(compiled: Path) -> None:
    def state() -> dict[Path, tuple[int, ...]]:
        return {p: (s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
                for p in compiled.rglob("*") for s in [p.lstat()]}

    before = state()
    assert mtlsc(compiled, "compile").outcome == "hit"
    assert state() == before


def _edit_policy(root: Path) -> None:
    path = root / "policies" / "gateways" / "mtls.yaml"
    path.write_text(path.read_text() + "# a comment changes the key\n")


def _replace_ca(root: Path) -> None:
    from compiler.pki import create_dev_pki

    create_dev_pki(root / ".mtlsc" / "dev-pki", seed="another", overwrite=True)


def _add_lock(root: Path) -> None:
    (root / "mtlsc.lock").write_text("version: 1\nsources: {}\n")


INPUT_CHANGES = {"policy file": (_edit_policy, ()), "CA bundle on disk": (_replace_ca, ()),
                 "lock file": (_add_lock, ()), "--strict": (None, ("--strict",)),
                 "--cluster": (None, ("--cluster", "demo"))}


@pytest.mark.parametrize("change", sorted(INPUT_CHANGES))
def test_any_input_change_runs_the_full_check(compiled: Path, change: str) -> None:
    action, options = INPUT_CHANGES[change]
    if action is not None:
        action(compiled)
    recorded, full = both(compiled, "check", *options)
    assert_same(recorded, full, "miss")


def _owned(root: Path) -> list[Path]:
    return sorted(p for p in (root / "overlays").rglob("*.yaml") if p.is_file())


def _replace_by_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


OVERLAY_CHANGES = {
    "edited": lambda root: _owned(root)[3].write_bytes(_owned(root)[3].read_bytes() + b"# x\n"),
    "removed": lambda root: _owned(root)[0].unlink(),
    "added (generated)": lambda root: (root / "overlays" / "demo" / "stale.yaml").write_bytes(
        (root / "overlays" / "demo" / "kustomization.yaml").read_bytes()),
    "stale cluster": lambda root: (root / "overlays" / "gone").mkdir() or
    (root / "overlays" / "gone" / "x.yaml").write_bytes(_owned(root)[0].read_bytes()),
    "directory in the way": lambda root: _replace_by_directory(_owned(root)[2]),
}


@pytest.mark.parametrize("change", sorted(OVERLAY_CHANGES))
def test_overlay_drift_is_reported_exactly_as_without_the_record(compiled: Path,
                                                                 change: str) -> None:
    OVERLAY_CHANGES[change](compiled)
    recorded, full = both(compiled, "check")
    assert_same(recorded, full, "miss")
    assert recorded.code != 0


def test_touched_and_foreign_files_still_replay(compiled: Path) -> None:
    target = _owned(compiled)[1]
    os.utime(target)  # a new ctime: the manifest no longer vouches, the content is hashed
    (compiled / "overlays" / "demo" / "README.md").write_text("not generated\n")
    recorded, full = both(compiled, "check")
    assert_same(recorded, full, "hit")


def test_an_interrupted_write_is_still_reported(compiled: Path) -> None:
    (compiled / "overlays" / ".mtlsc-stage-demo").mkdir()
    recorded, full = both(compiled, "check")
    assert_same(recorded, full, "miss")
    assert b"InterruptedWrite" in recorded.stderr


@pytest.mark.parametrize("damage", ["truncated", "flipped", "foreign"])
def test_a_damaged_or_foreign_record_is_ignored(compiled: Path, damage: str) -> None:
    [path] = record_files(compiled)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flipped":
        path.write_bytes(data.replace(b'"exit":0', b'"exit":1'))
    else:  # a valid entry of another key, renamed into this key's place
        other = path.with_name("0" * 64)
        other.write_bytes(data.replace(path.name.encode(), other.name.encode()))
        other.replace(path)
    recorded, full = both(compiled, "check")
    assert_same(recorded, full, "miss")
    assert recorded.outcome == "no record"


def test_check_offline_never_replays(compiled: Path) -> None:
    recorded, full = both(compiled, "check", "--offline")
    assert recorded.shown == full.shown and recorded.outcome is None


def test_a_failed_compile_records_nothing(tmp_path: Path) -> None:
    root = example(tmp_path)
    assert mtlsc(root, "compile", "--strict").code == 1  # the example has warnings
    assert record_files(root) == []


def test_the_record_holds_no_key_material(compiled: Path) -> None:
    [path] = record_files(compiled)
    text = path.read_text()
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    keys = [e for e in record_of(compiled)["materials"]["local"] if e["path"].endswith("key.pem")]
    import hashlib
    raw = (compiled / keys[0]["path"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() not in text  # digests are salted with the key


def test_a_streamed_compile_is_recorded_too(tmp_path: Path) -> None:
    """Large compiles hand each cluster to the writer as it is done (MTLSC_STREAM_MIN lowers
    the threshold): the record still holds every file."""
    root = example(tmp_path)
    stream = {"MTLSC_STREAM_MIN": "1"}
    assert mtlsc(root, "compile", env=stream).code == 0
    files = sum(len(u) for u in record_of(root, "run-files")["units"].values())
    assert files == sum(1 for p in (root / "overlays").rglob("*") if p.is_file())
    for command in (("check",), ("compile",), ("compile", "--format", "json")):
        recorded, full = both(root, *command, env=stream)
        assert_same(recorded, full, "hit")


def test_a_compile_of_some_clusters_replays_for_the_same_clusters(tmp_path: Path) -> None:
    root = example(tmp_path)
    assert mtlsc(root, "compile", "--cluster", "demo").code == 0
    (root / "overlays" / "elsewhere").mkdir()  # outside the selection: not looked at
    (root / "overlays" / "elsewhere" / "x.yaml").write_bytes(
        (root / "overlays" / "demo" / "kustomization.yaml").read_bytes())
    recorded, full = both(root, "check", "--cluster", "demo")
    assert_same(recorded, full, "hit")
    recorded, full = both(root, "check")
    assert_same(recorded, full, "miss")
