"""The shipped example: it compiles to the committed overlays, reproduces the seed's Gateway
and HTTPRoute, passes the Gateway API v1.5.1 schema and CEL rules, and kustomize builds it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from compiler.k8s.validate import SchemaStore, validate_object
from compiler.pipeline import schema_roots
from tests.support import REPO, compile_root

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("example")
    shutil.copytree(REPO / "policies", root / "policies")
    result = compile_root(root)
    assert result.ok, result.diagnostics
    return result.files


def _load(data: bytes | str) -> list[Any]:
    return [d for d in YAML(typ="safe").load_all(data) if d]


def test_committed_overlays_are_what_the_compiler_produces(example: dict[str, bytes]) -> None:
    committed = {p.relative_to(REPO).as_posix(): p.read_bytes()
                 for p in (REPO / "overlays").rglob("*") if p.is_file()}
    assert committed == example


def _normalise_ref(ref: dict[str, Any], kind: str) -> dict[str, Any]:
    """API defaults of a certificate/CA reference: core group, given kind, local namespace."""
    return {"group": ref.get("group", ""), "kind": ref.get("kind", kind), "name": ref["name"]}


def _gateway_essence(gw: dict[str, Any]) -> dict[str, Any]:
    spec = gw["spec"]
    frontend = spec["tls"]["frontend"]

    def validation(v: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
        return (v.get("mode", "AllowValidOnly"),
                [_normalise_ref(r, "ConfigMap") for r in v["caCertificateRefs"]])

    return {
        "name": (gw["metadata"]["name"], gw["metadata"]["namespace"]),
        "class": spec["gatewayClassName"],
        "listeners": sorted(
            (lst["name"], lst["port"], lst["protocol"], lst["tls"].get("mode", "Terminate"),
             str([_normalise_ref(r, "Secret") for r in lst["tls"]["certificateRefs"]]),
             lst["allowedRoutes"]["namespaces"]["from"])
            for lst in spec["listeners"]),
        "default": validation(frontend["default"]["validation"]),
        "perPort": {p["port"]: validation(p["tls"]["validation"]) for p in frontend["perPort"]},
    }


def _route_essence(route: dict[str, Any]) -> dict[str, Any]:
    spec = route["spec"]
    return {
        "name": (route["metadata"]["name"], route["metadata"]["namespace"]),
        "hostnames": spec["hostnames"],
        "parents": [(p["name"], p["namespace"], p.get("group", "gateway.networking.k8s.io"),
                     p.get("kind", "Gateway")) for p in spec["parentRefs"]],
        "backends": [(b["name"], b["port"], b.get("group", ""), b.get("kind", "Service"))
                     for rule in spec["rules"] for b in rule["backendRefs"]],
    }


def test_example_reproduces_the_seed(example: dict[str, bytes]) -> None:
    seed_gw, seed_route = _load((DATA / "seed-gateway.yaml").read_text())
    gw = _load(example["overlays/demo/agentgateway-system/gateway-mtls.yaml"])[0]
    route = _load(example["overlays/demo/httpbin/httproute-httpbin-https.yaml"])[0]
    assert _gateway_essence(gw) == _gateway_essence(seed_gw)
    assert _route_essence(route) == _route_essence(seed_route)


def test_every_example_object_passes_its_clusters_schema_and_cel(
        example: dict[str, bytes]) -> None:
    store = SchemaStore(schema_roots(REPO))
    versions = {"demo": ("v1.5.1", "standard"), "prod-eu": ("v1.6.1", "standard"),
                "prod-us": ("v1.5.1", "experimental"), "staging": ("v1.4.0", "experimental")}
    checked = 0
    for path, data in example.items():
        if "/envoy/" in path:
            continue  # Envoy bootstraps: checked by a real Envoy in tests/test_envoy_*.py
        cluster = path.split("/")[1]
        for obj in _load(data):
            if obj["kind"] == "Kustomization":
                continue
            schema = store.get(*versions[cluster], obj["apiVersion"], obj["kind"])
            assert schema is not None, path
            assert validate_object(schema, obj) == [], path
            checked += 1
    assert checked >= 15


def test_seed_example_would_fail_on_v140_standard() -> None:
    """The v1.4.0 standard channel has no spec.tls: the emitted Gateway is rejected there."""
    store = SchemaStore(schema_roots(REPO))
    seed_gw = _load((DATA / "seed-gateway.yaml").read_text())[0]
    schema = store.get("v1.4.0", "standard", "gateway.networking.k8s.io/v1", "Gateway")
    assert schema is not None
    assert any("tls" in str(e.path) for e in validate_object(schema, seed_gw))


KUBECTL = shutil.which("kubectl")


def _kustomize_dirs() -> list[Path]:
    dirs = sorted(p.parent for p in (REPO / "overlays").glob("*/kustomization.yaml"))
    dirs += sorted(p.parent for p in (REPO / "tests" / "cases").glob(
        "*/expected/*/kustomization.yaml"))
    return dirs


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")
@pytest.mark.parametrize("overlay", _kustomize_dirs(),
                         ids=lambda p: p.relative_to(REPO).as_posix())
def test_kubectl_kustomize_builds(overlay: Path) -> None:
    assert KUBECTL is not None
    built = subprocess.run([KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True,
                           timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    kustomization = _load((overlay / "kustomization.yaml").read_text())[0]
    objects = _load(built.stdout)
    generated = kustomization.get("configMapGenerator", [])
    assert len(objects) == len(kustomization["resources"]) + len(generated)
    for generator in generated:  # the Envoy config rides in a hash-suffixed ConfigMap
        name = generator["name"]
        assert any(o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith(f"{name}-")
                   and "envoy.yaml" in o["data"] for o in objects)
