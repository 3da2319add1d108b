"""The render cache never changes output: cold, warm and no cache give the same bytes and the
same diagnostics, edits and certificate changes invalidate exactly what they affect, and a
damaged or foreign entry is ignored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compiler import fanout
from compiler.cache import MAGIC, EntryStore, canonical, digest
from tests.fleet_support import CLUSTERS, compile_fleet, make_fleet, outcome


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Gateways actually rendered (cache misses) during the test."""
    seen: list[str] = []
    real = fanout.render_unit

    def counting(gw, target, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(f"{target.name}/{gw.key}")
        return real(gw, target, *args, **kwargs)

    monkeypatch.setattr(fanout, "render_unit", counting)
    return seen


def _entries(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file())


def test_cold_warm_and_no_cache_are_identical(fleet: Path, tmp_path: Path,
                                              renders: list[str]) -> None:
    plain = compile_fleet(fleet)
    assert plain.ok and len(plain.files) > 100
    assert any(d.code == "InsecureFrontendValidationMode" for d in plain.diagnostics)
    gateways = len(renders)
    cold = compile_fleet(fleet, cache=tmp_path / "cache")
    warm = compile_fleet(fleet, cache=tmp_path / "cache")
    assert outcome(cold) == outcome(plain)
    assert outcome(warm) == outcome(plain)
    assert len(renders) == 2 * gateways  # the no-cache and the cold run; the warm run: none
    assert len(_entries(tmp_path / "cache" / "unit")) == gateways
    assert _entries(tmp_path / "cache" / "grant")  # merged ReferenceGrants: their verdicts


def test_an_edit_rerenders_only_that_gateway(fleet: Path, tmp_path: Path,
                                             renders: list[str]) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(fleet, root)
    compile_fleet(root, cache=tmp_path / "cache")
    intent = root / "policies" / "gateways" / "team-3" / "gw-3.yaml"
    intent.write_text(intent.read_text().replace("hostname: gw-3.", "hostname: gw-3-new."))
    renders.clear()
    edited = compile_fleet(root, cache=tmp_path / "cache")
    assert sorted(renders) == [f"c{j}/team-3/gw-3" for j in range(CLUSTERS)]
    assert outcome(edited) == outcome(compile_fleet(root))
    assert any(b"gw-3-new.fleet.example" in data for data in edited.files.values())


def test_a_changed_ca_bundle_invalidates_the_gateways_using_it(fleet: Path, tmp_path: Path
                                                               ) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(fleet, root)
    compile_fleet(root, cache=tmp_path / "cache")
    shutil.copyfile(root / "pki" / "ns-ca-1.pem", root / "pki" / "ns-ca-0.pem")
    changed = compile_fleet(root, cache=tmp_path / "cache")
    assert outcome(changed) == outcome(compile_fleet(root))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "foreign", "shape"])
def test_damaged_or_foreign_entries_are_ignored(fleet: Path, tmp_path: Path, damage: str,
                                                renders: list[str]) -> None:
    cache = tmp_path / "cache"
    expected = outcome(compile_fleet(fleet, cache=cache))
    entries = _entries(cache)
    for index, path in enumerate(entries):
        data = path.read_bytes()
        if damage == "truncate":
            path.write_bytes(data[: len(data) // 2])
        elif damage == "flip":  # one byte of the payload changed: the checksum fails
            path.write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
        elif damage == "garbage":
            path.write_bytes(b"\x00not an entry")
        elif damage == "foreign":  # another key's (valid) entry under this key's name
            path.write_bytes(entries[(index + 1) % len(entries)].read_bytes())
        else:  # a well-formed entry with a payload of the wrong shape
            store = EntryStore(cache)
            store.put(path.parent.parent.name, path.name, {"pieces": [[1, 2]], "envoy": None})
    renders.clear()
    assert outcome(compile_fleet(fleet, cache=cache)) == expected
    # every damaged entry was recomputed...
    assert len(renders) == len(_entries(cache / "unit"))
    renders.clear()
    assert outcome(compile_fleet(fleet, cache=cache)) == expected
    assert renders == []  # ...and rewritten whole


def test_entries_carry_their_key_and_a_checksum(tmp_path: Path) -> None:
    store = EntryStore(tmp_path)
    store.put("unit", "ab" * 32, {"x": [1, "ü"]})
    raw = (tmp_path / "unit" / "ab" / ("ab" * 32)).read_bytes()
    assert raw.startswith(MAGIC + b"ab" * 32 + b"\n")
    assert store.get("unit", "ab" * 32) == {"x": [1, "ü"]}
    assert store.get("unit", "cd" * 32) is None
    assert not list((tmp_path / "unit").rglob(".tmp-*"))


def test_canonical_forms_are_deterministic_and_faithful() -> None:
    assert digest(frozenset({"mode", "caBundles"})) == digest(frozenset({"caBundles", "mode"}))
    assert digest(1) != digest(True) != digest("1")
    assert digest(("a", "b")) != digest(("ab",))
    with pytest.raises(TypeError):
        canonical(object())


def test_a_value_without_canonical_form_is_not_cached(fleet: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    expected = outcome(compile_fleet(fleet))

    def no_form(*_args: object) -> str:
        raise TypeError("no canonical form for SomethingNew")

    monkeypatch.setattr(fanout, "unit_key", no_form)
    assert outcome(compile_fleet(fleet, cache=tmp_path / "cache")) == expected
    assert not _entries(tmp_path / "cache" / "unit")


def test_an_override_edit_rerenders_the_gateways_it_names(fleet: Path, tmp_path: Path,
                                                          renders: list[str]) -> None:
    """Units are keyed by the digests of their intent's and overrides' files: editing an
    override (even a byte that changes only a location) re-renders exactly its gateway."""
    root = tmp_path / "fleet"
    shutil.copytree(fleet, root)
    cache = tmp_path / "cache"
    compile_fleet(root, cache=cache)
    override = sorted((root / "policies" / "overrides").glob("*.yaml"))[0]
    gateway = override.stem  # gw-N
    text = override.read_text()
    assert "hostname: edge-" in text
    for edited in (text.replace("hostname: edge-", "hostname: edge2-"),
                   "# moved down one line\n" + text):
        override.write_text(edited)
        renders.clear()
        result = compile_fleet(root, cache=cache)
        assert renders and all(r.endswith(f"/{gateway}") for r in renders)
        assert outcome(result) == outcome(compile_fleet(root))
