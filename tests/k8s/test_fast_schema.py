"""The compiled "certainly valid" predicate is sound: whenever it says valid, jsonschema (as
configured for Kubernetes) finds no error. Checked on rendered fleet objects and on random
mutations of them; it must also accept the valid objects, or the fast path never engages."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.k8s._jsonschema_support import structural_errors
from compiler.k8s.validate import KubeSchema, SchemaStore
from compiler.schema_roots import schema_roots
from tests.fleet_support import compile_fleet, make_fleet
from tests.k8s.codegen_support import paths
from tests.support import REPO

BUNDLES = [("v1.6.1", "standard"), ("v1.5.1", "experimental"), ("v1.4.0", "experimental")]
ODD_VALUES = [0, -1, 1.5, 80.0, True, None, "", "x" * 300, "UPPER_case!", "10.0.0.1", [], {},
              ["a"], {"k": "v"}, 65536, "a" * 64]


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[KubeSchema, Any]]:
    import yaml

    root = make_fleet(tmp_path_factory.mktemp("fleet"), intents=10, clusters=1)
    files = compile_fleet(root).files
    store = SchemaStore(schema_roots(REPO))
    out = []
    for data in files.values():
        obj = yaml.safe_load(data)
        if obj.get("kind") in (None, "Kustomization") or "static_resources" in obj:
            continue
        for version, channel in BUNDLES:
            schema = store.get(version, channel, obj["apiVersion"], obj["kind"])
            if schema is not None:
                out.append((schema, obj))
    return out


def _sound(schema: KubeSchema, value: Any) -> None:
    if schema.certainly_valid(value):
        errors, _ = structural_errors(schema.validator, value)
        assert errors == [], value


def test_valid_objects_are_recognized_fast(samples: list[tuple[KubeSchema, Any]]) -> None:
    assert len(samples) > 50
    for schema, obj in samples:
        errors, _ = structural_errors(schema.validator, obj)
        if not errors:
            assert schema.certainly_valid(obj), obj



def _mutate(obj: Any, path: tuple[Any, ...], how: str, odd: Any) -> Any:
    obj = copy.deepcopy(obj)
    if not path:
        return odd
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif how == "extra" and isinstance(parent[last], dict):
        parent[last]["unknownField"] = odd
    else:
        parent[last] = odd
    return obj


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutations_never_fool_the_fast_check(samples: list[tuple[KubeSchema, Any]],
                                             data: st.DataObject) -> None:
    schema, obj = data.draw(st.sampled_from(samples))
    path = data.draw(st.sampled_from(paths(obj)))
    how = data.draw(st.sampled_from(["replace", "delete", "extra"]))
    odd = data.draw(st.sampled_from(ODD_VALUES))
    _sound(schema, _mutate(obj, path, how, odd))
