"""compiler/manifest.py: version 2 (parallel lists, identities as one int64 array) and the delta
file `save_changes` writes beside a manifest instead of rewriting it."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import manifest
from compiler.manifest import Entry

UNIT = "overlays/c"
PAST = 1_000_000_000_000_000_000  # a ctime (ns) long before the filesystem clock


def entry(n: int, owned: bool = True) -> Entry:
    return Entry((2049, 1000 + n, 10 + n, PAST + n, PAST + n), f"{n:064x}", owned)


def test_version_2_round_trips_every_field(tmp_path: Path) -> None:
    entries = {f"ns{i % 3}/f{i}.yaml": entry(i, owned=i % 5 != 0) for i in range(50)}
    digest = manifest.save(tmp_path, UNIT, entries)
    assert manifest.load(tmp_path, UNIT) == entries
    assert manifest.load_with_digest(tmp_path, UNIT) == (entries, digest)
    assert manifest.file_digest(tmp_path, UNIT) == digest


def test_identities_that_do_not_fit_64_bits_are_kept_as_a_list(tmp_path: Path) -> None:
    entries = {"a.yaml": Entry((1, 2, 3, 2**64, PAST), "ab" * 32, True)}
    manifest.save(tmp_path, UNIT, entries)
    assert manifest.load(tmp_path, UNIT) == entries


def test_version_1_manifests_are_still_read(tmp_path: Path) -> None:
    manifest.save(tmp_path, UNIT, {})
    path = next((tmp_path / ".mtlsc/write/manifests").iterdir())
    path.write_text(json.dumps({"version": 1, "dir": UNIT, "files": {
        "a.yaml": [1, 2, 3, 4, 5, "ab" * 32, True]}}))
    assert manifest.load(tmp_path, UNIT) == {"a.yaml": Entry((1, 2, 3, 4, 5), "ab" * 32, True)}


def test_a_delta_is_applied_on_its_own_base_only(tmp_path: Path) -> None:
    base = {f"f{i}.yaml": entry(i) for i in range(40)}
    manifest.save(tmp_path, UNIT, base)
    digest = manifest.save_changes(tmp_path, UNIT, {"f1.yaml": entry(99), "new.yaml": entry(7)},
                                   ["f2.yaml"], len(base))
    assert digest is not None and digest == manifest.file_digest(tmp_path, UNIT)
    want = {**base, "f1.yaml": entry(99), "new.yaml": entry(7)}
    del want["f2.yaml"]
    assert manifest.load_with_digest(tmp_path, UNIT) == (want, digest)
    manifest.save(tmp_path, UNIT, base)  # a full save: the delta is gone
    assert manifest.load(tmp_path, UNIT) == base
    assert not list((tmp_path / ".mtlsc/write/manifests").glob("*.delta.json"))


def test_a_delta_made_on_another_base_or_damaged_is_ignored(tmp_path: Path) -> None:
    base = {f"f{i}.yaml": entry(i) for i in range(40)}
    manifest.save(tmp_path, UNIT, base)
    assert manifest.save_changes(tmp_path, UNIT, {"f1.yaml": entry(99)}, [], len(base))
    delta = next((tmp_path / ".mtlsc/write/manifests").glob("*.delta.json"))
    kept = delta.read_bytes()
    other = next(p for p in (tmp_path / ".mtlsc/write/manifests").iterdir() if p != delta)
    other.write_bytes(other.read_bytes().replace(b'"version":2', b'"version":2 '))
    assert manifest.load(tmp_path, UNIT) == base  # the base changed: the delta does not apply
    manifest.save(tmp_path, UNIT, base)
    delta.write_bytes(kept[:-5])
    assert manifest.load(tmp_path, UNIT) == base


def test_a_large_delta_asks_for_a_full_save(tmp_path: Path) -> None:
    base = {f"f{i}.yaml": entry(i) for i in range(16)}
    manifest.save(tmp_path, UNIT, base)
    assert manifest.save_changes(tmp_path, UNIT, {"a": entry(1), "b": entry(2), "c": entry(3)},
                                 [], len(base)) is None
    assert manifest.save_changes(tmp_path, "overlays/none", {}, [], 10) is None


def test_racy_entries_are_dropped_from_a_delta(tmp_path: Path) -> None:
    base = {f"f{i}.yaml": entry(i) for i in range(40)}
    manifest.save(tmp_path, UNIT, base)
    future = Entry((1, 2, 3, 4, 2**62), "cd" * 32, True)
    assert manifest.save_changes(tmp_path, UNIT, {"f1.yaml": future}, [], len(base))
    assert "f1.yaml" not in manifest.load(tmp_path, UNIT)


names = st.sampled_from([f"d{i % 3}/f{i}.yaml" for i in range(12)])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(names, st.integers(0, 500), max_size=3),
                          st.lists(names, max_size=2)), max_size=6))
def test_deltas_accumulate_like_a_dict(tmp_path_factory: object,
                                       steps: list[tuple[dict[str, int], list[str]]]) -> None:
    root = Path(str(tmp_path_factory.mktemp("delta")))  # type: ignore[attr-defined]
    model = {f"d{i % 3}/f{i}.yaml": entry(i) for i in range(12)}
    manifest.save(root, UNIT, model)
    for changed, removed in steps:
        update = {rel: entry(n) for rel, n in changed.items()}
        if manifest.save_changes(root, UNIT, update, removed, 1000) is None:
            raise AssertionError("a delta fits 1000 entries")
        for rel in removed:
            model.pop(rel, None)
        model.update(update)
        assert manifest.load(root, UNIT) == model
