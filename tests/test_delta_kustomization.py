"""`compiler.delta.kustomization`: the kustomization a delta compile lists anew when the edited
intents add or drop object files, and the entries it takes it from (the whole path through
the real executable is in tests/test_delta.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compiler.cache_store import EntryStore
from compiler.delta import kustomization
from compiler.delta.compute import Miss
from compiler.emit import to_yaml
from compiler.manifest import digest

VALUE = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
         "resources": ["a/gateway-a.yaml", "b/gateway-b.yaml", "b/httproute-r.yaml"],
         "configMapGenerator": [{"name": "envoy-a", "namespace": "a",
                                 "files": ["envoy.yaml=envoy/a/a.yaml"]}]}


def test_files_added_and_dropped_are_listed_in_order_and_nothing_else_changes() -> None:
    new, data = kustomization.relist(VALUE, {"a/httproute-x.yaml"}, {"b/httproute-r.yaml"},
                                     {}, "c0")
    assert new["resources"] == ["a/gateway-a.yaml", "a/httproute-x.yaml", "b/gateway-b.yaml"]
    assert list(new) == list(VALUE)  # `resources` stays where it was
    assert new["configMapGenerator"] == VALUE["configMapGenerator"]
    assert data == to_yaml(new)
    assert VALUE["resources"][2] == "b/httproute-r.yaml"  # the entry's value is not changed


@pytest.mark.parametrize(("added", "removed", "shared", "why"), [
    ({"b/gateway-b.yaml"}, set(), {}, "adds an object file another gateway"),
    (set(), {"c/httproute-gone.yaml"}, {}, "does not list a file"),
    (set(), {"b/httproute-r.yaml"}, {"b/httproute-r.yaml": [2, "00"]},
     "drops an object another gateway"),
])
def test_a_file_of_another_gateway_stops_the_delta_compile(
        added: set[str], removed: set[str], shared: dict[str, list[object]], why: str) -> None:
    with pytest.raises(Miss, match=why):
        kustomization.relist(VALUE, added, removed, shared, "c0")


def test_only_an_entry_that_emits_its_recorded_bytes_again_is_taken(tmp_path: Path) -> None:
    store = EntryStore(tmp_path)
    key = digest(to_yaml(VALUE))
    assert kustomization.load(store, key) is None  # absent
    kustomization.save(store, [(key, VALUE)])
    assert kustomization.load(store, key) == VALUE
    other = {**VALUE, "resources": VALUE["resources"][:2]}
    store.put(kustomization.KIND, key, other)  # well-formed, checksummed, another value
    assert kustomization.load(store, key) is None
    for wrong in ([], {"resources": "a.yaml"}, {"resources": [1]},
                  {"resources": [], "x": float("nan")}):
        store.put(kustomization.KIND, key, wrong)
        assert kustomization.load(store, key) is None


def test_saving_keeps_the_entries_in_use_and_prunes_older_ones(tmp_path: Path) -> None:
    store = EntryStore(tmp_path)
    values = [{**VALUE, "resources": [f"n/gateway-{i}.yaml"]} for i in range(12)]
    keys = [digest(to_yaml(v)) for v in values]
    for at, (key, value) in enumerate(zip(keys, values, strict=True)):
        store.put(kustomization.KIND, key, value)
        path = tmp_path / kustomization.KIND / key[:2] / key
        os.utime(path, ns=(at * 10**9, at * 10**9))  # one second apart, oldest first
    # one cluster written anew, three kept as they were (the oldest ones): all four stay
    kustomization.save(store, [(keys[11], values[11])], kept=keys[:3])
    for key, value in zip(keys[:3] + keys[11:], values[:3] + values[11:], strict=True):
        assert kustomization.load(store, key) == value
    left = [p for p in (tmp_path / kustomization.KIND).rglob("*") if p.is_file()]
    assert len(left) == 8  # twice the clusters in use
