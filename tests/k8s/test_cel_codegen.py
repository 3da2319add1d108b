"""CEL rules translated to Python (`cel_codegen`) never claim more than the interpreter.

For every rule, on any value: generated code True => the interpreter (`cel.compile_rule`)
evaluates the rule to true. Checked with hypothesis on JSON-like values, untyped and under a
schema (typed translation inlines `==`, `<`, `size`, field access), on rules aimed at CEL's
corners: int64 overflow, code-point string sizes, int/uint/double comparisons, string order,
list and map equality, has() on maps, exists_one, errors that `||`/`&&`/`all`/`exists` absorb,
`matches` with RE2 semantics, escaped field names, map literals with repeated keys. Curated
cases pin that the translation also says True where it should (or it is useless).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.k8s.cel import CELError, compile_rule
from compiler.k8s.schema_codegen import Check, compile_fast_path

TYPED = {"type": "object", "properties": {
    "a": {"type": "string"}, "b": {"type": "integer"}, "f": {"type": "number"},
    "l": {"type": "array", "items": {"type": "string"}},
    "n": {"type": "array", "items": {"type": "integer"}},
    "m": {"type": "object", "additionalProperties": {"type": "string"}},
    "o": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "port": {"type": "integer"}, "hostname": {"type": "string"},
    }}},
    "namespace": {"type": "string"},
}}

RULES = [
    "size(self.a) == 3", "self.a.size() <= 2", "size(self.l) > 1", "self.b + 1 > self.b",
    "self.b + 9223372036854775807 > 0", "self.b * 4611686018427387904 != 0",
    "self.b - 1 < self.b", "self.b > 1u", "self.b >= 1.5", "self.f > 1", "self.f == 2",
    "self.b == 2.0", "self.a < 'b'", "self.a >= 'é'", "self.l == ['a', 'b']",
    "self.n == [1, 2]", "self.m == {'k': 'v'}", "self.m == {}", "has(self.m.k)",
    "has(self.a)", "has(self.__namespace__)", "self.__namespace__ == 'x'",
    "self.o.exists_one(x, x.name == 'a')",
    "self.o.all(x, self.o.exists_one(y, x.name == y.name))",
    "self.o.all(l1, self.o.exists_one(l2, l1.port == l2.port && (has(l1.hostname) && "
    "has(l2.hostname) ? l1.hostname == l2.hostname : !has(l1.hostname) && "
    "!has(l2.hostname))))",
    "self.o.exists(x, x.port > 10)", "self.l.all(x, x == 'a' || 1 / 0 == 1)",
    "self.l.all(x, 1 / 0 == 1 || x == 'a')", "self.l.exists(x, 1 / 0 == 1 || x == 'a')",
    "false && 1 / 0 == 1", "self.a == 'x' || self.missing == 1",
    "self.missing == 1 || self.a == 'x'", "self.a.matches('^[a-z]+$')",
    "self.a.matches('^a$')", "self.a.matches('.')", "self.a.startsWith('a')",
    "self.a.endsWith('b')", "self.a.contains('é')", "self.a.split('.').size() == 2",
    "self.a in ['a', 'b']", "self.a in self.l", "self.b in self.n", "'k' in self.m",
    "self.a in self.m", "self.b in [1, 2u, 3.0]", "(self.b > 0 ? self.a : self.l) == 'a'",
    "!(self.b > 0)", "self.l[0] == 'a'", "self.l[self.b] == 'a'", "self.m['k'] == 'v'",
    "self.o.filter(x, x.port > 1).size() == 1", "self.o.map(x, x.port).exists(p, p > 80)",
    "self.l.map(x, x + '.').all(x, x.endsWith('.'))", "{'a': 1, 'a': 2}.size() == 1",
    "{self.a: 1, 'x': 2}.size() == 2", "duration('1s') < duration('2s')",
    "int(self.a) > 0", "string(self.b) == '2'", "dyn(self.b) == 2", "self.a + self.a == 'aa'",
    "[self.a, self.b] == ['x', 2]", "self.b % 2 == 0", "-self.b < 0", "self.b / 0 == 1",
    "self.m.all(k, k.size() > 0)", "self.m.exists_one(k, self.m[k] == 'v')",
    "size(self) > 0", "self.l.size() + self.n.size() <= 3",
]

SCALARS = (st.none() | st.booleans() | st.integers(-(2**64), 2**64)
           | st.floats(allow_nan=True) | st.sampled_from(["", "a", "b", "x", "é", "a.b", "2"])
           | st.text(max_size=5))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(["a", "b", "f", "l", "n", "m", "o", "k", "name", "port", "hostname",
                     "namespace", "__namespace__"]), inner, max_size=5), max_leaves=20)
NAMES = st.sampled_from(["a", "b", "x", "é", "a.b", "", "2"])
FITTING = st.fixed_dictionaries({}, optional={
    "a": NAMES, "b": st.integers(-3, 3) | st.sampled_from([2**62, 2**63 - 1, -(2**63)]),
    "f": st.floats(allow_nan=True) | st.integers(0, 3), "l": st.lists(NAMES, max_size=3),
    "n": st.lists(st.integers(0, 3), max_size=3),
    "m": st.dictionaries(NAMES, NAMES, max_size=2),
    "o": st.lists(st.fixed_dictionaries({"name": NAMES}, optional={
        "port": st.integers(79, 81), "hostname": NAMES}), max_size=3),
    "namespace": NAMES,
})

_CACHE: dict[tuple[str, bool], Check] = {}


def fast(rule: str, typed: bool) -> Check:
    if (rule, typed) not in _CACHE:
        node: dict[str, Any] = dict(TYPED) if typed else {}
        node["x-kubernetes-validations"] = [{"rule": rule}]
        _CACHE[rule, typed] = compile_fast_path(node)
    return _CACHE[rule, typed]


def interpreted(rule: str, value: Any) -> bool:
    try:
        return compile_rule(rule).evaluate(value) is True
    except CELError:
        return False


@settings(max_examples=4000, deadline=None)
@given(st.sampled_from(RULES), VALUES)
def test_untyped_translation_is_sound(rule: str, value: Any) -> None:
    if value is not None and fast(rule, typed=False)(value):  # rules never run on null
        assert interpreted(rule, value), (rule, value)


@settings(max_examples=4000, deadline=None)
@given(st.sampled_from(RULES), FITTING, st.booleans())
def test_typed_translation_is_sound(rule: str, value: Any, typed: bool) -> None:
    if fast(rule, typed)(value):
        assert interpreted(rule, value), (rule, value)


OBJ = {"a": "ab", "b": 2, "l": ["a", "b"], "n": [1, 2], "m": {"k": "v"},
       "o": [{"name": "a", "port": 80}, {"name": "b", "port": 81, "hostname": "h"}],
       "namespace": "x"}


@pytest.mark.parametrize("typed", [False, True])
@pytest.mark.parametrize("rule", [
    "size(self.a) == 2", "self.b + 1 > self.b", "self.l == ['a', 'b']", "has(self.m.k)",
    "self.m == {'k': 'v'}", "self.__namespace__ == 'x'", "has(self.__namespace__)",
    "self.o.all(x, self.o.exists_one(y, x.name == y.name))", "self.a.matches('^[a-z]+$')",
    "self.l[0] in self.l", "self.o.filter(x, x.port > 80).size() == 1", "self.b > 1u",
    "self.b == 2.0", "self.a < 'b'", "self.l[1] == 'b'", "duration('1s') < duration('2s')",
    "self.o.map(x, x.port).exists(p, p > 80)", "self.a.split('b').size() == 2",
    "self.l.size() + self.n.size() <= 4", "self.a + 'c' == 'abc'",
])
def test_translation_proves_what_holds(rule: str, typed: bool) -> None:
    assert interpreted(rule, OBJ)
    assert fast(rule, typed)(OBJ) is True


@pytest.mark.parametrize("rule", [
    "self.b + 9223372036854775807 > 0", "self.a.size() == 4", "{'a': 1, 'a': 2}.size() == 1",
    "self.l[5] == 'a'", "self.missing == 1 || true", "self.o.exists_one(x, x.port > 0)",
    "self.b / 0 == 1", "self.a.matches('(')", "self.l == ['b', 'a']", "self.m == {'k': 'w'}",
])
def test_translation_never_proves_what_fails_or_errs(rule: str) -> None:
    assert fast(rule, False)(OBJ) is False
    assert fast(rule, True)(OBJ) is False
