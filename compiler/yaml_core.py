"""YAML 1.2 core-schema scalars: which Python value a scalar's text stands for.

The rules are the ones mtlsc has always used (those of ruamel.yaml's YAML 1.2 resolver), so a
policy file means the same as before: `yes`/`on` are strings, `true`/`false` booleans, `0o17`,
`0x1F`, `0b101` and `1_000` integers, `1e3`, `.5` and `.inf` floats, `~`/`null`/empty null.
Timestamps are not a type of the intent language: they stay the string that was written.

Only the core schema's tags are accepted (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`,
`!!seq`, `!!map`, and the non-specific `!`); any other tag is reported, never dropped or run.
"""

from __future__ import annotations

import re
from typing import Any

YAML_PREFIX = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (YAML_PREFIX + t for t in ("str", "int", "float", "bool", "null"))
SEQ, MAP = YAML_PREFIX + "seq", YAML_PREFIX + "map"
SCALAR_TAGS = frozenset((STR, INT, FLOAT, BOOL, NULL))

_FLOAT = re.compile(r"""[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)""", re.X)
_INT = re.compile(r"[-+]?0b[0-1_]+|[-+]?0o?[0-7_]+|[-+]?[0-9_]+|[-+]?0x[0-9a-fA-F_]+")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False,
         "FALSE": False}
_NULL = frozenset(("", "~", "null", "Null", "NULL"))
_NUMBER_START = frozenset("-+0123456789.")
_BASES = {"0b": 2, "0o": 8, "0x": 16}
_INVALID = object()


class TagError(ValueError):
    """A tag outside the core schema, or a value its tag does not allow."""


def show_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(YAML_PREFIX) if tag.startswith(YAML_PREFIX) else tag


def plain(text: str) -> Any:
    """The value of an untagged plain scalar."""
    first = text[:1]  # "" for the empty scalar, which is not in _NUMBER_START
    if first in _NUMBER_START:
        number = _number(text)
        return text if number is _INVALID else number
    if text in _NULL:
        return None
    found = _BOOL.get(text)
    return text if found is None else found


def _number(text: str) -> Any:
    if _FLOAT.fullmatch(text):
        return _float(text)
    if text[0] != "." and _INT.fullmatch(text):
        return _int(text)
    return _INVALID


def _int(text: str) -> Any:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    base = _BASES.get(digits[:2], 10)
    if base != 10:
        digits = digits[2:]
    if not digits:  # "-_", "0x_": no digits at all
        return _INVALID
    return sign * int(digits, base)


def _float(text: str) -> Any:
    digits = text.replace("_", "").lower()
    sign = -1.0 if digits.startswith("-") else 1.0
    digits = digits.lstrip("+-")
    if digits == ".inf":
        return sign * float("inf")
    if digits == ".nan":
        return float("nan")
    try:
        return sign * float(digits)
    except ValueError:  # "._" has no digits
        return _INVALID


def tagged(tag: str, text: str) -> Any:
    """The value of a scalar with an explicit tag; TagError if the tag or the text is wrong."""
    if tag == STR:
        return text
    if tag == NULL and text in _NULL:
        return None
    if tag == BOOL and text in _BOOL:
        return _BOOL[text]
    if tag == INT and _INT.fullmatch(text) and text[0] != ".":
        number = _int(text)
        if number is not _INVALID:
            return number
    if tag == FLOAT and text[:1] in _NUMBER_START:
        number = _number(text)
        if isinstance(number, int | float):
            return float(number)
    if tag in SCALAR_TAGS:
        raise TagError(f"{text!r} is not a valid {show_tag(tag)}")
    raise TagError(f"tag {show_tag(tag)} is not allowed: mtlsc reads only the YAML core schema "
                   "(!!str, !!int, !!float, !!bool, !!null, !!seq, !!map)")
