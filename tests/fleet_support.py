"""A small generated fleet (bench/fleet_gen.py) compiled in-process, for the cache, parallel
and sharding tests."""

from __future__ import annotations

from pathlib import Path

from bench.fleet_gen import write_fleet
from compiler.diagnostics import Diagnostic
from compiler.k8s.validate import SchemaStore
from compiler.load import read_policy_files
from compiler.pipeline import ClusterSink, Options, Result, compile_policies, schema_roots
from compiler.secrets.factory import source_factory
from tests.support import NOW, REPO

INTENTS, CLUSTERS = 14, 3


def make_fleet(root: Path, intents: int = INTENTS, clusters: int = CLUSTERS) -> Path:
    write_fleet(root, intents, clusters)
    return root


def compile_fleet(root: Path, sink: ClusterSink | None = None, **options: object) -> Result:
    texts = read_policy_files(root / "policies", root)
    store = SchemaStore(schema_roots(REPO))
    result = compile_policies(texts, source_factory(root), store,
                              Options(**{"now": NOW, **options}),  # type: ignore[arg-type]
                              sink=sink)
    assert result.policies is not None
    return result


def outcome(result: Result) -> tuple[dict[str, bytes], list[Diagnostic]]:
    return result.files, result.diagnostics
