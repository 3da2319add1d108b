"""A compiled "certainly valid" check for policy documents, in front of jsonschema.

jsonschema walks the intent schema generically: about 1.5 ms per GatewayIntent, 3.6 s for a
fleet of 2,000 intents, all of it in the parent process before anything can run in parallel.
fastjsonschema compiles a schema into Python code once and checks a document in a fraction of
that. It only ever answers "valid" or "not sure": every document it does not accept goes to
jsonschema (`intent_schema.check_document`), which produces the located diagnostics. So the
fast check changes no message; it must only never accept a document jsonschema rejects.

fastjsonschema implements draft-07, the intent schema is draft 2020-12. For the keywords the
intent schema uses, the two drafts agree, with three differences this module removes before
compiling: a `$ref` with sibling keywords (draft-07 ignores the siblings: they become an
`allOf`), `$defs` (renamed to `definitions`), and `const`/`enum` equality (Python's `==`
says `0 == False`; jsonschema does not: a boolean `const` also requires the boolean type).
A schema using any other keyword, or non-string enums, gets no fast check at all.

Compiling costs about 0.1-0.3 s per kind, so a kind is compiled only once a run has checked
`COMPILE_AFTER` documents of it; small repositories never pay for it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

# Keywords whose draft-07 meaning equals their 2020-12 meaning (for a subschema `items`).
SAME_MEANING = frozenset({
    "type", "properties", "required", "additionalProperties", "minLength", "maxLength",
    "pattern", "anyOf", "oneOf", "allOf", "not", "items", "const", "enum", "minItems",
    "maxItems", "minimum", "maximum", "propertyNames", "if", "then", "else", "uniqueItems",
    "$ref", "definitions",
})
ANNOTATIONS = frozenset({"description", "title", "$comment", "examples", "default"})
COMPILE_AFTER = 64

Check = Callable[[Any], bool]
_checked: Counter[str] = Counter()
_compiled: dict[str, Check | None] = {}


def certainly_valid(kind: str, document: Any, defs: dict[str, Any]) -> bool:
    """True only when `document` (plain data) is valid against `defs[kind]`; False means
    "not known": check it with jsonschema."""
    check = _compiled.get(kind)
    if check is None:
        if kind in _compiled:
            return False  # no fast check for this kind
        _checked[kind] += 1
        if _checked[kind] < COMPILE_AFTER:
            return False
        check = _compiled[kind] = compile_kind(kind, defs)
        if check is None:
            return False
    return check(document)


def compiled_kinds() -> set[str]:
    """The kinds this process has compiled a fast check for."""
    return {kind for kind, check in _compiled.items() if check is not None}


def reset() -> None:
    """Forget what was counted and compiled (tests)."""
    _checked.clear()
    _compiled.clear()


def compile_kind(kind: str, defs: dict[str, Any]) -> Check | None:
    """The compiled check for `defs[kind]`, or None when the schema uses anything whose
    meaning this module cannot vouch for (or fastjsonschema is unavailable)."""
    try:
        converted = {name: draft7(schema) for name, schema in defs.items()}
    except ValueError:
        return None
    try:
        import fastjsonschema  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - a core dependency; the slow path still works
        return None
    schema = {"$schema": "http://json-schema.org/draft-07/schema#",
              "definitions": converted, "$ref": f"#/definitions/{kind}"}
    validate = fastjsonschema.compile(schema, use_default=False, use_formats=False)
    error = fastjsonschema.JsonSchemaException

    def check(document: Any) -> bool:
        try:
            validate(document)
        except (error, Exception):  # anything odd: let jsonschema decide
            return False
        return True
    return check


def draft7(schema: Any) -> Any:
    """`schema` (2020-12) rewritten so that draft-07 gives it exactly the same meaning; raises
    ValueError where that cannot be guaranteed."""
    if isinstance(schema, list):
        return [draft7(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    unknown = set(schema) - SAME_MEANING - ANNOTATIONS
    if unknown:
        raise ValueError(f"keyword(s) {sorted(unknown)} have no checked draft-07 meaning")
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ANNOTATIONS:
            continue
        if key == "$ref":
            if not isinstance(value, str) or not value.startswith("#/$defs/"):
                raise ValueError(f"$ref {value!r} is not local")
            out[key] = "#/definitions/" + value.removeprefix("#/$defs/")
        elif key in ("properties", "definitions"):
            out[key] = {name: draft7(sub) for name, sub in value.items()}
        elif key in ("enum", "const"):
            values = value if key == "enum" else [value]
            if not all(type(v) is str or type(v) is bool for v in values):
                raise ValueError(f"{key} with non-string values")
            out[key] = value
        elif key == "items" and not isinstance(value, dict):
            raise ValueError("array-form items means prefixItems in 2020-12")
        else:
            out[key] = draft7(value)
    out = _typed_literals(out)
    if "$ref" in out and len(out) > 1:
        # draft-07 ignores a $ref's siblings; 2020-12 applies them
        ref = {"$ref": out.pop("$ref")}
        out = {"allOf": [ref, out]}
    return out


def _typed_literals(schema: dict[str, Any]) -> dict[str, Any]:
    """Python's `==` treats 0 as False and 1 as True, so a boolean literal also asks for the
    boolean type, and a string literal for the string type."""
    values = schema.get("enum", []) + ([schema["const"]] if "const" in schema else [])
    if not values:
        return schema
    kinds = {"boolean" if type(v) is bool else "string" for v in values}
    if len(kinds) == 1:
        wanted = kinds.pop()
        if "type" in schema and schema["type"] != wanted:
            return {"allOf": [{"type": wanted}, schema]}
        return {**schema, "type": wanted}
    return {"allOf": [{"anyOf": [{"type": "boolean"}, {"type": "string"}]}, schema]}
