"""The generated validator (`schema_codegen`) is sound and useful.

Sound: whenever it says "certainly valid", the generic validator (jsonschema + the rule plan)
finds nothing, on mutations of real emitted objects (every shipped Gateway API version and
channel, ListenerSets and Envoy Gateway ClientTrafficPolicies included) aimed at what the CEL
rules check: duplicate listener names, hostname/port/protocol combinations, caCertificateRefs
counts, perPort duplicates. Useful: it accepts the real emitted objects, or it would never
engage. And `validate_object`, which now consults it, reports what the generic path reports.
"""

from __future__ import annotations

import builtins
import copy
import io
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.k8s._jsonschema_support import structural_errors
from compiler.k8s._objectmeta import metadata_errors
from compiler.k8s._schema_plan import check
from compiler.k8s.schema_codegen import compile_fast_path
from compiler.k8s.validate import (
    RULES_SKIPPED,
    SCHEMA_VIOLATION,
    KubeSchema,
    SchemaError,
    validate_object,
)
from tests.k8s.codegen_support import (
    MUTATIONS,
    ODD_VALUES,
    assert_sound,
    defaulted,
    emitted_objects,
    from_schema,
    generic_errors,
    mutate,
    paths,
    scalars,
    schemas_for,
    store,
)

Sample = tuple[str, KubeSchema, dict[str, Any]]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    out = []
    for obj in emitted_objects(tmp_path_factory.mktemp("fleet") / "fleet"):
        out += [(where, schema, obj) for where, schema in schemas_for(obj)]
    return out


@pytest.fixture(scope="module")
def valid(samples: list[Sample]) -> list[Sample]:
    return [s for s in samples if generic_errors(s[1], defaulted(s[1], s[2])) == []]


def test_every_valid_emitted_object_is_accepted(valid: list[Sample]) -> None:
    kinds = {(where, obj["kind"]) for where, _, obj in valid}
    for version, channel in store().available():
        assert (f"{version}/{channel}", "HTTPRoute") in kinds
        if (version, channel) != ("v1.4.0", "standard"):  # no frontend TLS in 1.4 standard
            assert (f"{version}/{channel}", "Gateway") in kinds, (version, channel)
    assert {"ListenerSet", "ClientTrafficPolicy", "ReferenceGrant", "ConfigMap"} <= {
        obj["kind"] for _, _, obj in valid}
    refused = [(where, obj["kind"], obj["metadata"]["name"]) for where, schema, obj in valid
               if not schema.passes_all(defaulted(schema, obj))]
    assert refused == []


def _generic_report(schema: KubeSchema, obj: Any) -> list[SchemaError]:
    """`validate_object` as it was before the fast path: the generic walk only."""
    value = defaulted(schema, obj)
    errors, blocking = structural_errors(schema.validator, value)
    errors.extend(metadata_errors(value))
    errors.extend(check(schema.plan, value, (), run_rules=not blocking))
    if blocking:
        errors.append(SchemaError((), RULES_SKIPPED, SCHEMA_VIOLATION))
    return sorted(dict.fromkeys(errors), key=SchemaError.sort_key)


def test_validate_object_reports_what_the_generic_path_reports(samples: list[Sample]) -> None:
    assert len(samples) > 200
    for _, schema, obj in samples:
        assert validate_object(schema, obj) == _generic_report(schema, obj)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_validate_object_reports_on_mutations(samples: list[Sample], data: st.DataObject) -> None:
    _, schema, obj = data.draw(st.sampled_from(samples))
    path = data.draw(st.sampled_from(paths(obj)))
    obj = mutate(obj, path, data.draw(st.sampled_from(MUTATIONS)),
                 data.draw(st.sampled_from(ODD_VALUES)), data.draw(st.integers(0, 20)))
    assert validate_object(schema, obj) == _generic_report(schema, obj)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutations_never_fool_the_generated_validator(samples: list[Sample],
                                                       data: st.DataObject) -> None:
    _, schema, obj = data.draw(st.sampled_from(samples))
    pool = ODD_VALUES + scalars(obj)
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(obj)))
        how = data.draw(st.sampled_from(MUTATIONS))
        obj = mutate(obj, path, how, data.draw(st.sampled_from(pool)),
                     data.draw(st.integers(0, 70)))
    assert_sound(schema, defaulted(schema, obj))


