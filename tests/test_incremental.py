"""The incremental paths (the record of resolved gateways, the render cache) never change a
result: after any edit, a compile with the warm cache equals a compile from scratch in overlay
bytes, diagnostics (text and JSON) and exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import incremental
from compiler.cache import EntryStore, canonical
from compiler.crosscheck import ENV, CrosscheckError
from compiler.diagnostics import exit_code
from compiler.model_codec import (
    diagnostic_from_json,
    diagnostic_to_json,
    gateway_from_json,
    gateway_to_json,
)
from compiler.pipeline import Result
from compiler.report import text, to_json
from tests.fleet_support import EDITS, INTENTS, apply_edit, compile_fleet, make_fleet


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


def observed(result: Result) -> tuple[dict[str, bytes], str, str, int]:
    return (result.files, text(result.diagnostics), to_json(result.diagnostics),
            exit_code(result.diagnostics))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(EDITS), st.integers(0, INTENTS - 1)),
                      min_size=1, max_size=3))
def test_an_incremental_compile_equals_one_from_scratch(
        fleet: Path, tmp_path: Path, edits: list[tuple[str, int]]) -> None:
    root = tmp_path / f"run-{abs(hash(tuple(edits)))}"
    shutil.copytree(fleet, root)
    cache = root / ".mtlsc" / "cache"
    try:
        assert compile_fleet(root, cache=cache, jobs=1).ok  # warms the cache and the record
        for step, (kind, i) in enumerate(edits):
            apply_edit(root, kind, i, step)
            warm = compile_fleet(root, cache=cache, jobs=1)
            scratch = compile_fleet(root, jobs=1)
            assert observed(warm) == observed(scratch), (kind, i)
            assert canonical(warm.model) == canonical(scratch.model)
            assert canonical(warm.posture) == canonical(scratch.posture)
    finally:
        shutil.rmtree(root)


def test_the_codec_round_trips_every_gateway_and_diagnostic(fleet: Path) -> None:
    result = compile_fleet(fleet)
    assert result.model is not None
    gateways = [gw for cluster in result.model.clusters for gw in cluster.gateways]
    assert len(gateways) > 20
    for gw in gateways:
        raw = json.loads(json.dumps(gateway_to_json(gw)))
        assert canonical(gateway_from_json(raw)) == canonical(gw)
    assert any(d.related for d in result.diagnostics) or result.diagnostics
    for d in result.diagnostics:
        assert diagnostic_from_json(json.loads(json.dumps(diagnostic_to_json(d)))) == d
    raw = gateway_to_json(gateways[0])
    for broken in (raw[:-1], [*raw[:3], 7, *raw[4:]], {"name": 1}, None):
        with pytest.raises((TypeError, ValueError)):
            gateway_from_json(broken)


def _record(cache: Path) -> Path:
    found = sorted((cache / incremental.KIND).rglob("*"))
    files = [p for p in found if p.is_file()]
    assert len(files) == 1
    return files[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "foreign", "bad-shape"])
def test_a_damaged_or_foreign_record_is_ignored(fleet: Path, tmp_path: Path,
                                                damage: str) -> None:
    cache = tmp_path / "cache"
    plain = observed(compile_fleet(fleet))
    compile_fleet(fleet, cache=cache)
    record = _record(cache)
    if damage == "garbage":
        record.write_bytes(b"\x00not a record")
    elif damage == "truncated":
        record.write_bytes(record.read_bytes()[:-100])
    elif damage == "foreign":  # another entry of the cache, under the record's name
        unit = next(p for p in (cache / "unit").rglob("*") if p.is_file())
        shutil.copy(unit, record)
    else:  # a well-formed entry whose items have the wrong shape: each is recomputed
        keys = _keys(cache, fleet)
        EntryStore(cache).put(incremental.KIND, incremental.record_key(), {
            "pool": ['["x"]', ["x"]],
            "entries": {key: [n % 3, "[]" if n % 2 else []] for n, key in enumerate(keys)}})
    assert observed(compile_fleet(fleet, cache=cache)) == plain
    assert observed(compile_fleet(fleet, cache=cache)) == plain  # and from the rewritten one


def _keys(cache: Path, fleet: Path) -> list[str]:
    scratch = cache.parent / "keys"
    compile_fleet(fleet, cache=scratch)
    raw = EntryStore(scratch).get(incremental.KIND, incremental.record_key())
    assert isinstance(raw, dict)
    return list(raw["entries"])


def test_no_cache_and_a_read_only_cache_give_the_same_result(fleet: Path,
                                                             tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    plain = observed(compile_fleet(fleet))
    assert observed(compile_fleet(fleet, cache=cache, cache_writes=False)) == plain
    assert not (cache / incremental.KIND).exists()  # `check` writes nothing
    compile_fleet(fleet, cache=cache)
    assert observed(compile_fleet(fleet, cache=cache, cache_writes=False)) == plain


def test_the_crosscheck_switch_passes_and_catches_a_planted_record(
        fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(ENV, "1")
    first = compile_fleet(fleet, cache=cache)
    assert first.ok and observed(first) == observed(compile_fleet(fleet))
    # A record that lies (well-formed, right checksum, wrong gateway): the switch says so.
    store = EntryStore(cache)
    raw = store.get(incremental.KIND, incremental.record_key())
    assert isinstance(raw, dict)
    gateway = json.loads(raw["pool"][0])
    gateway[0] += "-planted"  # the first gateway's name
    raw["pool"][0] = json.dumps(gateway)
    store.put(incremental.KIND, incremental.record_key(), raw)
    with pytest.raises(CrosscheckError, match="incremental compile differs"):
        compile_fleet(fleet, cache=cache)
    monkeypatch.delenv(ENV)
    assert compile_fleet(fleet, cache=cache).files != first.files  # what the switch caught


@pytest.mark.parametrize("stream_min", ["1", "1000000"])
def test_compile_under_the_crosscheck_switch_writes_the_same_overlays(
        fleet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream_min: str) -> None:
    """Through the CLI, streamed to the writer or written whole, edit after edit."""
    from click.testing import CliRunner

    from compiler.cli import main

    def overlays(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes()
                for p in sorted((root / "overlays").rglob("*")) if p.is_file()}

    monkeypatch.setenv("MTLSC_STREAM_MIN", stream_min)
    checked, plain = tmp_path / "checked", tmp_path / "plain"
    for root in (checked, plain):
        shutil.copytree(fleet, root)
    for step in range(2):
        for root, env in ((checked, {ENV: "1"}), (plain, {"MTLSC_NO_CACHE": "1"})):
            apply_edit(root, "hostname", 3, step)
            out = CliRunner().invoke(main, ["compile", "-q", "--root", str(root)], env=env,
                                     catch_exceptions=False)
            assert out.exit_code == 0, out.output
        assert overlays(checked) == overlays(plain)
