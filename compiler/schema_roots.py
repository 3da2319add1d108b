"""Where Kubernetes schemas are looked up: the repository's own `schemas/` first (CRDs a user
imported), then the ones shipped with mtlsc. Light on purpose (no validator, no jsonschema):
a run-record lookup keys the same roots before anything is compiled."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path

SCHEMA_FAMILY = "gateway-api"  # the folder of the Gateway API bundles below a schema root
# API groups of implementations whose own CRDs mtlsc validates against (schemas/<family>/)
IMPLEMENTATION_FAMILIES = {"gateway.envoyproxy.io": "envoy-gateway"}


def shipped_schema_root() -> Path | None:
    """The schemas installed with mtlsc (package `mtlsc_schemas`), or the checkout's copy."""
    spec = find_spec("mtlsc_schemas")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    checkout = Path(__file__).resolve().parents[1] / "schemas"
    return checkout if (checkout / SCHEMA_FAMILY).is_dir() else None


def schema_roots(root: Path) -> list[Path]:
    """The repository's own schemas/ first (user-imported CRDs), then the shipped ones."""
    shipped = shipped_schema_root()
    local = root / "schemas"
    roots = [local] if local.is_dir() else []
    if shipped is not None and not any(r.resolve() == shipped.resolve() for r in roots):
        roots.append(shipped)
    return roots
