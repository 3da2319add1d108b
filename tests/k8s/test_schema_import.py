"""CRD -> JSON Schema import: structure kept, docs dropped, unknown fields closed, stable bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]

from compiler.k8s.schema_import import (
    SCHEMA_DIALECT,
    SchemaImportError,
    convert_schema,
    import_crds,
    import_reference_tree,
    object_meta_schema,
    render_json,
)
from tests.support import gateway_api_crds

CRD_ROOT = gateway_api_crds()
REPO_SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CA_REFS = ("spec", "tls", "frontend", "default", "validation", "caCertificateRefs")

pytestmark = pytest.mark.skipif(not CRD_ROOT.is_dir(), reason="Gateway API reference CRDs absent")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("schemas")
    import_reference_tree(CRD_ROOT, out)
    return out


def load(root: Path, version: str, channel: str, name: str) -> dict[str, Any]:
    path = root / "gateway-api" / version / channel / name
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def at(schema: dict[str, Any], *steps: str) -> dict[str, Any]:
    """The subschema for a field path (descending through properties and items)."""
    node = schema
    for step in steps:
        node = node["properties"][step]
        if node.get("type") == "array" and step != steps[-1]:
            node = node["items"]
    return node


def walk(node: Any, in_junctor: bool = False) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every schema node, with whether it sits inside anyOf/allOf/oneOf/not."""
    if not isinstance(node, dict):
        return
    yield node, in_junctor
    for child in (node.get("properties") or {}).values():
        yield from walk(child, in_junctor)
    for key in ("items", "additionalProperties"):
        yield from walk(node.get(key), in_junctor)
    for key in ("anyOf", "allOf", "oneOf"):
        for child in node.get(key) or []:
            yield from walk(child, True)
    yield from walk(node.get("not"), True)


def test_every_served_version_of_every_crd_is_written(imported: Path) -> None:
    files = sorted(p.relative_to(imported).as_posix() for p in imported.rglob("*.json"))
    assert len(files) == 50
    assert "gateway-api/v1.5.1/standard/gateway.v1.json" in files
    assert "gateway-api/v1.4.0/standard/referencegrant.v1beta1.json" in files
    assert "gateway-api/v1.4.0/standard/referencegrant.v1.json" not in files
    assert not any("listenerset" in f for f in files if f.startswith("gateway-api/v1.4.0"))


def test_returns_sorted_written_paths(tmp_path: Path) -> None:
    crds = sorted((CRD_ROOT / "v1.5.1" / "standard").glob("*.yaml"))
    written = import_crds(crds, tmp_path)
    assert written == sorted(written)
    assert {p.name for p in written} >= {"gateway.v1.json", "httproute.v1.json",
                                         "referencegrant.v1beta1.json"}
    assert all(p.is_file() for p in written)


def test_documents_are_draft_2020_12_with_source(imported: Path) -> None:
    doc = load(imported, "v1.5.1", "standard", "gateway.v1.json")
    assert doc["$schema"] == SCHEMA_DIALECT
    assert doc["x-mtlsc-source"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                     "version": "v1", "bundleVersion": "v1.5.1",
                                     "channel": "standard"}
    assert doc["properties"]["apiVersion"]["const"] == "gateway.networking.k8s.io/v1"
    assert doc["properties"]["kind"]["const"] == "Gateway"
    assert doc["properties"]["metadata"] == object_meta_schema()
    assert doc["required"][:3] == ["apiVersion", "kind", "metadata"]
    assert "spec" in doc["required"]
    for path in imported.rglob("*.json"):
        Draft202012Validator.check_schema(json.loads(path.read_text(encoding="utf-8")))


def test_descriptions_are_dropped_and_sizes_are_small(imported: Path) -> None:
    for path in imported.rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert len(text) < 120_000, path
        for node, _ in walk(json.loads(text)):
            assert not isinstance(node.get("description"), str), path  # a property may be
            assert "example" not in node and "title" not in node, path  # named description
    source = (CRD_ROOT / "v1.5.1" / "standard" / "httproutes.yaml").stat().st_size
    assert (imported / "gateway-api/v1.5.1/standard/httproute.v1.json").stat().st_size < source / 4


