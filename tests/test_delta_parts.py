"""The parts of a delta compile apart from the whole (tests/test_delta.py): the output tree's
scan and its fingerprints after a write, and the hash manifest read lazily and overlaid."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import manifest, run_disk
from compiler.delta import live_scan
from compiler.manifest import Entry


def tree(root: Path, files: int = 60) -> list[str]:
    names = [f"ns-{i % 7}/obj-{i}.yaml" for i in range(files)] + ["kustomization.yaml"]
    for name in names:
        path = root / "overlays" / "c0" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n")
    (root / "overlays" / "c1").mkdir(parents=True)
    (root / "overlays" / "c1" / "a.yaml").write_text("a\n")
    return names


@pytest.mark.parametrize("forked", [False, True])
def test_fingerprints_after_a_write_equal_a_fresh_scan(tmp_path: Path, forked: bool) -> None:
    names = tree(tmp_path)
    units = live_scan.subdirectories(tmp_path, "overlays")
    assert units == ["overlays/c0", "overlays/c1"]
    scan = live_scan.start(tmp_path, units) if forked else live_scan.Scan(tmp_path, units)
    try:
        before = scan.fingerprints(units)
        assert before == {u: run_disk.fingerprint(tmp_path, u) for u in units}
        base = tmp_path / "overlays" / "c0"
        time.sleep(0.01)
        (base / names[3]).write_text("changed\n")  # in place
        os.replace(base / names[5], base / "tmp")  # replaced by another inode
        shutil.copy(base / "tmp", base / names[5])
        (base / "tmp").unlink()
        (base / names[8]).unlink()
        scan.ask_refingerprint({"overlays/c0": [names[3], names[5]], "overlays/c1": []},
                               {"overlays/c0": [names[8]]})
        after = scan.refingerprinted()
        assert after == {u: run_disk.fingerprint(tmp_path, u) for u in units}
        assert after["overlays/c0"] != before["overlays/c0"]
        assert scan.identities("overlays/c1", ["a.yaml", "missing"]) == {
            "a.yaml": manifest.stat_key(os.lstat(tmp_path / "overlays" / "c1" / "a.yaml"))}
        # a directory the child was not started on is scanned here
        assert scan.fingerprints(["overlays"])["overlays"] == \
            run_disk.fingerprint(tmp_path, "overlays")
    finally:
        scan.close()


def test_a_scan_of_a_missing_directory_says_so(tmp_path: Path) -> None:
    scan = live_scan.Scan(tmp_path, ["nowhere"])
    assert scan.fingerprints() == {"nowhere": None}
    assert scan.refingerprint({"nowhere": ["x"]}) == {"nowhere": None}


entries = st.dictionaries(
    st.text("abc/", min_size=1, max_size=6).filter(lambda s: not s.startswith("/")),
    st.tuples(st.tuples(*[st.integers(0, 2**40)] * 5), st.sampled_from(["d1", "d2"]),
              st.booleans()), max_size=12)


@settings(max_examples=60, deadline=None)
@given(first=entries, changed=entries, removed=st.lists(st.text("abc/", min_size=1,
                                                                max_size=6), max_size=4))
def test_a_lazy_manifest_and_its_overlay_read_as_the_dict(tmp_path_factory: pytest.TempPathFactory,
                                                         first: dict, changed: dict,
                                                         removed: list[str]) -> None:
    root = tmp_path_factory.mktemp("m")
    base = {rel: Entry(*e) for rel, e in first.items()}
    old = time.time_ns() - 10**9  # no entry is racy
    base = {rel: Entry((e.key[0], e.key[1], e.key[2], e.key[3], old), e.digest, e.owned)
            for rel, e in base.items()}
    manifest.save(root, "out", base)
    put = {rel: Entry((e[0][0], e[0][1], e[0][2], e[0][3], old), e[1], e[2])
           for rel, e in changed.items()}
    manifest.save_changes(root, "out", put, removed, max(len(base), 1) * 100)
    full, digest = manifest.load_with_digest(root, "out")
    lazy, lazy_digest = manifest.load_lazy(root, "out")
    assert lazy_digest == digest
    assert dict(lazy.items()) == full and len(lazy) == len(full) and set(lazy) == set(full)
    assert manifest.owned_count(lazy) == manifest.owned_count(full)
    overlay = manifest.Overlay(lazy)
    expected = dict(full)
    for rel in list(full)[:2]:
        overlay.pop(rel, None)
        expected.pop(rel, None)
    overlay["new/x"] = Entry((1, 2, 3, 4, 5), "d3", True)
    expected["new/x"] = Entry((1, 2, 3, 4, 5), "d3", True)
    assert dict(overlay.items()) == expected and len(overlay) == len(expected)
    assert all(rel in expected for rel in overlay.sample(4))


def test_a_base_round_trips_and_a_damaged_one_is_refused() -> None:
    """The base stores each distinct facts value once, as JSON text decoded on use; a base
    whose pool is not texts, or holds a damaged text, is never used."""
    from compiler.delta import base as delta_base

    facts = {"files": ["app/gw.yaml"], "problems": False, "grants": "g", "envoy": None,
             "ns": ["app"], "refs": [["app", "ca"]]}
    text = json.dumps(facts)
    raw = {"version": delta_base.VERSION, "record": "r", "texts": {"p.yaml": "00"},
           "roles": {"p.yaml": "intent app/gw"}, "guardrails": False, "fetchProblems": False,
           "clusters": {"c0": {"dir": "overlays/c0", "shared": {}, "known": ["app"]}},
           "pool": [text], "intents": {"app/gw": {"c0": 0, "c1": 0}}}
    found = delta_base.from_json(raw)
    assert found is not None
    assert found.facts("app/gw") == {"c0": facts, "c1": facts}
    assert delta_base.from_json(json.loads(json.dumps(found.to_json()))) == found
    assert delta_base.from_json({**raw, "pool": [facts]}) is None
    damaged = delta_base.from_json({**raw, "pool": [text[:-1]]})
    assert damaged is not None
    with pytest.raises(ValueError):
        damaged.facts("app/gw")
