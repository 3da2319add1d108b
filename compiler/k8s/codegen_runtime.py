"""The helpers that generated validation code calls (see `schema_codegen` and `cel_codegen`).

Each helper returns exactly what the generic validator computes for plain JSON values, or
raises: generated code treats any exception as "not proven", so a helper may refuse an
unusual case by raising `Unsure` instead of reproducing it. The CEL helpers take a fast path
for the common plain types and otherwise defer to the interpreter's own runtime
(`_cel_runtime`) and function table (`lookup`), so both agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from compiler.k8s import _cel_runtime as rt
from compiler.k8s._cel_functions import lookup
from compiler.k8s._jsonschema_support import format_ok
from compiler.k8s.regex import RE2Error, searcher

_MEMO_LIMIT = 200_000  # entries per memo table before it is emptied (bounded memory)
_SIZE = lookup("size", 1, method=False)
_MATCHES = lookup("matches", 2, method=False)
_MATCH_MEMO: dict[tuple[str, str], bool] = {}


class Unsure(Exception):
    """Generated code cannot prove the value valid; the generic validator decides."""


def unsure() -> Any:
    raise Unsure


def always(_value: Any) -> bool:
    return True


def never(_value: Any) -> bool:
    return False


def _remember(memo: dict[Any, bool], key: Any, verdict: bool) -> bool:
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = verdict
    return verdict


# ---------------------------------------------------------------------------- schema keywords


def pattern_fill(memo: dict[str, bool], pattern: str, text: str) -> bool:
    """RE2 search of `pattern` in `text`, remembered in `memo` (one table per pattern);
    an invalid pattern is "not proven"."""
    try:
        return _remember(memo, text, searcher(pattern)(text))
    except RE2Error:
        return False


def format_fill(memo: dict[str, bool], name: str, text: str) -> bool:
    return _remember(memo, text, format_ok(name, text))


def same(value: Any, option: Any) -> bool:
    """Certainly equal as jsonschema's enum/const compare: plain str and int only."""
    return type(value) is type(option) and type(value) in (str, int) and value == option


def same_any(value: Any, options: tuple[Any, ...]) -> bool:
    return any(same(value, option) for option in options)


def distinct_set(items: list[Any]) -> bool:
    """No two equal entries in an `x-kubernetes-list-type: set` (str and int only)."""
    seen: set[Any] = set()
    for item in items:
        kind = type(item)
        if (kind is not str and kind is not int) or item in seen:
            return False
        seen.add(item)
    return True


def distinct_map(items: list[Any], keys: tuple[str, ...]) -> bool:
    """No two entries of a map list share their key fields (str, int or absent only)."""
    seen: set[Any] = set()
    for item in items:
        if type(item) is not dict or not keys:
            return False
        parts = []
        for name in keys:
            part = item.get(name)
            kind = type(part)
            if kind is not str and kind is not int and part is not None:
                return False
            parts.append(part)
        key = tuple(parts)
        if key in seen:
            return False
        seen.add(key)
    return True


# ---------------------------------------------------------------------------- CEL values


def boolean(value: Any) -> bool:
    """A value used as a condition: CEL requires a bool, anything else is an error."""
    if value is True or value is False:
        return value
    raise Unsure


def int64(value: int) -> int:
    """The sum of two CEL ints: an overflow is an error."""
    if -(2**63) <= value < 2**63:
        return value
    raise Unsure


def select(value: Any, name: str) -> Any:
    if type(value) is dict:
        return value[name]  # KeyError: CEL's "no such key" error
    return rt.select_field(value, name)


def has(value: Any, name: str) -> bool:
    if type(value) is dict:
        return name in value
    return rt.has_field(value, name)


def index(value: Any, key: Any) -> Any:
    kind = type(value)
    if kind is list and type(key) is int:
        if 0 <= key < len(value):
            return value[key]
        raise Unsure
    if kind is dict and type(key) is str:
        return value[key]
    return rt.index_value(value, key)


def equals(left: Any, right: Any) -> bool:
    kind = type(left)
    if kind is type(right) and (kind is str or kind is int):
        return bool(left == right)
    return rt.equals(left, right)


def equals_int(left: Any, right: int) -> bool:
    if type(left) is int:
        return bool(left == right)
    return rt.equals(left, right)


def _ordered(name: str) -> Callable[[Any, Any], int]:
    def order(left: Any, right: Any) -> int:
        kind = type(left)
        if kind is type(right) and (kind is int or kind is str):
            return int(left > right) - int(left < right)
        return rt.compare(name, left, right)
    return order


# -1, 0 or 1, as `rt.compare` under each operator's name (for its error message)
order_lt = _ordered("_<_")
order_le = _ordered("_<=_")
order_gt = _ordered("_>_")
order_ge = _ordered("_>=_")


def contains(element: Any, container: Any) -> bool:
    if type(container) is list and type(element) is str:
        for item in container:
            if type(item) is str:
                if item == element:
                    return True
            elif not (item is None or type(item) in (bool, int, float, dict, list)):
                return rt.contains(element, container)
        return False
    return rt.contains(element, container)


def size(value: Any) -> int:
    kind = type(value)
    if kind is str or kind is list or kind is dict:
        return len(value)
    result: int = _SIZE(value)
    return result


def matches(text: Any, pattern: Any) -> bool:
    if type(text) is str and type(pattern) is str:
        key = (pattern, text)
        found = _MATCH_MEMO.get(key)
        if found is not None:
            return found
        try:
            return _remember(_MATCH_MEMO, key, searcher(pattern)(text))
        except RE2Error:
            raise Unsure from None
    result: bool = _MATCHES(text, pattern)
    return result


def comprehension_range(value: Any, macro: str) -> Any:
    kind = type(value)
    if kind is list or kind is dict:
        return value
    return rt.iterate(value, macro)


def make_map(*entries: tuple[Any, Any]) -> dict[Any, Any]:
    """A CEL map literal: keys of a supported type, no key twice."""
    result: dict[Any, Any] = {}
    for key, value in entries:
        if rt.type_name(key) not in ("string", "int", "uint", "bool"):
            raise Unsure
        if any(rt.equals(key, existing) for existing in result):
            raise Unsure
        result[key] = value
    return result


def call(name: str, argc: int, method: bool) -> Callable[..., Any]:
    """The interpreter's own implementation of a CEL function."""
    return lookup(name, argc, method=method)


NAMESPACE: Mapping[str, Any] = {
    "unsure": unsure, "always": always, "never": never, "pattern_fill": pattern_fill,
    "format_fill": format_fill,
    "same": same, "same_any": same_any, "distinct_set": distinct_set,
    "distinct_map": distinct_map, "boolean": boolean, "int64": int64, "select": select,
    "select_escaped": rt.select_field, "has": has, "has_escaped": rt.has_field,
    "index": index, "equals": equals, "equals_int": equals_int, "order_lt": order_lt,
    "order_le": order_le, "order_gt": order_gt, "order_ge": order_ge,
    "contains": contains, "size": size, "matches": matches,
    "comprehension_range": comprehension_range, "make_map": make_map,
    "add": rt.add, "subtract": rt.subtract, "multiply": rt.multiply, "divide": rt.divide,
    "modulo": rt.modulo, "negate": rt.negate,
}
