"""CEL value semantics: types, equality, ordering, arithmetic and field access.

Values are plain Python/JSON values (None, bool, int, float, str, bytes, list, dict)
plus `UInt` and `Duration`. Python's `True == 1` and `1 == 1.0` conflations do not
match CEL, so equality and ordering are implemented here instead of using `==`/`<`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from compiler.k8s._cel_syntax import INT64_MAX, INT64_MIN, RESERVED, UINT64_MAX, CELError, UInt

# Kubernetes exposes a property whose name is a CEL keyword as `__<keyword>__`.
_ESCAPABLE_KEYWORDS = RESERVED | {"true", "false", "null", "in"}
_ESCAPE_SEQUENCES = re.compile(r"__(underscores|dot|dash|slash)__")
_UNESCAPED = {"underscores": "__", "dot": ".", "dash": "-", "slash": "/"}


@total_ordering
@dataclass(frozen=True, slots=True)
class Duration:
    """A `google.protobuf.Duration`, held as whole nanoseconds to keep comparisons exact."""

    nanos: int

    def __lt__(self, other: Duration) -> bool:
        return self.nanos < other.nanos

    def __str__(self) -> str:
        seconds, frac = divmod(abs(self.nanos), 10**9)
        sign = "-" if self.nanos < 0 else ""
        tail = f".{frac:09d}".rstrip("0") if frac else ""
        return f"{sign}{seconds}{tail}s"


def type_name(value: Any) -> str:
    match value:
        case None:
            return "null_type"
        case bool():
            return "bool"
        case UInt():
            return "uint"
        case int():
            return "int"
        case float():
            return "double"
        case str():
            return "string"
        case bytes():
            return "bytes"
        case Duration():
            return "google.protobuf.Duration"
        case Mapping():
            return "map"
        case list() | tuple():
            return "list"
    return type(value).__name__


def no_overload(name: str, *args: Any) -> CELError:
    types = ", ".join(type_name(a) for a in args)
    return CELError(f"no such overload: {name}({types})")


def is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---------------------------------------------------------------------------- equality


def equals(left: Any, right: Any) -> bool:
    """CEL heterogeneous equality: numbers compare by value, other kinds must match."""
    if is_number(left) and is_number(right):
        return bool(left == right)
    if type_name(left) != type_name(right):
        return False
    if is_list(left):
        return len(left) == len(right) and all(map(equals, left, right))
    if isinstance(left, Mapping):
        return _maps_equal(left, right)
    return bool(left == right)


def _maps_equal(left: Mapping[Any, Any], right: Mapping[Any, Any]) -> bool:
    if len(left) != len(right):
        return False
    return all(key in right and equals(value, right[key]) for key, value in left.items())


def compare(name: str, left: Any, right: Any) -> int:
    """-1, 0 or 1 for orderable pairs; numbers of different kinds compare by value."""
    if is_number(left) and is_number(right):
        if math.isnan(left) or math.isnan(right):
            raise CELError(f"no such overload: {name} on NaN")
    elif not (type_name(left) == type_name(right) and isinstance(
            left, (bool, str, bytes, Duration))):
        raise no_overload(name, left, right)
    return int(left > right) - int(left < right)


def contains(element: Any, container: Any) -> bool:
    if is_list(container):
        return any(equals(element, item) for item in container)
    if isinstance(container, Mapping):
        return any(equals(element, key) for key in container)
    raise no_overload("@in", element, container)


# ---------------------------------------------------------------------------- arithmetic


def checked_int(value: int, like: Any) -> int:
    """Range-check an integer result the way CEL does, keeping uint-ness."""
    if isinstance(like, UInt):
        if not 0 <= value <= UINT64_MAX:
            raise CELError("unsigned integer overflow")
        return UInt(value)
    if not INT64_MIN <= value <= INT64_MAX:
        raise CELError("integer overflow")
    return value


def _same_numeric_kind(left: Any, right: Any) -> bool:
    kinds = (type_name(left), type_name(right))
    return kinds[0] == kinds[1] and kinds[0] in ("int", "uint", "double")


def add(left: Any, right: Any) -> Any:
    if _same_numeric_kind(left, right):
        return left + right if isinstance(left, float) else checked_int(left + right, left)
    if type_name(left) == type_name(right) and isinstance(left, (str, bytes)):
        return left + right
    if is_list(left) and is_list(right):
        return [*left, *right]
    if isinstance(left, Duration) and isinstance(right, Duration):
        return make_duration(left.nanos + right.nanos)
    raise no_overload("_+_", left, right)


def subtract(left: Any, right: Any) -> Any:
    if _same_numeric_kind(left, right):
        return left - right if isinstance(left, float) else checked_int(left - right, left)
    if isinstance(left, Duration) and isinstance(right, Duration):
        return make_duration(left.nanos - right.nanos)
    raise no_overload("_-_", left, right)


def multiply(left: Any, right: Any) -> Any:
    if not _same_numeric_kind(left, right):
        raise no_overload("_*_", left, right)
    return left * right if isinstance(left, float) else checked_int(left * right, left)


def divide(left: Any, right: Any) -> Any:
    if not _same_numeric_kind(left, right):
        raise no_overload("_/_", left, right)
    if isinstance(left, float):
        return _float_divide(left, right)
    if right == 0:
        raise CELError("division by zero")
    quotient = abs(left) // abs(right)  # CEL truncates toward zero
    return checked_int(quotient if (left < 0) == (right < 0) else -quotient, left)


def _float_divide(left: float, right: float) -> float:
    if right == 0:
        if left == 0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return left / right


def modulo(left: Any, right: Any) -> Any:
    if not _same_numeric_kind(left, right) or isinstance(left, float):
        raise no_overload("_%_", left, right)
    if right == 0:
        raise CELError("modulus by zero")
    remainder = abs(left) % abs(right)  # the sign follows the dividend, as in Go
    return checked_int(-remainder if left < 0 else remainder, left)


def negate(value: Any) -> Any:
    if isinstance(value, float):
        return -value
    if type_name(value) == "int":
        return checked_int(-value, value)
    if isinstance(value, Duration):
        return make_duration(-value.nanos)
    raise no_overload("-_", value)


def logical_not(value: Any) -> bool:
    if not isinstance(value, bool):
        raise no_overload("!_", value)
    return not value


# ---------------------------------------------------------------------------- durations

_MAX_DURATION_NANOS = 315_576_000_000 * 10**9  # CEL's limit: +/- 10000 years
_UNIT_NANOS = {
    "ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6,
    "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
}
_DURATION_RE = re.compile(r"([-+]?)((?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+)")
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|µs|μs|ms|s|m|h)")


def make_duration(nanos: int) -> Duration:
    if abs(nanos) > _MAX_DURATION_NANOS:
        raise CELError("duration out of range")
    return Duration(nanos)


def parse_duration(text: str) -> Duration:
    """Parse Go's `time.ParseDuration` syntax (e.g. `1h30m`, `1.5s`, `300ms`, `0`)."""
    if text in ("0", "+0", "-0"):
        return Duration(0)
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise CELError(f"invalid duration {text!r}")
    total = sum(_part_nanos(*part) for part in _DURATION_PART.findall(match.group(2)))
    return make_duration(-total if match.group(1) == "-" else total)


