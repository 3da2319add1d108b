"""RE2 regular expressions, as Go's regexp (and so the API server and CEL's `matches`) runs them.

The `google-re2` bindings run the real RE2 engine, so a pattern means here exactly what it means
to the API server: `$` only at the end of the text, ASCII `\\d \\s \\w`, POSIX classes, Unicode
classes like `\\pL`, flags like `(?i)` anywhere, and no lookarounds or backreferences (those are
errors, as in Go).
"""

from __future__ import annotations

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