def test_structural_objects_reject_unknown_fields(imported: Path) -> None:
    doc = load(imported, "v1.5.1", "standard", "gateway.v1.json")
    assert doc["additionalProperties"] is False
    assert at(doc, "spec")["additionalProperties"] is False
    assert at(doc, "spec", "listeners")["items"]["additionalProperties"] is False
    for path in imported.rglob("*.json"):
        for node, in_junctor in walk(json.loads(path.read_text(encoding="utf-8"))):
            preserved = node.get("x-kubernetes-preserve-unknown-fields")
            if node.get("type") == "object" and not in_junctor and not preserved:
                assert "additionalProperties" in node, path
            if in_junctor:  # value validations only: closing them would reject declared fields
                assert node.get("additionalProperties") is not False, path


def test_validation_keywords_and_extensions_are_kept(imported: Path) -> None:
    doc = load(imported, "v1.5.1", "standard", "gateway.v1.json")
    listeners = at(doc, "spec", "listeners")
    assert listeners["x-kubernetes-list-type"] == "map"
    assert listeners["x-kubernetes-list-map-keys"] == ["name"]
    assert {"rule", "message"} <= set(listeners["x-kubernetes-validations"][0])
    port = at(doc, "spec", "listeners", "port")
    assert (port["type"], port["minimum"], port["maximum"], port["format"]) == (
        "integer", 1, 65535, "int32")
    mode = at(doc, "spec", "tls", "frontend", "default", "validation", "mode")
    assert mode["default"] == "AllowValidOnly"
    assert mode["enum"] == ["AllowValidOnly", "AllowInsecureFallback"]
    assert "pattern" in at(doc, "spec", "listeners", "name")
    addresses = at(doc, "spec", "addresses")["items"]
    assert len(addresses["oneOf"]) == 2


def test_ca_certificate_ref_limit_differs_between_bundles(imported: Path) -> None:
    v151 = load(imported, "v1.5.1", "standard", "gateway.v1.json")
    v161 = load(imported, "v1.6.1", "standard", "gateway.v1.json")
    assert at(v151, *CA_REFS)["maxItems"] == 8
    assert at(v161, *CA_REFS)["maxItems"] == 16


def test_v1_4_0_standard_gateway_has_no_frontend_tls(imported: Path) -> None:
    spec = at(load(imported, "v1.4.0", "standard", "gateway.v1.json"), "spec")
    assert "frontend" not in spec["properties"].get("tls", {}).get("properties", {})


def test_output_is_byte_identical_across_runs(imported: Path, tmp_path: Path) -> None:
    # One bundle is enough here (YAML parsing dominates the cost); all are compared below.
    written = import_crds(sorted((CRD_ROOT / "v1.6.1" / "experimental").glob("*.yaml")), tmp_path)
    assert len(written) == 9
    for path in written:
        assert path.read_bytes() == (imported / path.relative_to(tmp_path)).read_bytes()


def test_shipped_schemas_equal_a_fresh_import(imported: Path) -> None:
    fresh = {p.relative_to(imported): p.read_bytes() for p in imported.rglob("*.json")}
    shipped_root = REPO_SCHEMAS / "gateway-api"
    shipped = {p.relative_to(REPO_SCHEMAS): p.read_bytes() for p in shipped_root.rglob("*.json")}
    assert shipped.keys() == fresh.keys()
    stale = [str(path) for path, data in fresh.items() if shipped[path] != data]
    assert not stale, f"regenerate with import_reference_tree: {stale}"


# ---------------------------------------------------------------------------- synthetic CRDs

CRD_TEMPLATE = """\
apiVersion: v1
kind: ConfigMap
metadata: {{name: not-a-crd}}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
  {annotations}
spec:
  group: example.com
  names: {{kind: Widget, plural: widgets}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        description: drop me
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer, minimum: 0, exclusiveMinimum: true, example: 3}}
              note: {{type: string, nullable: true}}
              port: {{x-kubernetes-int-or-string: true}}
              extra: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
              labels: {{type: object, additionalProperties: {{type: string}}}}
  - name: v0
    served: false
    storage: false
    schema: {{openAPIV3Schema: {{type: object}}}}
"""


