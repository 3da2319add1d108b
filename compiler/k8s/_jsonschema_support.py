"""jsonschema configured to judge values the way the API server's OpenAPI validator does.

Two deliberate deviations from a stock Draft 2020-12 validator:
- `pattern` uses RE2 (the google-re2 engine, as Go's regexp), see `compiler.k8s.regex`;
- `format` is checked only for formats Kubernetes enforces, with Kubernetes' leniency
  (e.g. IPv4 octets with leading zeros); `int32`, `int64` and unknown formats pass.
Errors are translated into `SchemaError`s with kubectl-like messages and precise paths.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jsonschema import (  # type: ignore[import-untyped, unused-ignore]
    Draft202012Validator,
    FormatChecker,
    ValidationError,
    validators,
)
from jsonschema.exceptions import best_match  # type: ignore[import-untyped, unused-ignore]

from compiler.k8s._schema_error import SCHEMA_VIOLATION, Path, SchemaError, format_path, show
from compiler.k8s.regex import RE2Error, re2_search

# Failures the API server treats as "blocking": when any occurs it does not evaluate the
# CEL rules, since they would run on a value of the wrong shape.
BLOCKING_KEYWORDS = frozenset({"type", "enum", "const", "required", "maxLength", "maxItems",
                               "maxProperties"})

_IPV4_SLOPPY = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})")
_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_UUID = re.compile(r"(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4,18}"
                  r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}(\.[0-9A-Fa-f]{4}){0,7}")


# ---------------------------------------------------------------------------- formats


def _sloppy_ipv4(text: str) -> bool:
    """Kubernetes parses IPv4 leniently: leading zeros are allowed and read as decimal."""
    match = _IPV4_SLOPPY.fullmatch(text)
    return match is not None and all(int(octet) <= 255 for octet in match.groups())


def _ipv6(text: str) -> bool:
    if "%" in text:
        return False  # Go's net.ParseIP rejects zones
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_ipv4(text: str) -> bool:
    return "." in text and (_sloppy_ipv4(text) or _ipv6(text))


def _is_ipv6(text: str) -> bool:
    return ":" in text and _ipv6(text)


def _is_cidr(text: str) -> bool:
    address, slash, prefix = text.partition("/")
    if not slash or not prefix.isdigit():
        return False
    if _sloppy_ipv4(address):
        return int(prefix) <= 32
    return _ipv6(address) and int(prefix) <= 128


def _is_byte(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _full(pattern: re.Pattern[str]) -> Any:
    return lambda text: pattern.fullmatch(text) is not None


_FORMATS = {
    "ipv4": _is_ipv4, "ipv6": _is_ipv6, "cidr": _is_cidr, "byte": _is_byte,
    "date-time": _full(_DATE_TIME), "datetime": _full(_DATE_TIME), "date": _full(_DATE),
    "uuid": _full(_UUID), "uuid3": _full(_UUID), "uuid4": _full(_UUID), "uuid5": _full(_UUID),
    "mac": _full(_MAC),
}


def _format_checker() -> Any:
    checker = FormatChecker(formats=())
    for name, predicate in _FORMATS.items():
        checker.checks(name)(lambda value, p=predicate: not isinstance(value, str) or p(value))
    return checker


_FORMAT_CHECKER = _format_checker()


# ---------------------------------------------------------------------------- validator


def _re2_pattern(validator: Any, pattern: str, instance: Any, _schema: Any) -> Iterator[Any]:
    if not validator.is_type(instance, "string"):
        return
    try:
        matched = re2_search(pattern, instance)
    except RE2Error as exc:
        yield ValidationError(str(exc))
        return
    if not matched:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_KubeValidator = validators.extend(Draft202012Validator, validators={"pattern": _re2_pattern})


def make_validator(document: Mapping[str, Any]) -> Any:
    return _KubeValidator(document, format_checker=_FORMAT_CHECKER)


def structural_errors(validator: Any, value: Any) -> tuple[list[SchemaError], bool]:
    """Schema violations of `value`, and whether any of them blocks CEL evaluation."""
    errors: list[SchemaError] = []
    blocking = False
    for error in validator.iter_errors(value):
        blocking = blocking or error.validator in BLOCKING_KEYWORDS
        errors.extend(translate(error))
    return errors, blocking


# ---------------------------------------------------------------------------- messages


def translate(error: Any) -> Iterator[SchemaError]:
    path: Path = tuple(error.absolute_path)
    if _in_property_names(error.absolute_schema_path):
        path = (*path, str(error.instance))  # the key itself is the offending value
    if error.validator == "additionalProperties" and error.validator_value is False:
        for name in _unknown_fields(error.instance, error.schema):
            yield SchemaError((*path, name), f'unknown field "{format_path((*path, name))}"',
                              SCHEMA_VIOLATION)
    elif error.validator == "required":
        for name in error.validator_value:
            if isinstance(error.instance, Mapping) and name not in error.instance:
                yield SchemaError((*path, name), "Required value", SCHEMA_VIOLATION)
    else:
        yield SchemaError(path, describe(error), SCHEMA_VIOLATION)


def _in_property_names(schema_path: Any) -> bool:
    previous = None
    for step in schema_path:
        if step == "propertyNames" and previous != "properties":
            return True
        previous = step
    return False


def _unknown_fields(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    if not isinstance(instance, Mapping):
        return []
    known = schema.get("properties") or {}
    return sorted(str(name) for name in instance if name not in known)


def describe(error: Any) -> str:
    """A kubectl-flavoured message for one jsonschema error."""
    keyword, expected, actual = error.validator, error.validator_value, error.instance
    simple = _SIMPLE_MESSAGES.get(keyword)
    if simple is not None:
        return simple(expected, actual)
    if keyword in ("oneOf", "anyOf"):
        return _alternatives(error)
    if keyword == "not":
        return f"Invalid value: {show(actual)}: matches a schema it must not match"
    return str(error.message)[:200]


def _alternatives(error: Any) -> str:
    formats = [e.validator_value for e in error.context if e.validator == "format"]
    if formats and len(formats) == len(error.context):  # e.g. anyOf [ipv4, ipv6]
        return f"Invalid value: {show(error.instance)}: must be of format {' or '.join(formats)}"
    quantity = "exactly one" if error.validator == "oneOf" else "at least one"
    message = f"Invalid value: must match {quantity} of the allowed schemas"
    reason = best_match(error.context) if error.context else None
    if reason is None:
        return message
    # Say which nested value is wrong, relative to the node that carries the alternatives.
    where = tuple(reason.absolute_path)[len(error.absolute_path):]
    prefix = f"{format_path(where)}: " if where else ""
    return f"{message} ({prefix}{describe(reason)})"


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
             dict: "object", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _count(value: Any) -> int:
    return len(value) if hasattr(value, "__len__") else 0


_SIMPLE_MESSAGES: dict[str, Callable[[Any, Any], str]] = {
    "type": lambda exp, act: f"Invalid value: {show(act)}: must be of type "
                             f"{exp if isinstance(exp, str) else ' or '.join(exp)}, "
                             f"not {_json_type(act)}",
    "enum": lambda exp, act: f"Unsupported value: {show(act)}: supported values: "
                             + ", ".join(show(v) for v in exp),
    "const": lambda exp, act: f"Unsupported value: {show(act)}: supported values: {show(exp)}",
    "pattern": lambda exp, act: f"Invalid value: {show(act)}: should match '{exp}'",
    "format": lambda exp, act: f"Invalid value: {show(act)}: must be of format {exp}",
    "maxLength": lambda exp, act: f"Too long: may not be longer than {exp}",
    "minLength": lambda exp, act: f"Invalid value: {show(act)}: should be at least {exp} "
                                  "chars long",
    "maxItems": lambda exp, act: f"Too many: {_count(act)}: must have at most {exp} items",
    "minItems": lambda exp, act: f"Invalid value: {_count(act)}: should have at least {exp} "
                                 "items",
    "maxProperties": lambda exp, act: f"Too many: {_count(act)}: must have at most {exp} "
                                      "properties",
    "minProperties": lambda exp, act: f"Invalid value: {_count(act)}: should have at least "
                                      f"{exp} properties",
    "maximum": lambda exp, act: f"Invalid value: {show(act)}: must be less than or equal to "
                                f"{exp}",
    "minimum": lambda exp, act: f"Invalid value: {show(act)}: must be greater than or equal "
                                f"to {exp}",
    "exclusiveMaximum": lambda exp, act: f"Invalid value: {show(act)}: must be less than {exp}",
    "exclusiveMinimum": lambda exp, act: f"Invalid value: {show(act)}: must be greater than "
                                         f"{exp}",
    "multipleOf": lambda exp, act: f"Invalid value: {show(act)}: must be a multiple of {exp}",
    "uniqueItems": lambda exp, act: "Invalid value: items must be unique",
}
