"""`resolve.SpecMemo`: an intent's spec resolved once for every cluster it is placed on must
give exactly the gateway and the diagnostics (text and order) of `resolve` on each cluster,
including the checks that name the cluster."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from bench.fleet_gen import write_fleet
from compiler.k8s.validate import SchemaStore
from compiler.layering import Placement, place, targets_of
from compiler.load import Policies, load_texts, read_policy_files
from compiler.pipeline import capabilities, schema_roots
from compiler.precedence import Capabilities
from compiler.resolve import SpecMemo, resolve
from tests.support import CASES, REPO

COMMON = CASES / "_common"
CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _texts(*dirs: Path) -> dict[str, bytes]:
    return {f"policies/{d.name}/{f.relative_to(d).as_posix()}": f.read_bytes()
            for d in dirs for f in sorted(d.rglob("*.yaml"))
            if f.is_file() and not f.is_symlink() and f.name != "expect.yaml"
            and "expected" not in f.relative_to(d).parts}


def _placements(policies: Policies, store: SchemaStore,
                ) -> list[tuple[Placement, Capabilities]]:
    """Every (intent x cluster) placement, cluster by cluster, as `resolve_all` makes them."""
    targets = sorted(policies.targets, key=lambda t: t.name)
    caps = {t.name: capabilities(store, t) for t in targets}
    out = []
    for target in targets:
        found = caps[target.name]
        if found is None:
            continue
        for intent in sorted(policies.intents, key=lambda i: i.key):
            if target in targets_of(intent, targets):
                mine = [d for d in policies.overrides if d.gateway_key == intent.key]
                out.append((place(intent, target, mine)[0], found))
    return out


def _same_as_resolve(texts: Mapping[str, str | bytes], store: SchemaStore) -> int:
    """Checks the memo against `resolve`; returns how many placements the memo re-used."""
    policies, _ = load_texts(texts)
    memo = SpecMemo()
    reused = 0
    for placement, caps in _placements(policies, store):
        before = len(memo.parts)
        assert memo.resolve(placement, caps) == resolve(placement, caps)
        reused += len(memo.parts) == before
    return reused


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(schema_roots(REPO))


def test_every_golden_case_resolves_alike_through_the_memo(store: SchemaStore) -> None:
    for case in CASE_DIRS:
        _same_as_resolve(_texts(case, COMMON), store)


def test_a_generated_fleet_resolves_alike_through_the_memo(tmp_path: Path,
                                                            store: SchemaStore) -> None:
    """Overrides by cluster and environment, several Gateway API versions and channels."""
    write_fleet(tmp_path, 60, 5)
    texts = read_policy_files(tmp_path / "policies", tmp_path)
    assert _same_as_resolve(texts, store) > 150  # of 300: most intents have no override


def test_checks_that_name_the_cluster_are_made_per_cluster(store: SchemaStore) -> None:
    """Two clusters with the same implementation profile: one spec, two ImplementationDivergence
    warnings, each naming its own cluster."""
    intent = (CASES / "profile-nginx-fallback" / "intent.yaml").read_text()
    second = intent.split("---")[0].replace("name: ngf", "name: ngf2").replace(
        "out/ngf", "out/ngf2")
    texts = {**_texts(COMMON), "policies/b.yaml": second.encode(),
             "policies/a.yaml": intent.replace("clusters: [ngf]", "clusters: [ngf, ngf2]").encode()}
    policies, problems = load_texts(texts)
    assert not [d for d in problems if d.is_error]
    memo = SpecMemo()
    results = {p.target.name: memo.resolve(p, caps) for p, caps in _placements(policies, store)
               if p.target.name.startswith("ngf")}
    assert len(memo.parts) == 1 and results["ngf"][0] is results["ngf2"][0]
    for name, (_, found) in results.items():
        named = [d.message for d in found if d.code == "ImplementationDivergence"]
        assert named and all(f"cluster {name!r}" in m for m in named), found
    assert _same_as_resolve(texts, store) == 1
