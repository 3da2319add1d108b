"""Validate policy documents against the intent JSON Schema, with every error at its YAML line."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped, unused-ignore]
from jsonschema.exceptions import (  # type: ignore[import-untyped, unused-ignore]
    ValidationError,
    best_match,
)

from .diagnostics import Diagnostic, error
from .intent_fastcheck import certainly_valid
from .located import Node

API_VERSION = "mtlsc.dev/v1alpha1"
KINDS = ("GatewayIntent", "GatewayOverride", "ClusterTarget", "CertificateSource", "Guardrail")


@cache
def intent_schema() -> dict[str, Any]:
    text = resources.files("mtlsc_schemas").joinpath("mtlsc/v1alpha1/mtlsc.schema.json")
    loaded: dict[str, Any] = json.loads(text.read_text(encoding="utf-8"))
    return loaded


@cache
def _validator(kind: str) -> Draft202012Validator:
    schema = dict(intent_schema())
    defs = schema["$defs"]
    schema_for_kind = {"$schema": schema["$schema"], "$defs": defs,
                       **_inline(defs[kind], defs, (kind,))}
    return Draft202012Validator(schema_for_kind)


def _inline(schema: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    """`schema` with every local `{"$ref": "#/$defs/X"}` replaced by X itself (except in a
    cycle). The same checks and messages, but jsonschema no longer resolves a reference at every
    node of every document, which was most of the time spent checking intents."""
    if isinstance(schema, list):
        return [_inline(item, defs, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and len(schema) == 1 and ref.startswith("#/$defs/"):
        name = ref.removeprefix("#/$defs/")
        if name in defs and name not in seen:
            return _inline(defs[name], defs, (*seen, name))
    return {key: _inline(value, defs, seen) for key, value in schema.items()}


def check_document(root: Node) -> list[Diagnostic]:
    """All schema problems of one document, each located at the offending YAML node."""
    if not root.is_map:
        return [error("SchemaViolation", "a policy document must be a mapping with apiVersion "
                      "and kind", root.loc, f"start the document with 'apiVersion: {API_VERSION}'")]
    header = _check_header(root)
    if header:
        return header
    kind = str(root.scalar("kind"))
    plain = root.plain()
    if certainly_valid(kind, plain, intent_schema()["$defs"]):
        return []
    validator = _validator(kind)
    errors = sorted(validator.iter_errors(plain), key=lambda e: list(e.absolute_path))
    return [d for err in errors for d in _diagnostics(root, _leaf(err))]


def _check_header(root: Node) -> list[Diagnostic]:
    api, kind = root.get("apiVersion"), root.get("kind")
    if api is None or api.value != API_VERSION:
        where = api.loc if api else root.loc
        return [error("UnknownAPIVersion", f"apiVersion must be {API_VERSION!r}", where,
                      f"set 'apiVersion: {API_VERSION}'")]
    if kind is None or kind.value not in KINDS:
        where = kind.loc if kind else root.loc
        got = f" (got {kind.value!r})" if kind else ""
        return [error("UnknownKind", f"kind must be one of {', '.join(KINDS)}{got}", where,
                      _suggest(str(kind.value) if kind else "", KINDS))]
    return []


def _leaf(err: ValidationError) -> ValidationError:
    """oneOf/anyOf errors hide the useful message in their context; descend to it. The
    `null` branch of a patch field ("null removes it") is never the interesting one."""
    while err.context and err.validator in ("oneOf", "anyOf") and _choice(err) is None:
        candidates = [e for e in err.context
                      if not (e.validator == "type" and e.validator_value == "null")]
        inner = best_match(candidates) if candidates else None
        if inner is None or (list(inner.absolute_path) == list(err.absolute_path) and
                             inner.validator in ("type", "oneOf")):
            break
        err = inner
    return err


def _suggest(word: str, choices: Iterable[str]) -> str:
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "allowed: " + ", ".join(options) if options else ""


def dotted(path: Iterable[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out or "(document)"


def _choice(err: ValidationError) -> list[str] | None:
    """Field names when a oneOf/anyOf only chooses between required fields."""
    branches = err.schema.get(str(err.validator)) if isinstance(err.schema, dict) else None
    if err.validator not in ("oneOf", "anyOf") or not isinstance(branches, list):
        return None
    if not all(isinstance(b, dict) and set(b) == {"required"} for b in branches):
        return None
    return [name for b in branches for name in b["required"]]


def _diagnostics(root: Node, err: ValidationError) -> list[Diagnostic]:
    path = tuple(err.absolute_path)
    node = root.find(path)
    where = dotted(path)
    fields = _choice(err)
    if fields is not None:
        names = " or ".join(repr(f) for f in fields)
        exactly = "exactly one of" if err.validator == "oneOf" else "at least one of"
        return [error("MissingField" if "is not valid" in err.message else "SchemaViolation",
                      f"{where}: set {exactly} {names}", node.loc,
                      f"give {exactly} {names}")]
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = err.schema.get("properties", {})
        out = []
        for key in sorted(set(err.instance) - set(allowed)):
            child = node.get(key)
            loc = child.key_loc if child and child.key_loc else node.loc
            out.append(error("UnknownField", f"{where}: unknown field {key!r}", loc,
                             _suggest(key, allowed)))
        return out
    if err.validator == "required":
        return [error("MissingField", f"{where}: {err.message}", node.loc,
                      "add the missing field")]
    return [error("SchemaViolation", f"{where}: {err.message}", node.loc, _hint(err))]


def _hint(err: ValidationError) -> str | None:
    schema = err.schema if isinstance(err.schema, dict) else {}
    if err.validator == "enum":
        return "use one of: " + ", ".join(map(str, schema.get("enum", [])))
    if err.validator == "pattern":
        return f"the value must match {schema.get('pattern')}"
    if err.validator == "type":
        return f"expected a value of type {schema.get('type')}"
    branches = schema.get("oneOf")
    if err.validator == "oneOf" and isinstance(branches, list) and \
            any(b.get("$ref", "").endswith("/name") for b in branches if isinstance(b, dict)):
        return "give either the name as a string or a mapping with 'name' (and 'namespace')"
    return schema.get("description") if isinstance(schema.get("description"), str) else None
