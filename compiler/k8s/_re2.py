"""Run RE2 patterns (what Go's regexp and so the API server use) on Python's `re` engine.

The two dialects agree on the common core but differ at the edges that matter for
validation: RE2's `$` only matches at the very end of the text (Python's also matches
before a final newline), `\\d \\s \\w` are ASCII-only, `\\z` is spelled `\\Z` in Python,
and RE2 knows POSIX classes like `[[:alpha:]]`. Patterns RE2 would reject
(lookarounds, backreferences, `\\p{..}` classes we cannot mirror) raise `RE2Error`
instead of silently matching differently.
"""

from __future__ import annotations

import re
from functools import lru_cache


class RE2Error(ValueError):
    """The pattern is not valid RE2, or uses a feature we cannot translate faithfully."""


_PERL_CLASSES = {"d": "0-9", "s": "\\t\\n\\f\\r ", "w": "0-9A-Za-z_"}

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}

_MULTILINE_FLAG = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]")


@lru_cache(maxsize=2048)
def compile_re2(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(translate(pattern))
    except re.error as exc:
        raise RE2Error(f"invalid regular expression {pattern!r}: {exc}") from None


def re2_search(pattern: str, text: str) -> bool:
    """Unanchored match, like Go's `regexp.MatchString` and CEL's `matches`."""
    return compile_re2(pattern).search(text) is not None


def translate(pattern: str) -> str:
    multiline = _MULTILINE_FLAG.search(pattern) is not None
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            piece, i = _escape(pattern, i, in_class=False)
        elif char == "[":
            piece, i = _char_class(pattern, i)
        elif char == "(" and pattern.startswith("(?", i):
            piece, i = _group_open(pattern, i)
        elif char == "$" and not multiline:
            piece, i = r"\Z", i + 1
        else:
            piece, i = char, i + 1
        out.append(piece)
    return "".join(out)


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int]:
    """Translate the escape starting at the backslash `pattern[i]`."""
    char = pattern[i + 1] if i + 1 < len(pattern) else ""
    if not char:
        raise RE2Error(f"trailing backslash in {pattern!r}")
    if char.lower() in _PERL_CLASSES:
        body = _PERL_CLASSES[char.lower()]
        negate = "^" if char.isupper() else ""
        if in_class and negate:
            return "\\" + char, i + 2  # rare; Python's meaning is close enough
        return (body if in_class else f"[{negate}{body}]"), i + 2
    if char == "z" and not in_class:
        return r"\Z", i + 2
    if char == "Q":
        end = pattern.find("\\E", i + 2)
        stop = len(pattern) if end < 0 else end
        literal = re.escape(pattern[i + 2:stop])
        return literal, (len(pattern) if end < 0 else end + 2)
    if char == "x" and pattern.startswith("{", i + 2):
        end = pattern.index("}", i + 2)
        return f"\\U{int(pattern[i + 3:end], 16):08x}", end + 1
    if char in "pPC":
        raise RE2Error(f"unsupported escape \\{char} in {pattern!r}")
    return "\\" + char, i + 2


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    out = ["["]
    j = i + 1
    if pattern.startswith("^", j):
        out.append("^")
        j += 1
    first = True
    while j < len(pattern):
        char = pattern[j]
        if char == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        first = False
        piece, j = _class_item(pattern, j)
        out.append(piece)
    raise RE2Error(f"missing closing ] in {pattern!r}")


def _class_item(pattern: str, j: int) -> tuple[str, int]:
    char = pattern[j]
    if pattern.startswith("[:", j):
        end = pattern.find(":]", j + 2)
        name = pattern[j + 2:end] if end > 0 else ""
        if name not in _POSIX_CLASSES:
            raise RE2Error(f"unsupported character class [:{name}:] in {pattern!r}")
        return _POSIX_CLASSES[name], end + 2
    if char == "\\":
        return _escape(pattern, j, in_class=True)
    if char in "[&~|":
        # Python warns about (future) set operations on these inside a class.
        return "\\" + char, j + 1
    return char, j + 1


def _group_open(pattern: str, i: int) -> tuple[str, int]:
    rest = pattern[i + 2:i + 4]
    if rest[:1] in ("=", "!", "#", ">") or rest in ("<=", "<!"):
        raise RE2Error(f"unsupported group syntax (?{rest[:1]} in {pattern!r}")
    if rest[:1] == "<":
        return "(?P<", i + 3  # Go accepts (?<name>..); Python spells it (?P<name>..)
    return "(?", i + 2