def _part_nanos(whole: str, frac: str, unit: str) -> int:
    scale = _UNIT_NANOS[unit]
    nanos = int(whole or "0") * scale
    if frac:
        nanos += int(frac) * scale // 10 ** len(frac)  # Go truncates sub-nanosecond digits
    return nanos


# ---------------------------------------------------------------------------- field access


def unescape_field(name: str) -> str:
    """Map a CEL-visible property name back to its JSON name (Kubernetes escaping rules)."""
    if name.startswith("__") and name.endswith("__") and name[2:-2] in _ESCAPABLE_KEYWORDS:
        return name[2:-2]
    return _ESCAPE_SEQUENCES.sub(lambda m: _UNESCAPED[m.group(1)], name)


def select_field(value: Any, name: str) -> Any:
    if not isinstance(value, Mapping):
        raise CELError(f"type '{type_name(value)}' does not support field selection")
    key = unescape_field(name)
    if key in value:
        return value[key]
    if name in value:  # maps (additionalProperties) keys are not escaped
        return value[name]
    raise CELError(f"no such key: {name}")


def has_field(value: Any, name: str) -> bool:
    if not isinstance(value, Mapping):
        raise CELError(f"invalid type for field selection: {type_name(value)}")
    return unescape_field(name) in value or name in value


def index_value(value: Any, key: Any) -> Any:
    if is_list(value):
        return _list_index(value, key)
    if isinstance(value, Mapping):
        if isinstance(key, str) and key in value:
            return value[key]
        for candidate in value:
            if equals(candidate, key):
                return value[candidate]
        raise CELError(f"no such key: {key}")
    raise no_overload("_[_]", value, key)


def _list_index(value: Sequence[Any], key: Any) -> Any:
    if isinstance(key, float) and key.is_integer():
        key = int(key)
    if not is_number(key) or isinstance(key, float):
        raise no_overload("_[_]", value, key)
    if not 0 <= key < len(value):
        raise CELError(f"index out of bounds: {key}")
    return value[key]


def iterate(value: Any, macro: str) -> Iterator[Any]:
    """Comprehension range: list elements, or map keys."""
    if is_list(value) or isinstance(value, Mapping):
        return iter(value)
    raise CELError(f"{macro}() cannot range over {type_name(value)}")