def _listener_lists(obj: Any) -> list[list[Any]]:
    spec = obj.get("spec") if isinstance(obj, dict) else None
    out = []
    if isinstance(spec, dict) and isinstance(spec.get("listeners"), list):
        out.append(spec["listeners"])
    tls = spec.get("tls") if isinstance(spec, dict) else None
    frontend = tls.get("frontend") if isinstance(tls, dict) else None
    if isinstance(frontend, dict) and isinstance(frontend.get("perPort"), list):
        out.append(frontend["perPort"])
    return out


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_rule_edge_cases_never_fool_the_generated_validator(samples: list[Sample],
                                                             data: st.DataObject) -> None:
    """Listeners and perPort entries recombined: same names, same ports, hostnames moved or
    dropped, protocols and TLS modes swapped, caCertificateRefs emptied or multiplied."""
    gateways = [s for s in samples if _listener_lists(s[2])]
    _, schema, obj = data.draw(st.sampled_from(gateways))
    obj = copy.deepcopy(obj)
    for entries in _listener_lists(obj):
        for _ in range(data.draw(st.integers(1, 4))):
            a, b = (data.draw(st.integers(0, len(entries) - 1)) for _ in range(2))
            field = data.draw(st.sampled_from(["name", "port", "hostname", "protocol", "tls"]))
            if field in entries[b]:
                entries[a][field] = copy.deepcopy(entries[b][field])
            else:
                entries[a].pop(field, None)
    for path in [p for p in paths(obj) if p and p[-1] == "caCertificateRefs"]:
        holder = obj
        for step in path[:-1]:
            holder = holder[step]
        refs = holder[path[-1]]
        if isinstance(refs, list) and refs:
            holder[path[-1]] = [copy.deepcopy(refs[0]) for _ in range(
                data.draw(st.sampled_from([0, 1, 2, 16, 17])))]
    assert_sound(schema, defaulted(schema, obj))


def test_unsupported_keywords_and_broken_rules_are_never_proven() -> None:
    value = {"a": "x"}
    for schema in [{"type": "object", "not": {"required": ["a"]}},
                   {"type": "object", "oneOf": [{"required": ["a"]}]},
                   {"type": "object", "$ref": "#/x"},
                   {"type": "object", "x-kubernetes-validations": [{"rule": "self.a +"}]},
                   {"type": "object", "x-kubernetes-validations": [{"rule": "self.nope"}]},
                   {"type": "object", "x-kubernetes-validations": [
                       {"rule": "self.a.matches('(')"}]},
                   {"type": "object", "x-kubernetes-validations": [
                       {"rule": "undeclared(self)"}]},
                   {"type": "integer"}, {"type": "object", "properties": {"a": {"enum": [1]}}},
                   {"type": "object", "properties": {"a": {"pattern": "(?<=x)"}}}]:
        assert compile_fast_path(schema)(value) is False, schema
    assert compile_fast_path({"type": "object", "x-kubernetes-validations": [
        {"rule": "self.a == oldSelf.a"}]})(value) is True  # transition rules are skipped


def test_compiling_reads_and_writes_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated code lives in memory only: there is no cache file that could be planted."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"file access while compiling: {args}")
    monkeypatch.setattr(builtins, "open", refuse)
    monkeypatch.setattr(io, "open", refuse)
    check = compile_fast_path({"type": "object", "properties": {"zz": {
        "type": "string", "pattern": "^q+$"}}, "x-kubernetes-validations": [
        {"rule": "self.zz.startsWith('q')"}]})
    assert check({"zz": "qq"}) is True
    assert check({"zz": "xq"}) is False


KEY_PARTS = st.none() | st.booleans() | st.sampled_from([0, 1, 1.0, "1", "a", "", "A"]) | st.just(
    float("nan")) | st.lists(st.sampled_from(["a", 1]), max_size=2)
LIST_SCHEMAS = [
    {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a", "b"],
     "items": {"type": "object"}},
    {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a"],
     "items": {"type": "object"}},
    {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}},
    {"type": "array", "x-kubernetes-list-type": "set"},
]


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(LIST_SCHEMAS), st.lists(
    st.dictionaries(st.sampled_from(["a", "b", "c"]), KEY_PARTS, max_size=3) | KEY_PARTS,
    max_size=4))
def test_list_keys_are_never_wrongly_unique(schema: dict[str, Any], items: list[Any]) -> None:
    """`x-kubernetes-list-type` uniqueness as the rule plan judges it (JSON of the keys)."""
    if compile_fast_path(schema)(items):
        assert generic_errors(KubeSchema(schema), items) == [], items


def test_distinct_list_keys_are_proven() -> None:
    check = compile_fast_path(LIST_SCHEMAS[0])
    assert check([{"a": "x", "b": 1}, {"a": "x", "b": 2}, {"a": "y"}, {"b": 1}]) is True
    assert check([{"a": "x", "b": 1}, {"a": "x", "b": 1, "c": 0}]) is False
    assert compile_fast_path(LIST_SCHEMAS[3])(["a", "b", 1]) is True
    assert compile_fast_path(LIST_SCHEMAS[3])(["a", "b", "a"]) is False


@settings(max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
@given(st.data())
def test_schema_driven_specs_never_fool_the_generated_validator(samples: list[Sample],
                                                                 data: st.DataObject) -> None:
    """A field of a real object's `spec` replaced by a value generated from its schema."""
    with_spec = [s for s in samples if "spec" in s[2]]
    strings = sorted({v for s in samples for v in scalars(s[2]) if isinstance(v, str)})
    _, schema, obj = data.draw(st.sampled_from(with_spec))
    fields = schema.document["properties"]["spec"]["properties"]
    name = data.draw(st.sampled_from(sorted(fields)))
    value = data.draw(from_schema(fields[name], ["", "a", *strings]))
    obj = {**obj, "spec": {**obj["spec"], name: value}}
    assert_sound(schema, defaulted(schema, obj))


def test_a_schema_too_deep_to_generate_is_never_proven() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(3000):
        deep = {"type": "object", "properties": {"a": deep}}
    assert compile_fast_path(deep)({}) is False
    assert compile_fast_path({"type": "object"})({}) is True  # the library still works
