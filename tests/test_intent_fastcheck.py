"""The compiled "certainly valid" intent check (compiler/intent_fastcheck.py) must never accept a
document jsonschema rejects, must accept the real documents (else it saves nothing), and must not
change a single diagnostic."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from bench import fleet_gen
from compiler import intent_fastcheck
from compiler.intent_fastcheck import compile_kind, compiled_kinds, draft7, reset
from compiler.intent_schema import KINDS, check_document, intent_schema
from compiler.located import parse_documents
from compiler.nodes import Document
from tests.k8s.codegen_support import paths
from tests.support import REPO

DEFS = intent_schema()["$defs"]


def _documents() -> list[Document]:
    out: list[Document] = []
    for base in ("policies", "tests/cases", "docs"):
        for path in sorted((REPO / base).rglob("*.yaml")):
            if path.name in ("expect.yaml", "kustomization.yaml") or "overlays" in path.parts:
                continue
            try:
                docs, problems = parse_documents(path.read_bytes(), path.as_posix())
            except Exception:
                continue
            if not problems:
                out += [d for d in docs if d.root.is_map and d.root.get("kind") is not None
                        and d.root.scalar("kind") in KINDS]
    # the benchmark fleet's documents (what the fast check is for)
    texts = [fleet_gen.clusters_yaml(5), fleet_gen.source_yaml(),
             *(fleet_gen.intent_yaml(i) for i in range(40)),
             *(text for i in range(40) if (text := fleet_gen.override_yaml(i, 5)))]
    for index, text in enumerate(texts):
        out += parse_documents(text, f"fleet-{index}.yaml")[0]
    return out


DOCUMENTS = _documents()
CHECKS = {kind: compile_kind(kind, DEFS) for kind in KINDS}


def _jsonschema_valid(document: Any, kind: str) -> bool:
    schema = {"$schema": intent_schema()["$schema"], "$defs": DEFS, "$ref": f"#/$defs/{kind}"}
    return Draft202012Validator(schema).is_valid(document)


def test_every_kind_compiles() -> None:
    assert all(CHECKS[kind] is not None for kind in KINDS)


def test_the_real_documents_are_accepted_by_both() -> None:
    kinds = {str(d.root.scalar("kind")) for d in DOCUMENTS}
    assert kinds == set(KINDS), "the corpus must hold every kind"
    valid = [d for d in DOCUMENTS if _jsonschema_valid(d.root.plain(), str(d.root.scalar("kind")))]
    assert len(valid) > 200
    rejected = [d.file for d in valid
                if not CHECKS[str(d.root.scalar("kind"))](d.root.plain())]  # type: ignore[misc]
    assert rejected == []


def test_the_fast_check_rejects_what_jsonschema_rejects_in_the_corpus() -> None:
    invalid = [d for d in DOCUMENTS
               if not _jsonschema_valid(d.root.plain(), str(d.root.scalar("kind")))]
    assert len(invalid) > 20
    for d in invalid:
        assert not CHECKS[str(d.root.scalar("kind"))](d.root.plain()), d.file  # type: ignore[misc]


JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 70000), st.floats(allow_nan=False),
                 st.sampled_from(["", "x", "a" * 300, "-1", "AllowValidOnly", "443", "*.x",
                                  "true", "Ünïcode", "a\n", "ns/name"]),
                 st.lists(st.sampled_from(["a", "b", "a"]), max_size=3),
                 st.dictionaries(st.sampled_from(["name", "x", "port"]),
                                 st.sampled_from(["a", 1, None]), max_size=2))



def _mutate(document: Any, path: tuple[Any, ...], how: str, junk: Any) -> Any:
    doc = copy.deepcopy(document)
    if not path:
        return junk
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = junk
    elif how == "delete":
        del parent[last]
    elif how == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[last]))
    elif how == "extra" and isinstance(parent, dict):
        parent[f"{last}X"] = junk
    return doc


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_never_accepts_what_jsonschema_rejects(data: st.DataObject) -> None:
    document = data.draw(st.sampled_from(DOCUMENTS))
    kind = str(document.root.scalar("kind"))
    plain = document.root.plain()
    mutated = plain
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(mutated)))
        how = data.draw(st.sampled_from(["replace", "delete", "duplicate", "extra"]))
        mutated = _mutate(mutated, path, how, data.draw(JUNK))
    if CHECKS[kind](mutated):  # type: ignore[misc]
        assert _jsonschema_valid(mutated, kind), mutated


def test_diagnostics_are_unchanged_when_the_fast_check_is_on(
        monkeypatch: pytest.MonkeyPatch) -> None:
    reset()
    before = [check_document(d.root) for d in DOCUMENTS]
    assert compiled_kinds() < set(KINDS)  # fewer than COMPILE_AFTER of some kinds
    monkeypatch.setattr(intent_fastcheck, "COMPILE_AFTER", 0)
    reset()
    after = [check_document(d.root) for d in DOCUMENTS]
    assert after == before
    assert compiled_kinds() == set(KINDS)
    reset()


def test_small_runs_never_compile() -> None:
    reset()
    for d in DOCUMENTS[:10]:
        check_document(d.root)
    assert compiled_kinds() == set()


@pytest.mark.parametrize("schema, reason", [
    ({"prefixItems": [{"type": "string"}]}, "prefixItems"),
    ({"items": [{"type": "string"}]}, "array-form items"),
    ({"enum": [1, 2]}, "non-string"),
    ({"$ref": "https://example.com/x"}, "not local"),
    ({"unevaluatedProperties": False}, "unevaluatedProperties"),
])
def test_keywords_without_a_vouched_meaning_get_no_fast_check(schema: dict[str, Any],
                                                               reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        draft7(schema)


def test_ref_siblings_and_boolean_literals_keep_their_2020_12_meaning() -> None:
    assert draft7({"$ref": "#/$defs/name", "maxLength": 3}) == {
        "allOf": [{"$ref": "#/definitions/name"}, {"maxLength": 3}]}
    check = compile_kind("X", {"X": {"type": "object", "properties": {
        "a": {"$ref": "#/$defs/S", "maxLength": 3}, "b": {"const": False}}},
        "S": {"type": "string"}})
    assert check is not None
    assert check({"a": "abc", "b": False})
    assert not check({"a": "abcd"})  # draft-07 alone would ignore maxLength beside $ref
    assert not check({"b": 0})  # 0 == False in Python, not in JSON Schema


def test_a_fleet_schema_check_runs_compiled() -> None:
    """Past COMPILE_AFTER documents of a kind, the compiled check answers for valid ones."""
    reset()
    targets = [d for d in DOCUMENTS if d.root.scalar("kind") == "ClusterTarget"
               and _jsonschema_valid(d.root.plain(), "ClusterTarget")]
    checked = 0
    while checked <= intent_fastcheck.COMPILE_AFTER:
        for d in targets:
            assert check_document(d.root) == []
            checked += 1
    assert compiled_kinds() == {"ClusterTarget"}
    reset()
