"""Shared by the generated-validator tests: real emitted objects with their schemas, the
generic validator's verdict (without any fast path), and mutations of objects."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from compiler.k8s._jsonschema_support import structural_errors
from compiler.k8s._schema_plan import apply_defaults, check
from compiler.k8s.validate import KubeSchema, SchemaError, SchemaStore
from compiler.schema_roots import schema_roots
from tests.fleet_support import compile_fleet, make_fleet
from tests.support import CASES, REPO

KINDS = frozenset({"Gateway", "HTTPRoute", "ReferenceGrant", "ListenerSet", "ConfigMap",
                   "ClientTrafficPolicy"})
ODD_VALUES: list[Any] = [0, -1, 1.5, 80.0, 2**63, True, False, None, "", " ", "x" * 300,
                         "UPPER_case!", "10.0.0.1", "*.example.com", "é", "\u00e9" * 64, [],
                         {}, ["a"], {"k": "v"}, 65536, 443, "a" * 64, "Terminate",
                         "Passthrough", "HTTPS", "TLS", "TCP", "AllowValidOnly", "v1", "Service",
                         "gateway.networking.k8s.io", "ConfigMap"]


def emitted_objects(root: Path) -> list[dict[str, Any]]:
    """Gateway API / Envoy Gateway objects from the golden cases and a small generated fleet."""
    texts = [path.read_text(encoding="utf-8")
             for path in sorted(CASES.glob("*/expected/**/*.yaml"))]
    texts += [data.decode("utf-8") for _, data in sorted(compile_fleet(
        make_fleet(root, intents=12, clusters=2)).files.items()) if _.endswith(".yaml")]
    out = []
    for text in texts:
        for obj in yaml.safe_load_all(text):
            if isinstance(obj, dict) and obj.get("kind") in KINDS:
                out.append(obj)
    return out


@cache
def store() -> SchemaStore:
    return SchemaStore(schema_roots(REPO))


def schemas_for(obj: dict[str, Any]) -> list[tuple[str, KubeSchema]]:
    """Every shipped schema of the object's kind: each Gateway API version and channel."""
    found: dict[int, tuple[str, KubeSchema]] = {}
    for version, channel in store().available():
        schema = store().get(version, channel, str(obj.get("apiVersion")), str(obj.get("kind")))
        if schema is not None:
            found.setdefault(id(schema), (f"{version}/{channel}", schema))
    return list(found.values())


def defaulted(schema: KubeSchema, obj: Any) -> Any:
    value = copy.deepcopy(obj)
    apply_defaults(schema.plan, value)
    return value


def generic_errors(schema: KubeSchema, value: Any) -> list[SchemaError]:
    """What the generic validator reports for an already defaulted value (structure, rules,
    list keys; ObjectMeta checks are outside the fast path's claim)."""
    errors, blocking = structural_errors(schema.validator, value)
    errors.extend(check(schema.plan, value, (), run_rules=not blocking))
    return errors


def assert_sound(schema: KubeSchema, value: Any) -> bool:
    """The generated predicate may say True only for values the generic validator accepts."""
    verdict = schema.passes_all(value)
    if verdict:
        assert generic_errors(schema, value) == [], (schema, value)
    if schema.certainly_valid(value):
        assert structural_errors(schema.validator, value)[0] == [], (schema, value)
    return verdict


def paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += paths(item, (*path, index))
    return out


def scalars(value: Any) -> list[Any]:
    """Every scalar in `value`: reusing them elsewhere makes duplicate names, ports, ..."""
    if isinstance(value, dict):
        return [s for item in value.values() for s in scalars(item)]
    if isinstance(value, list):
        return [s for item in value for s in scalars(item)]
    return [value]


MUTATIONS = ("replace", "delete", "extra", "duplicate", "drop", "empty", "repeat")


def mutate(obj: Any, path: tuple[Any, ...], how: str, new: Any, count: int) -> Any:
    """A copy of `obj` changed at `path`: replaced by `new`, deleted, given an unknown field,
    or (lists) an element duplicated / dropped / the list emptied / one element repeated."""
    obj, new = copy.deepcopy(obj), copy.deepcopy(new)
    if not path:  # objects stay objects (validate_object takes a mapping)
        obj["unknownField"] = new
        return obj
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    last, target = path[-1], parent[path[-1]]
    if how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif how == "extra" and isinstance(target, dict):
        target["unknownField"] = new
    elif how in ("duplicate", "drop", "empty", "repeat") and isinstance(target, list) and target:
        index = count % len(target)
        if how == "duplicate":
            target.append(copy.deepcopy(target[index]))
        elif how == "drop":
            del target[index]
        elif how == "empty":
            target.clear()
        else:
            target.extend(copy.deepcopy(target[index]) for _ in range(count))
    else:
        parent[last] = new
    return obj


def from_schema(schema: Any, strings: list[str], depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by a schema: mostly valid (enum members, strings taken from real emitted
    objects, integers near the bounds, required properties present), sometimes not."""
    if not isinstance(schema, dict) or depth > 6:
        return st.sampled_from(ODD_VALUES)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        rest = {key: value for key, value in schema.items() if key != "anyOf"}
        return st.one_of([from_schema({**rest, **option}, strings, depth + 1)
                          for option in schema["anyOf"] if isinstance(option, dict)])
    kind = schema.get("type")
    if kind == "string":
        return st.sampled_from(strings)
    if kind == "integer":
        low, high = schema.get("minimum", -5), schema.get("maximum", 70000)
        return st.integers(low - 1, high + 1) | st.sampled_from([80, 443, 8443])
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items"), strings, depth + 1), max_size=3)
    if kind == "object":
        props = schema.get("properties") or {}
        required = [k for k in schema.get("required", []) if k in props]
        return st.fixed_dictionaries(
            {k: from_schema(props[k], strings, depth + 1) for k in required},
            optional={k: from_schema(v, strings, depth + 1) for k, v in props.items()
                      if k not in required})
    return st.sampled_from(ODD_VALUES)
