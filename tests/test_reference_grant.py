"""ReferenceGrant is emitted in the newest version the cluster's Gateway API serves."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.diagnostics import Location
from compiler.k8s.validate import SchemaStore
from compiler.model import Origin, Target
from compiler.pipeline import reference_grant_version
from compiler.render.gateway_api import Rendered
from compiler.render_units import GRANT_MAX_TO, merge_grants
from tests.support import REPO

HERE = Location("t.yaml", 1, 1)


def _target(version: str, channel: str) -> Target:
    return Target("c1", None, version, channel, "out/c1", (), "s", timedelta(days=30),
                  Origin(HERE, "base"), HERE, HERE)


@pytest.mark.parametrize(("version", "channel", "expected"), [
    ("v1.4.0", "standard", "v1beta1"),
    ("v1.4.0", "experimental", "v1beta1"),
    ("v1.5.1", "standard", "v1"),
    ("v1.5.1", "experimental", "v1"),
    ("v1.6.1", "standard", "v1"),
])
def test_version_follows_the_shipped_schemas(version: str, channel: str, expected: str) -> None:
    store = SchemaStore([REPO / "schemas"])
    assert reference_grant_version(store, _target(version, channel)) == expected


def test_committed_overlays_use_v1_where_served() -> None:
    """prod-us runs Gateway API v1.5.1: its grant is v1 (the committed overlay, as compiled)."""
    grant = REPO / "overlays/prod-us/shared-cas/referencegrant-mtlsc-gateway-payments-gw.yaml"
    assert "apiVersion: gateway.networking.k8s.io/v1\n" in grant.read_text()


def test_imported_schemas_decide(tmp_path: Path) -> None:
    """A version without a v1 ReferenceGrant schema gets v1beta1, whatever its number."""
    store = SchemaStore([tmp_path])
    assert reference_grant_version(store, _target("v9.9.9", "standard")) == "v1beta1"


def test_the_split_size_is_every_shipped_schemas_limit() -> None:
    limits = {json.loads(f.read_text())["properties"]["spec"]["properties"]["to"]["maxItems"]
              for f in (REPO / "schemas" / "gateway-api").glob("*/*/referencegrant.*.json")}
    assert limits == {GRANT_MAX_TO}


def _grant(name: str, services: list[str]) -> Rendered:
    return Rendered({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "ReferenceGrant",
                     "metadata": {"name": name, "namespace": "backends"},
                     "spec": {"from": [{"group": "gateway.networking.k8s.io",
                                        "kind": "HTTPRoute", "namespace": "web"}],
                              "to": [{"group": "", "kind": "Service", "name": s}
                                     for s in services]}}, {(): HERE})


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 70), max_size=40), min_size=1, max_size=4))
def test_merged_grants_cover_every_target_once_within_the_limit(per_gateway: list[list[int]],
                                                                ) -> None:
    grants = [_grant("mtlsc-httproute-web", [f"svc-{i:02d}" for i in sorted(set(ids))])
              for ids in per_gateway]
    parts = merge_grants(grants)
    wanted = sorted({f"svc-{i:02d}" for ids in per_gateway for i in ids})
    got = [t["name"] for p in parts for t in p.obj["spec"]["to"]]
    assert got == wanted  # every Service once, in order, nothing widened
    assert all(len(p.obj["spec"]["to"]) <= GRANT_MAX_TO for p in parts)
    assert len(parts) == max(1, -(-len(wanted) // GRANT_MAX_TO))
    names = [p.obj["metadata"]["name"] for p in parts]
    assert names == ["mtlsc-httproute-web"] + [f"mtlsc-httproute-web.{k}"
                                               for k in range(2, len(parts) + 1)]
    assert [p.identity for p in parts] == sorted(p.identity for p in parts)
    assert all(p.obj["spec"]["from"] == grants[0].obj["spec"]["from"] for p in parts)