def write_crd(tmp_path: Path, annotations: str) -> Path:
    path = tmp_path / "widget.yaml"
    path.write_text(CRD_TEMPLATE.format(annotations=annotations), encoding="utf-8")
    return path


def test_annotations_are_required_unless_overridden(tmp_path: Path) -> None:
    crd = write_crd(tmp_path, "")
    with pytest.raises(SchemaImportError, match="bundle-version"):
        import_crds([crd], tmp_path / "out")
    written = import_crds([crd], tmp_path / "out", version="v9.0.0", channel="standard")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in written] == [
        "gateway-api/v9.0.0/standard/widget.v1.json"]  # non-CRD docs and unserved versions skipped


def test_arguments_override_annotations(tmp_path: Path) -> None:
    crd = write_crd(tmp_path, "annotations: {gateway.networking.k8s.io/bundle-version: v1.0.0, "
                              "gateway.networking.k8s.io/channel: experimental}")
    [annotated] = import_crds([crd], tmp_path / "a")
    assert annotated.parent.parts[-2:] == ("v1.0.0", "experimental")
    [overridden] = import_crds([crd], tmp_path / "b", channel="standard")
    assert overridden.parent.parts[-2:] == ("v1.0.0", "standard")


def test_openapi_spellings_are_translated(tmp_path: Path) -> None:
    crd = write_crd(tmp_path, "")
    [path] = import_crds([crd], tmp_path, version="v1", channel="c")
    spec = json.loads(path.read_text(encoding="utf-8"))["properties"]["spec"]["properties"]
    assert spec["size"] == {"type": "integer", "exclusiveMinimum": 0}
    assert spec["note"]["type"] == ["string", "null"]
    assert spec["port"]["type"] == ["integer", "string"]
    assert "additionalProperties" not in spec["extra"]
    assert spec["labels"]["additionalProperties"] == {"type": "string"}


def test_convert_schema_keeps_rule_fields_only() -> None:
    node = {"type": "string", "x-kubernetes-validations": [
        {"rule": "self != ''", "message": "m", "reason": "FieldValueInvalid",
         "fieldPath": ".x", "messageExpression": "'x'", "unknownKey": 1}]}
    [rule] = convert_schema(node)["x-kubernetes-validations"]
    assert set(rule) == {"rule", "message", "reason", "fieldPath", "messageExpression"}


def test_an_implementation_crd_goes_under_its_family_and_release(tmp_path: Path) -> None:
    crd = tmp_path / "policy.yaml"
    crd.write_text(CRD_TEMPLATE.format(annotations="").replace(
        "group: example.com", "group: gateway.envoyproxy.io"), encoding="utf-8")
    with pytest.raises(SchemaImportError, match=r"envoy-gateway.*--version"):
        import_crds([crd], tmp_path / "out")
    [written] = import_crds([crd], tmp_path / "out", version="1.9.0")
    assert written.relative_to(tmp_path / "out").as_posix() == \
        "envoy-gateway/v1.9.0/widget.v1.json"
    source = json.loads(written.read_text(encoding="utf-8"))["x-mtlsc-source"]
    assert source == {"group": "gateway.envoyproxy.io", "kind": "Widget", "version": "v1",
                      "implementation": "envoy-gateway", "implementationVersion": "v1.9.0"}


def test_shipped_client_traffic_policy_schema_is_generated() -> None:
    path = REPO_SCHEMAS / "envoy-gateway" / "v1.9.0" / "clienttrafficpolicy.v1alpha1.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    assert render_json(document) == path.read_text(encoding="utf-8")  # the importer's format
    validation = document["properties"]["spec"]["properties"]["tls"]["properties"][
        "clientValidation"]
    assert {"mode", "caCertificateRefs", "subjectAltNames", "certificateHashes"} <= \
        set(validation["properties"])
    assert validation["additionalProperties"] is False
