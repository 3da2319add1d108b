"""The parsed-file memo (compiler/parse_memo.py): a warm run decodes the documents of unchanged
files instead of parsing them, and what it decodes is exactly what a fresh parse gives; files
with problems are parsed (and reported) every run; a damaged or foreign entry is ignored."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from compiler import load, parse_memo
from compiler.cache import EntryStore
from compiler.located import Node, parse_documents
from compiler.parse_memo import KIND, ParsedFiles, decode, encode
from compiler.schema_memo import file_digest
from tests.fleet_support import compile_fleet, make_fleet, outcome

REPO = Path(__file__).resolve().parent.parent
_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Files actually parsed during the test."""
    seen: list[str] = []
    real = load.parse_documents

    def counting(text, file):  # type: ignore[no-untyped-def]
        seen.append(file)
        return real(text, file)

    monkeypatch.setattr(load, "parse_documents", counting)
    return seen


def _picture(node: Node) -> Any:
    """Everything a stage can see of a node, types included."""
    value = node.value
    if isinstance(value, dict):
        inner: Any = [(k, _picture(v)) for k, v in value.items()]
    elif isinstance(value, list):
        inner = [_picture(v) for v in value]
    else:
        inner = (type(value).__name__, repr(value))
    return (type(value).__name__, inner, node.loc, node.key_loc, node.layer)


def _same_as_parse(text: str, file: str = "f.yaml") -> None:
    docs, problems = parse_documents(text, file)
    assert not problems, problems
    again = decode(json.loads(json.dumps(encode(docs))), file)
    assert [(d.file, d.index, _picture(d.root)) for d in again] == \
        [(d.file, d.index, _picture(d.root)) for d in docs]


def test_the_round_trip_is_exact_on_every_policy_file_here() -> None:
    files = [p for p in [*REPO.glob("policies/**/*.yaml"), *REPO.glob("tests/cases/**/*.yaml")]
             if p.is_file()]
    checked = 0
    for path in files:
        problems = parse_documents(path.read_bytes(), path.name)[1]
        if not problems:
            checked += 1
            _same_as_parse(path.read_text(encoding="utf-8"), path.name)
    assert checked > 10


def test_the_round_trip_keeps_scalar_types_aliases_and_documents() -> None:
    _same_as_parse("a: &x {b: [1, 1.5, .inf, -.inf, .nan, 0x1F, true, null, '7', ~]}\n"
                   "c: *x\n'quoted key': -0.0\n---\n- x\n- [y, {z: 2}]\n--- 3\n")


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() |
                    st.text(_TEXT, max_size=8),
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(_TEXT, min_size=1, max_size=5), inner,
                                    max_size=3),
                    max_leaves=12))
def test_the_round_trip_is_exact_for_any_json_like_document(value: Any) -> None:
    text = json.dumps({"root": value}, ensure_ascii=False)
    assume(not parse_documents(text, "f.yaml")[1])  # mtlsc refuses some characters
    _same_as_parse(text)


def test_a_warm_run_parses_no_unchanged_file(fleet: Path, tmp_path: Path,
                                             parsed: list[str]) -> None:
    plain = compile_fleet(fleet)
    files = len(set(parsed))
    cache = tmp_path / "cache"
    parsed.clear()
    cold = compile_fleet(fleet, cache=cache)
    assert len(set(parsed)) == files
    parsed.clear()
    warm = compile_fleet(fleet, cache=cache)
    assert parsed == []
    assert outcome(cold) == outcome(plain) == outcome(warm)
    assert warm.model == plain.model


def test_an_edited_or_broken_file_is_parsed_again_and_reported_every_run(
        fleet: Path, tmp_path: Path, parsed: list[str]) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(fleet, root)
    cache = tmp_path / "cache"
    compile_fleet(root, cache=cache)
    intent = root / "policies" / "gateways" / "team-3" / "gw-3.yaml"
    good = intent.read_text()
    intent.write_text(good.replace("spec:\n", "spec:\n  spec: [\n", 1))
    for _ in range(2):  # a file with a problem is never remembered
        parsed.clear()
        broken = compile_fleet(root, cache=cache)
        assert parsed == ["policies/gateways/team-3/gw-3.yaml"]
        assert [d.code for d in broken.diagnostics] == \
            [d.code for d in compile_fleet(root).diagnostics]
        assert not broken.ok
    intent.write_text(good.replace("gw-3.", "gw-3-edited."))
    parsed.clear()
    assert outcome(compile_fleet(root, cache=cache)) == outcome(compile_fleet(root))
    assert "policies/gateways/team-3/gw-3.yaml" in parsed


def _corrupt(cache: Path, change: Any) -> None:
    store = EntryStore(cache)
    entry = store.get(KIND, parse_memo._key())
    assert isinstance(entry, dict) and entry
    store.put(KIND, parse_memo._key(), change(entry))


@pytest.mark.parametrize("change", [
    lambda e: {k: [[0, [9, 1, 1, None, None, "x"]]] for k in e},  # unknown node kind
    lambda e: {k: [[0, [0, "1", 1, None, None, "x"]]] for k in e},  # a line that is text
    lambda e: {k: [[0, [1, 1, 1, None, None, ["a", [0, 1, 1, 1, 1, 1], "a",
                                               [0, 2, 1, 2, 1, 2]]]]] for k in e},  # dup key
    lambda e: {k: [[0, [0, 1, 1, None, None, {"x": 1}]]] for k in e},  # a dict scalar
    lambda e: {k: "nonsense" for k in e},
    lambda e: ["not", "a", "mapping"],
])
def test_a_damaged_or_foreign_entry_is_ignored(fleet: Path, tmp_path: Path, change: Any,
                                               parsed: list[str]) -> None:
    cache = tmp_path / "cache"
    plain = outcome(compile_fleet(fleet))
    compile_fleet(fleet, cache=cache)
    _corrupt(cache, change)
    parsed.clear()
    assert outcome(compile_fleet(fleet, cache=cache)) == plain
    assert len(set(parsed)) > 10  # parsed afresh


def test_text_and_bytes_of_one_content_are_remembered_apart(tmp_path: Path) -> None:
    memo = ParsedFiles(EntryStore(tmp_path))
    text = (REPO / "policies").rglob("*.yaml").__next__().read_text(encoding="utf-8")
    load.load_texts({"a.yaml": text}, parsed=memo)
    assert list(memo.seen) == [f"{file_digest('a.yaml', text)}:s"]
    memo.save()
    again = ParsedFiles(EntryStore(tmp_path))
    load.load_texts({"a.yaml": text.encode("utf-8")}, parsed=again)
    assert list(again.seen) == [f"{file_digest('a.yaml', text)}:b"]
    assert again.changed  # parsed, not taken from the text's entry
