"""The CEL functions Kubernetes rules may call: standard library plus the strings extension.

Each function declares the arities it accepts as a global call (`size(x)`) and as a
method (`x.size()`), so unknown names and wrong arities are rejected when a rule is
compiled, as the API server rejects them when a CRD is created.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from compiler.k8s._cel_runtime import (
    Duration,
    checked_int,
    is_list,
    is_number,
    no_overload,
    parse_duration,
    type_name,
)
from compiler.k8s._cel_syntax import INT64_MIN, CELError, UInt
from compiler.k8s.regex import RE2Error, re2_search

Impl = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Function:
    """A CEL function: its implementation and the arities it accepts as a global call and as
    a method."""

    impl: Impl
    global_arities: frozenset[int] = frozenset()
    method_arities: frozenset[int] = frozenset()  # not counting the receiver


def lookup(name: str, argc: int, *, method: bool) -> Impl:
    """The implementation for a call site; raises CELError at compile time if undeclared."""
    function = FUNCTIONS.get(name)
    if function is None:
        raise CELError(f"undeclared reference to '{name}'")
    arities = function.method_arities if method else function.global_arities
    if argc not in arities:
        form = "method" if method else "function"
        raise CELError(f"found no matching overload for {form} '{name}' with {argc} argument(s)")
    return function.impl


def _string(name: str, *values: Any) -> None:
    if not all(isinstance(v, str) for v in values):
        raise no_overload(name, *values)


# ---------------------------------------------------------------------------- collections


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, Mapping)) or is_list(value):
        return len(value)
    raise no_overload("size", value)


def _join(items: Any, separator: str = "") -> str:
    if not is_list(items):
        raise no_overload("join", items, separator)
    _string("join", separator, *items)
    return separator.join(items)


# ---------------------------------------------------------------------------- strings


def _matches(text: Any, pattern: Any) -> bool:
    _string("matches", text, pattern)
    try:
        return re2_search(pattern, text)
    except RE2Error as exc:
        raise CELError(str(exc)) from None


def _starts_with(text: Any, prefix: Any) -> bool:
    _string("startsWith", text, prefix)
    return bool(text.startswith(prefix))


def _ends_with(text: Any, suffix: Any) -> bool:
    _string("endsWith", text, suffix)
    return bool(text.endswith(suffix))


def _contains(text: Any, part: Any) -> bool:
    _string("contains", text, part)
    return part in text


def _split(text: Any, separator: Any, limit: Any = -1) -> list[str]:
    """Go's `strings.SplitN`: limit 0 gives no parts, a negative limit gives all of them."""
    _string("split", text, separator)
    if type_name(limit) != "int":
        raise no_overload("split", text, separator, limit)
    if limit == 0:
        return []
    if separator == "":
        parts = list(text)
        return parts if limit < 0 or limit >= len(parts) else [*parts[:limit - 1],
                                                                  "".join(parts[limit - 1:])]
    return list(text.split(separator, -1 if limit < 0 else limit - 1))


def _lower_ascii(text: Any) -> str:
    _string("lowerAscii", text)
    return "".join(c.lower() if c.isascii() else c for c in text)


def _upper_ascii(text: Any) -> str:
    _string("upperAscii", text)
    return "".join(c.upper() if c.isascii() else c for c in text)


# Go's unicode.IsSpace set, which differs from Python's str.isspace().
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
            "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def _trim(text: Any) -> str:
    _string("trim", text)
    return str(text).strip(_GO_SPACE)


# ---------------------------------------------------------------------------- conversions


def _duration(value: Any) -> Duration:
    if isinstance(value, Duration):
        return value
    _string("duration", value)
    return parse_duration(value)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise no_overload("int", value)
    if isinstance(value, float):
        if math.isnan(value) or not INT64_MIN <= value < 2.0**63:
            raise CELError("integer overflow")
        return int(value)
    if isinstance(value, int):
        return checked_int(int(value), 0)
    if isinstance(value, str):
        return checked_int(_parse_int(value, "int"), 0)
    raise no_overload("int", value)


def _to_uint(value: Any) -> UInt:
    if isinstance(value, bool):
        raise no_overload("uint", value)
    if isinstance(value, float):
        if math.isnan(value) or not 0 <= value < 2.0**64:
            raise CELError("unsigned integer overflow")
        return UInt(int(value))
    if isinstance(value, int):
        return UInt(checked_int(int(value), UInt(0)))
    if isinstance(value, str):
        return UInt(checked_int(_parse_int(value, "uint"), UInt(0)))
    raise no_overload("uint", value)


def _parse_int(text: str, target: str) -> int:
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit():
        raise CELError(f"cannot convert string {text!r} to {target}")
    return int(text)


def _to_double(value: Any) -> float:
    if is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise CELError(f"cannot convert string {value!r} to double") from None
    raise no_overload("double", value)


def _to_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_double(value)
    if isinstance(value, (int, Duration)):
        return str(int(value)) if isinstance(value, int) else str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise CELError("invalid UTF-8 in bytes, cannot convert to string") from None
    raise no_overload("string", value)


def format_double(value: float) -> str:
    """Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which cel-go uses for string(double)."""
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + int(exponent)  # position of the decimal point within `digits`
    prefix = "-" if sign else ""
    if point - 1 < -4 or point - 1 >= 6:  # Go switches to %e from exponent 6
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{point - 1:+03d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return prefix + digits + "0" * (point - len(digits))
    return f"{prefix}{digits[:point]}.{digits[point:]}"


_BOOL_STRINGS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
                 "0": False, "f": False, "F": False, "false": False, "FALSE": False,
                 "False": False}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value in _BOOL_STRINGS:
        return _BOOL_STRINGS[value]
    raise no_overload("bool", value)


def _dyn(value: Any) -> Any:
    return value


# ---------------------------------------------------------------------------- duration parts


def _duration_getter(name: str, unit_nanos: int) -> Impl:
    def getter(value: Any) -> int:
        if not isinstance(value, Duration):
            raise no_overload(name, value)
        whole = abs(value.nanos) // unit_nanos  # totals, truncated toward zero
        return -whole if value.nanos < 0 else whole
    return getter


def _f(impl: Impl, global_: tuple[int, ...] = (), method: tuple[int, ...] = ()) -> Function:
    return Function(impl, frozenset(global_), frozenset(method))


FUNCTIONS: dict[str, Function] = {
    "size": _f(_size, (1,), (0,)),
    "matches": _f(_matches, (2,), (1,)),
    "startsWith": _f(_starts_with, method=(1,)),
    "endsWith": _f(_ends_with, method=(1,)),
    "contains": _f(_contains, method=(1,)),
    "split": _f(_split, method=(1, 2)),
    "lowerAscii": _f(_lower_ascii, method=(0,)),
    "upperAscii": _f(_upper_ascii, method=(0,)),
    "trim": _f(_trim, method=(0,)),
    "join": _f(_join, method=(0, 1)),
    "duration": _f(_duration, (1,)),
    "int": _f(_to_int, (1,)),
    "uint": _f(_to_uint, (1,)),
    "double": _f(_to_double, (1,)),
    "string": _f(_to_string, (1,)),
    "bool": _f(_to_bool, (1,)),
    "dyn": _f(_dyn, (1,)),
    "getHours": _f(_duration_getter("getHours", 3600 * 10**9), method=(0,)),
    "getMinutes": _f(_duration_getter("getMinutes", 60 * 10**9), method=(0,)),
    "getSeconds": _f(_duration_getter("getSeconds", 10**9), method=(0,)),
    "getMilliseconds": _f(_duration_getter("getMilliseconds", 10**6), method=(0,)),
}
