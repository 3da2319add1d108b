"""Import CustomResourceDefinitions as JSON Schema (Draft 2020-12) documents.

The API server validates a custom resource against the CRD's structural OpenAPI v3
schema and then *prunes* fields the schema does not declare. We want those unknown
fields reported instead of silently dropped, so every structural object schema that
neither declares `additionalProperties` nor preserves unknown fields is closed with
`additionalProperties: false`. Everything that only documents (descriptions, examples)
is dropped; everything the API server enforces is kept, including the Kubernetes
extensions (`x-kubernetes-validations`, list types) that `compiler.k8s.validate` checks
itself because JSON Schema cannot express them.

Output is deterministic (sorted keys, fixed indentation) so the shipped schemas can be
regenerated and compared byte for byte.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from ..schema_roots import IMPLEMENTATION_FAMILIES as IMPLEMENTATION_FAMILIES
from ..schema_roots import SCHEMA_FAMILY

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
BUNDLE_VERSION_ANNOTATION = "gateway.networking.k8s.io/bundle-version"
CHANNEL_ANNOTATION = "gateway.networking.k8s.io/channel"
# CRDs of an implementation's own API group (policies mtlsc emits for it) live under
# <family>/<implementation release>/ instead of a Gateway API bundle and channel.

# Keywords the API server enforces (or needs to enforce others) and that carry over as-is.
_KEPT_KEYWORDS = frozenset({
    "type", "format", "enum", "pattern", "multipleOf", "uniqueItems", "default", "nullable",
    "minLength", "maxLength", "minItems", "maxItems", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "minProperties", "maxProperties", "required",
    "x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
    "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
})
_JUNCTORS = ("anyOf", "allOf", "oneOf")
_RULE_KEYS = ("rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf")


class SchemaImportError(ValueError):
    """A CRD could not be imported (missing bundle version/channel, malformed document)."""


def import_crds(crd_paths: Sequence[Path], out_root: Path, *, version: str | None = None,
                channel: str | None = None) -> list[Path]:
    """Write one schema per served version of every CRD in `crd_paths`; return their paths.

    `version`/`channel` override the Gateway API bundle annotations of the CRDs; for an
    implementation's own CRD (IMPLEMENTATION_FAMILIES) `version` is the implementation
    release it comes from and is required.
    """
    written: set[Path] = set()
    for crd_path in crd_paths:
        for crd in load_crds(crd_path):
            for relative, document in crd_schemas(crd, version=version, channel=channel,
                                                  origin=str(crd_path)):
                target = out_root.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(render_json(document), encoding="utf-8")
                written.add(target)
    return sorted(written)


def import_reference_tree(crd_root: Path, out_root: Path) -> list[Path]:
    """Regenerate schemas from a `<version>/<channel>/*.yaml` tree of CRDs.

    The shipped schemas come from `import_reference_tree(<gateway-api>/crds, <repo>/schemas)`.
    """
    return import_crds(sorted(crd_root.glob("*/*/*.yaml")), out_root)


def render_json(document: Any) -> str:
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def load_crds(path: Path) -> Iterator[Mapping[str, Any]]:
    """The CustomResourceDefinitions in a (multi-document) YAML file; other kinds are skipped."""
    yaml = YAML(typ="safe", pure=True)
    with path.open(encoding="utf-8") as handle:
        try:
            documents = list(yaml.load_all(handle))
        except UnicodeDecodeError:
            raise SchemaImportError(f"{path}: not a UTF-8 text file") from None
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise SchemaImportError(f"{where}: {problem}") from None
    for document in documents:
        if isinstance(document, Mapping) and document.get("kind") == "CustomResourceDefinition":
            yield document


def crd_schemas(crd: Mapping[str, Any], *, version: str | None = None,
                channel: str | None = None, origin: str = "<crd>",
                ) -> Iterator[tuple[PurePosixPath, dict[str, Any]]]:
    """(relative output path, schema document) for each served version of one CRD."""
    try:
        spec = crd["spec"]
        group, kind = spec["group"], spec["names"]["kind"]
        versions = spec["versions"]
    except (KeyError, TypeError) as exc:
        raise SchemaImportError(f"{origin}: not a valid CustomResourceDefinition ({exc})") from None
    if group in IMPLEMENTATION_FAMILIES:
        yield from _implementation_schemas(crd, group, kind, versions, version, origin)
        return
    bundle, chan = _bundle_identity(crd, version, channel, origin)
    for entry in versions:
        if not entry.get("served", False):
            continue
        source = {"group": group, "kind": kind, "version": entry["name"],
                  "bundleVersion": bundle, "channel": chan}
        relative = PurePosixPath(SCHEMA_FAMILY, bundle, chan,
                                 f"{kind.lower()}.{entry['name']}.json")
        yield relative, _version_document(entry, source, origin)


def _implementation_schemas(crd: Mapping[str, Any], group: str, kind: str,
                            versions: Sequence[Mapping[str, Any]], release: str | None,
                            origin: str) -> Iterator[tuple[PurePosixPath, dict[str, Any]]]:
    family = IMPLEMENTATION_FAMILIES[group]
    if not release:
        raise SchemaImportError(
            f"{origin}: CRD {crd.get('metadata', {}).get('name', '?')} belongs to {family}; "
            "pass the release it comes from with --version (for example v1.9.0)")
    release = release if release.startswith("v") else f"v{release}"
    for entry in versions:
        if not entry.get("served", False):
            continue
        source = {"group": group, "kind": kind, "version": entry["name"],
                  "implementation": family, "implementationVersion": release}
        relative = PurePosixPath(family, release, f"{kind.lower()}.{entry['name']}.json")
        yield relative, _version_document(entry, source, origin)


def _bundle_identity(crd: Mapping[str, Any], version: str | None, channel: str | None,
                     origin: str) -> tuple[str, str]:
    annotations = (crd.get("metadata") or {}).get("annotations") or {}
    bundle = version or annotations.get(BUNDLE_VERSION_ANNOTATION)
    chan = channel or annotations.get(CHANNEL_ANNOTATION)
    if not bundle or not chan:
        missing = BUNDLE_VERSION_ANNOTATION if not bundle else CHANNEL_ANNOTATION
        raise SchemaImportError(
            f"{origin}: CRD {crd.get('metadata', {}).get('name', '?')} has no {missing} "
            "annotation; pass the bundle version and channel explicitly")
    return str(bundle), str(chan)


def _version_document(entry: Mapping[str, Any], source: dict[str, str],
                      origin: str) -> dict[str, Any]:
    try:
        openapi = entry["schema"]["openAPIV3Schema"]
    except (KeyError, TypeError):
        raise SchemaImportError(
            f"{origin}: version {source['version']} has no openAPIV3Schema") from None
    root = convert_schema(openapi)
    properties = root.setdefault("properties", {})
    properties["apiVersion"] = {"type": "string", "const": f"{source['group']}/{source['version']}"}
    properties["kind"] = {"type": "string", "const": source["kind"]}
    properties["metadata"] = object_meta_schema()
    root["required"] = _merge_required(["apiVersion", "kind", "metadata"], root.get("required"))
    root["type"] = "object"
    return {"$schema": SCHEMA_DIALECT, "x-mtlsc-source": source, **root}


def _merge_required(first: list[str], rest: Sequence[str] | None) -> list[str]:
    return list(dict.fromkeys([*first, *(rest or [])]))


# ---------------------------------------------------------------------------- conversion


def convert_schema(node: Mapping[str, Any], *, structural: bool = True) -> dict[str, Any]:
    """Translate one OpenAPI v3 (Kubernetes flavour) schema node to JSON Schema 2020-12.

    `structural` is False inside anyOf/allOf/oneOf/not: there Kubernetes only allows value
    validations, and closing those objects would reject fields the structure declares.
    """
    out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in node.items() if k in _KEPT_KEYWORDS}
    _convert_children(node, out, structural)
    if "x-kubernetes-validations" in node:
        rules = node["x-kubernetes-validations"]
        out["x-kubernetes-validations"] = [{k: r[k] for k in _RULE_KEYS if k in r} for r in rules]
    _apply_openapi_semantics(out)
    if structural:
        _close_unknown_fields(out)
    return out


def _convert_children(node: Mapping[str, Any], out: dict[str, Any], structural: bool) -> None:
    if "properties" in node:
        out["properties"] = {name: convert_schema(child, structural=structural)
                             for name, child in node["properties"].items()}
    if isinstance(node.get("items"), Mapping):
        out["items"] = convert_schema(node["items"], structural=structural)
    additional = node.get("additionalProperties")
    if isinstance(additional, Mapping):
        out["additionalProperties"] = convert_schema(additional, structural=structural)
    elif isinstance(additional, bool):
        out["additionalProperties"] = additional
    for junctor in _JUNCTORS:
        if junctor in node:
            out[junctor] = [convert_schema(child, structural=False) for child in node[junctor]]
    if "not" in node:
        out["not"] = convert_schema(node["not"], structural=False)


def _apply_openapi_semantics(out: dict[str, Any]) -> None:
    """Rewrite the OpenAPI 3.0 spellings whose JSON Schema 2020-12 meaning differs."""
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool):  # OpenAPI 3.0: a flag modifying minimum/maximum
            flag = out.pop(bound)
            if flag and limit in out:
                out[bound] = out.pop(limit)
    if out.get("x-kubernetes-int-or-string") and "type" not in out:
        out["type"] = ["integer", "string"]
    if out.get("nullable") is True:
        _allow_null(out)


def _allow_null(out: dict[str, Any]) -> None:
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        out["type"] = [*kind, "null"]
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]


def _close_unknown_fields(out: dict[str, Any]) -> None:
    if out.get("type") != "object" and not (isinstance(out.get("type"), list)
                                            and "object" in out["type"]):
        return
    if "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields"):
        return
    if out.get("x-kubernetes-embedded-resource"):
        # An embedded object always has these, whether or not the schema lists them.
        for name in ("apiVersion", "kind"):
            out.setdefault("properties", {}).setdefault(name, {"type": "string"})
        out.setdefault("properties", {}).setdefault("metadata", {"type": "object"})
    out["additionalProperties"] = False


# ---------------------------------------------------------------------------- ObjectMeta


def object_meta_schema() -> dict[str, Any]:
    """Structural schema of `metadata` (ObjectMeta); names and labels are checked in code."""
    string: dict[str, Any] = {"type": "string"}
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    timestamp = {"type": ["string", "null"], "format": "date-time"}
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": string, "generateName": string, "namespace": string, "uid": string,
            "resourceVersion": string, "selfLink": string,
            "generation": {"type": "integer"},
            "creationTimestamp": timestamp, "deletionTimestamp": timestamp,
            "deletionGracePeriodSeconds": {"type": "integer"},
            "labels": string_map, "annotations": string_map,
            "finalizers": {"type": "array", "items": string},
            "ownerReferences": {"type": "array", "items": _owner_reference_schema()},
            # Server-side apply bookkeeping: opaque to us, so kept as-is.
            "managedFields": {"type": "array", "items": {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        },
    }


def _owner_reference_schema() -> dict[str, Any]:
    string = {"type": "string"}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "name", "uid"],
        "properties": {
            "apiVersion": string, "kind": string, "name": string, "uid": string,
            "controller": {"type": "boolean"}, "blockOwnerDeletion": {"type": "boolean"},
        },
    }
