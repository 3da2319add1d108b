"""ReferenceGrant is emitted in the newest version the cluster's Gateway API serves."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from compiler.diagnostics import Location
from compiler.k8s.validate import SchemaStore
from compiler.model import Origin, Target
from compiler.pipeline import reference_grant_version
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
