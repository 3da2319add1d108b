"""RE2 regular expressions, as Go's regexp (and so the API server and CEL's `matches`) runs them.

The `google-re2` bindings run the real RE2 engine, so a pattern means here exactly what it means
to the API server: `$` only at the end of the text, ASCII `\\d \\s \\w`, POSIX classes, Unicode
classes like `\\pL`, flags like `(?i)` anywhere, and no lookarounds or backreferences (those are
errors, as in Go).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information


class RE2Error(ValueError):
    """The pattern is not valid RE2."""


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would log parse errors to stderr; we raise instead
    return options


_OPTIONS = _options()


@lru_cache(maxsize=2048)
def compile_re2(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise RE2Error(f"invalid regular expression {pattern!r}: {detail}") from None


def re2_search(pattern: str, text: str) -> bool:
    """Unanchored match, like Go's `regexp.MatchString` and CEL's `matches`."""
    return compile_re2(pattern).search(text) is not None


# ---------------------------------------------------------------------------- fast searcher
#
# google-re2's Python wrapper costs ~15 us a call; Python's `re` runs the simple patterns
# schemas use ten times faster. For a pattern RE2 accepts, written only with the constructs
# below, whether a match *exists* is the same for both engines on ASCII text (match
# existence does not depend on leftmost-first vs leftmost-longest), once `$` is spelled `\Z`
# (Python's `$` also matches before a final newline) and `\d` is spelled `[0-9]`. Anything
# else, and any non-ASCII text, goes to RE2.

_META = frozenset("\\.+*?()|[]{}^$")
_ESCAPABLE = frozenset("!\"#%&',-./:;<=>@_`~") | _META
_REPEAT = re.compile(r"\{([0-9]{1,4})(,([0-9]{0,4}))?\}\??")
_QUANTIFIER = re.compile(r"[*+?]\??")
_CONTROL = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v"}


class _NotSimple(Exception):
    pass


def _escaped(pattern: str, pos: int) -> tuple[str, int]:
    """The literal character of the escape whose backslash is at `pos`, and the next index."""
    char = pattern[pos + 1:pos + 2]
    if char in _ESCAPABLE:
        return char, pos + 2
    if char in _CONTROL:
        return _CONTROL[char], pos + 2
    if char == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", pattern[pos + 2:pos + 4]):
        value = chr(int(pattern[pos + 2:pos + 4], 16))
        if value.isprintable() and value.isascii():
            return value, pos + 4
    raise _NotSimple(pattern)


def _member(pattern: str, pos: int) -> tuple[str, int]:
    """One literal class member at `pos` (a printable ASCII character or an escape)."""
    char = pattern[pos:pos + 1]
    if char == "\\":
        return _escaped(pattern, pos)
    if char in ("", "[", "]") or not (char.isascii() and char.isprintable()):
        raise _NotSimple(pattern)
    return char, pos + 1


def _class(pattern: str, pos: int) -> tuple[str, int]:
    """Translate the character class opening at `pos`: literal ASCII members, ranges, `\\d`."""
    out, pos = ["["], pos + 1
    if pattern[pos:pos + 1] == "^":
        out.append("^")
        pos += 1
    if pattern[pos:pos + 1] == "]":
        raise _NotSimple(pattern)  # a leading `]` is a member in RE2: not modelled
    while pattern[pos:pos + 1] != "]":
        if pattern.startswith("\\d", pos):
            out.append("0-9")
            pos += 2
            continue
        low, pos = _member(pattern, pos)
        out.append(re.escape(low))
        if pattern[pos:pos + 1] == "-" and pattern[pos + 1:pos + 2] != "]":
            high, pos = _member(pattern, pos + 1)
            out.append("-" + re.escape(high))
    return "".join(out) + "]", pos + 1


def _translate(pattern: str) -> str:
    out: list[str] = []
    pos, atom = 0, False  # atom: the previous token can take a quantifier
    while pos < len(pattern):
        char = pattern[pos]
        repeat = _REPEAT.match(pattern, pos) or _QUANTIFIER.match(pattern, pos)
        if repeat is not None:
            counts = [int(n) for n in repeat.groups()[::2] if n] if char == "{" else []
            if not atom or any(n > 1000 for n in counts):
                raise _NotSimple(pattern)
            out.append(repeat.group())
            pos, atom = repeat.end(), False
            continue
        if char == "[":
            text, pos = _class(pattern, pos)
        elif char == "\\":
            if pattern.startswith("\\d", pos):
                text, pos = "[0-9]", pos + 2
            else:
                literal, pos = _escaped(pattern, pos)
                text = re.escape(literal)
        elif char == "(":
            text = "(?:" if pattern.startswith("(?:", pos) else "("
            if pattern.startswith("(?", pos) and text == "(":
                raise _NotSimple(pattern)
            pos += len(text)
        elif char in "|^$)":
            text, pos = {"$": r"\Z"}.get(char, char), pos + 1
        elif char in "{}]" or not (char.isascii() and char.isprintable()):
            raise _NotSimple(pattern)
        else:
            text, pos = (char if char == "." else re.escape(char)), pos + 1
        out.append(text)
        atom = text not in ("|", "^", r"\Z", "(", "(?:")
    return "".join(out)


def python_pattern(pattern: str) -> str | None:
    """The Python `re` pattern that finds a match in ASCII text exactly when RE2 finds one
    with `pattern`, or None when the pattern uses anything not modelled (or is not RE2)."""
    try:
        compile_re2(pattern)
        translated = _translate(pattern)
        re.compile(translated)
    except (RE2Error, _NotSimple, re.error):
        return None
    return translated


@lru_cache(maxsize=2048)
def searcher(pattern: str) -> Any:
    """A function text -> bool that is `re2_search(pattern, text)`, faster; it raises
    RE2Error for an invalid pattern, like `re2_search`."""
    compiled = compile_re2(pattern)
    translated = python_pattern(pattern)
    if translated is None:
        return lambda text: compiled.search(text) is not None
    fast = re.compile(translated).search

    def search(text: str) -> bool:
        if text.isascii():
            return fast(text) is not None
        return compiled.search(text) is not None
    return search
