"""A schema compiled once into nested closures that answer one question fast: is this value
certainly valid?

`jsonschema` walks the schema generically for every object; a fleet validates tens of thousands
of objects against a handful of schemas, nearly all of them valid. `compile_checker` turns a
schema into a predicate that is *sound*: True only when the configured `jsonschema` validator
(`_jsonschema_support`) would report no error at all. False means "not proven": the caller then
runs `jsonschema` for the exact errors. Keywords it does not model (oneOf, not, uniqueItems,
$ref, ...) compile to "not proven" wherever an instance reaches them, so an unsupported
schema costs speed, never a verdict. The semantics mirror Draft 2020-12 as `jsonschema`
implements it: every keyword applies only to instances of its type, `integer` accepts integral
floats, booleans are never numbers, `enum`/`const` compare like `jsonschema`'s `equal`
(checked conservatively), `pattern` uses the same RE2 matcher and `format` the same
Kubernetes format predicates.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

from compiler.k8s._jsonschema_support import format_ok
from compiler.k8s.regex import RE2Error, re2_search

Check = Callable[[Any], bool]

# Keywords that never produce an error by themselves.
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default",
                          "examples", "deprecated", "readOnly", "writeOnly", "x-mtlsc-source"})


def _never(_value: Any) -> bool:
    return False


def _always(_value: Any) -> bool:
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Number) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float) and value.is_integer():
        return True
    return isinstance(value, int)


# jsonschema's Draft 2020-12 type checker, spelled the same way.
_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    "integer": _is_integer,
}


def _bound(check: Callable[[Any], bool]) -> Check:
    """A numeric bound: booleans are not numbers; only int and float are compared here,
    other numbers (Decimal, ...) are "not proven"."""
    def run(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, numbers.Number):
            return True
        kind: type = type(v)
        return kind in (int, float) and check(v)
    return run


def _same(a: Any, b: Any) -> bool:
    """Certainly equal the way jsonschema compares: only plain strings and integers (not
    bools) are trusted; anything else is "not proven"."""
    return type(a) is type(b) and type(a) in (str, int) and a == b


def _pattern(pattern: str) -> Check:
    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return True
        try:
            return re2_search(pattern, value)
        except RE2Error:
            return False
    return check


def _keyword(name: str, arg: Any, schema: Mapping[str, Any]) -> Check | None:
    """One keyword's check (instances of other types pass), or None if it is not modelled."""
    if name == "type":
        names = arg if isinstance(arg, list) else [arg]
        found = [_TYPES.get(n) for n in names]
        if any(f is None for f in found):
            return None
        checks = [f for f in found if f is not None]
        return lambda v: any(c(v) for c in checks)
    if name in ("maxLength", "minLength", "maxItems", "minItems", "maxProperties",
                "minProperties", "minimum", "maximum"):
        if type(arg) is not int:
            return None
        kind = {"maxLength": str, "minLength": str, "maxItems": list, "minItems": list,
                "maxProperties": dict, "minProperties": dict}.get(name)
        if kind is not None:
            if name.startswith("max"):
                return lambda v: not isinstance(v, kind) or len(v) <= arg
            return lambda v: not isinstance(v, kind) or len(v) >= arg
        if name == "minimum":
            return _bound(lambda v: v >= arg)
        return _bound(lambda v: v <= arg)
    if name == "pattern":
        return _pattern(arg) if isinstance(arg, str) else None
    if name == "format":
        return (lambda v: not isinstance(v, str) or format_ok(arg, v)) \
            if isinstance(arg, str) else None
    if name == "enum":
        if not isinstance(arg, list):
            return None
        return lambda v: any(_same(v, option) for option in arg)
    if name == "const":
        return lambda v: _same(v, arg)
    if name == "required":
        if not isinstance(arg, list):
            return None
        return lambda v: not isinstance(v, dict) or all(key in v for key in arg)
    if name == "items":
        if "prefixItems" in schema:
            return None
        item = compile_checker(arg)
        return lambda v: not isinstance(v, list) or all(item(x) for x in v)
    if name == "properties":
        if not isinstance(arg, Mapping):
            return None
        props = {key: compile_checker(sub) for key, sub in arg.items()}
        return lambda v: not isinstance(v, dict) or all(
            props[key](value) for key, value in v.items() if key in props)
    if name == "additionalProperties":
        if "patternProperties" in schema:
            return None
        known = frozenset(schema.get("properties") or ())
        extra = compile_checker(arg)
        return lambda v: not isinstance(v, dict) or all(
            extra(value) for key, value in v.items() if key not in known)
    if name == "propertyNames":
        key_check = compile_checker(arg)
        return lambda v: not isinstance(v, dict) or all(key_check(key) for key in v)
    if name == "anyOf":
        if not isinstance(arg, list):
            return None
        options = [compile_checker(sub) for sub in arg]
        return lambda v: any(option(v) for option in options)
    if name == "allOf":
        if not isinstance(arg, list):
            return None
        parts = [compile_checker(sub) for sub in arg]
        return lambda v: all(part(v) for part in parts)
    return None


def compile_checker(schema: Any) -> Check:
    """A sound "certainly valid" predicate for `schema` (see the module docstring)."""
    if schema is True or schema == {}:
        return _always
    if not isinstance(schema, Mapping):
        return _never  # `false`, or not a schema: never proven valid
    checks: list[Check] = []
    for name, arg in schema.items():
        if name in _ANNOTATIONS or name.startswith("x-kubernetes-"):
            continue  # x-kubernetes-* are checked by the rule plan, not by jsonschema
        check = _keyword(name, arg, schema)
        checks.append(check if check is not None else _never)
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(check(v) for check in checks)
