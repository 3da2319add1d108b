"""Vault's error text as a user sees it: one line, no wrapper, nothing token-shaped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from compiler.secrets.vault_errors import clean


def test_the_multierror_wrapper_is_removed() -> None:
    assert clean("1 error occurred:\n\t* permission denied\n\n") == "permission denied"
    assert clean("2 errors occurred:\n\t* a\n\t* b\n\n") == "a b"


def test_token_shaped_words_are_redacted() -> None:
    assert clean("bad token hvs.CAESIJ0123456789abcdef") == "bad token <redacted>"
    assert clean("lease s.0123456789abcdef expired") == "lease <redacted> expired"


@given(st.text(), st.integers(min_value=2, max_value=400))
def test_always_one_bounded_line(text: str, limit: int) -> None:
    out = clean(text, limit)
    assert len(out) <= limit
    assert "\n" not in out and "\t" not in out and "\r" not in out
    assert out == out.strip()
