"""`regex.searcher` (Python's `re` for simple patterns on ASCII text) answers exactly as RE2:
checked on every pattern the shipped schemas use and on hand-picked awkward ones, with texts
built from the pattern's own characters plus newlines, tabs and non-ASCII letters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.k8s.regex import RE2Error, python_pattern, re2_search, searcher
from tests.support import REPO

AWKWARD = [
    r"^a$", r"a$", r"^$", r"x*", r"^[^:/?#]+$", r"^[a-]+$", r"^[-a]+$", r"^[\d.]+$",
    r"^[!-~]+([\t ]?[!-~]+)*$", r"a{2,3}?b", r"(a|b)*c+?", r"^\x60[\x41-\x43]$", r"^\.\*\+$",
    r"a{0}", r"(?:ab)+$", r"^[ab]{1,2}\n?$", r"[\^x]", r"\$", r"^(\*\.)?x$",
]


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


SHIPPED = sorted({p for path in (REPO / "schemas").rglob("*.json")
                  for p in _patterns(json.loads(path.read_text(encoding="utf-8")))})
PATTERNS = SHIPPED + AWKWARD


def _alphabet(pattern: str) -> list[str]:
    return sorted(set(pattern) | set("az09.-/*:\n\t ") | {"é", "\u0660", "\x00"})


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str]:
    pattern = draw(st.sampled_from(PATTERNS))
    chars = st.sampled_from(_alphabet(pattern))
    return pattern, draw(st.text(chars, max_size=40))


def test_the_shipped_patterns_are_translated() -> None:
    assert len(SHIPPED) > 20
    slow = [p for p in SHIPPED if python_pattern(p) is None]
    assert slow == [], slow


@st.composite
def matching(draw: st.DrawFn) -> tuple[str, str]:
    pattern = draw(st.sampled_from([p for p in PATTERNS if python_pattern(p) is not None]))
    translated = python_pattern(pattern)
    assert translated is not None
    return pattern, draw(st.from_regex(translated, alphabet=st.characters(max_codepoint=127)))


@settings(max_examples=1000, deadline=None)
@given(matching())
def test_texts_python_matches_are_matched_by_re2(case: tuple[str, str]) -> None:
    pattern, text = case
    assert searcher(pattern)(text) is re2_search(pattern, text) is True, (pattern, text)


@settings(max_examples=3000, deadline=None)
@given(cases())
def test_searcher_answers_as_re2(case: tuple[str, str]) -> None:
    pattern, text = case
    assert searcher(pattern)(text) is re2_search(pattern, text), (pattern, text)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PATTERNS), st.from_regex(r"[a-z0-9.\-]{1,30}", fullmatch=True))
def test_searcher_on_plausible_names(pattern: str, text: str) -> None:
    assert searcher(pattern)(text) is re2_search(pattern, text)


@pytest.mark.parametrize("pattern", [r"a(?=b)", r"(a", r"a**", r"x{1001}"])
def test_invalid_patterns_raise_like_re2(pattern: str) -> None:
    with pytest.raises(RE2Error):
        re2_search(pattern, "ab")
    with pytest.raises(RE2Error):
        searcher(pattern)
