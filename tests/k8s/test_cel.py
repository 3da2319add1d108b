"""The CEL interpreter: grammar, CEL (not Python) value semantics, macros, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler.k8s.cel import CELError, Duration, UInt, compile_rule

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def ev(src: str, self_value: Any = None) -> Any:
    return compile_rule(src).evaluate(self_value)


def fails(src: str, self_value: Any = None) -> str:
    with pytest.raises(CELError) as info:
        compile_rule(src).evaluate(self_value)
    return str(info.value)


# ---------------------------------------------------------------------------- literals


@pytest.mark.parametrize(("src", "expected"), [
    ("42", 42), ("0x1F", 31), ("-9223372036854775808", -(2**63)), ("7u", UInt(7)),
    ("1.5", 1.5), ("1e3", 1000.0), (".5", 0.5),
    ("true", True), ("false", False), ("null", None),
    ("'single'", "single"), ('"double"', "double"), ("'it\\'s'", "it's"),
    ('"tab\\tnew\\nline"', "tab\tnew\nline"), ("'\\x41\\u00e9\\101'", "Aé" "A"),
    ("'''multi\nline'''", "multi\nline"), ('"""has "quotes" inside"""', 'has "quotes" inside'),
    ('r"""^(\\*\\.)?[a-z]$"""', r"^(\*\.)?[a-z]$"), ("r'\\d+'", r"\d+"),
    ("b'ab\\x00'", b"ab\x00"), ("[1, 'a', [true]]", [1, "a", [True]]),
    ("{'a': 1, 'b': [2]}", {"a": 1, "b": [2]}), ("[]", []), ("{}", {}), ("[1, 2,]", [1, 2]),
])
def test_literals(src: str, expected: Any) -> None:
    result = ev(src)
    assert result == expected
    assert type(result) is type(expected)


def test_uint_is_distinct_from_int() -> None:
    assert isinstance(ev("1u"), UInt)
    assert ev("1u + 2u") == 3
    assert "no such overload" in fails("1u + 1")


# ---------------------------------------------------------------------------- operators


@pytest.mark.parametrize(("src", "expected"), [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("10 - 4 - 3", 3), ("7 / 2", 3), ("-7 / 2", -3),
    ("7 % 3", 1), ("-7 % 3", -1), ("7 % -3", 1), ("-(-3)", 3), ("!true", False),
    ("!!true", True), ("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3", True), ("'a' < 'b'", True),
    ("1 != 2", True), ("'ab' + 'cd'", "abcd"), ("[1] + [2]", [1, 2]),
    ("1.5 * 2.0", 3.0), ("1.0 / 0.0 > 1e308", True),
    ("true ? 1 : false ? 2 : 3", 1), ("false ? 1 : false ? 2 : 3", 3),
    ("2 in [1, 2]", True), ("3 in [1, 2]", False), ("'k' in {'k': 1}", True),
    ("'v' in {'k': 'v'}", False), ("1 == 1.0", True), ("1u == 1", True), ("2 < 2.5", True),
])
def test_operators(src: str, expected: Any) -> None:
    assert ev(src) == expected


@pytest.mark.parametrize("src", [
    "true == 1", "[true] == [1]", "{'a': true} == {'a': 1}", "false == 0", "null == 0",
    "'1' == 1", "[1, 2] == [1, 2, 3]", "{'a': 1} == {'b': 1}",
])
def test_equality_does_not_conflate_types(src: str) -> None:
    # Python says True == 1; CEL says values of different types are never equal.
    assert ev(src) is False


@pytest.mark.parametrize(("src", "message"), [
    ("9223372036854775807 + 1", "integer overflow"),
    ("-9223372036854775808 - 1", "integer overflow"),
    ("-9223372036854775808 / -1", "integer overflow"),
    ("1 / 0", "division by zero"), ("1 % 0", "modulus by zero"),
    ("[1, 2][2]", "index out of bounds"), ("{'a': 1}['b']", "no such key"),
    ("1 + 1.0", "no such overload"), ("'a' < 1", "no such overload"), ("!1", "no such overload"),
    ("1 ? 2 : 3", "no such overload"), ("[1] < [2]", "no such overload"),
])
def test_runtime_errors(src: str, message: str) -> None:
    assert message in fails(src)


@given(INT64, INT64.filter(lambda b: b != 0))
def test_integer_division_truncates_toward_zero(a: int, b: int) -> None:
    if a == -(2**63) and b == -1:
        return  # the one overflow case, covered above
    quotient, remainder = ev(f"{a} / {b}"), ev(f"{a} % {b}")
    assert quotient * b + remainder == a
    assert abs(remainder) < abs(b)
    assert remainder == 0 or (remainder < 0) == (a < 0)


@given(st.text())
def test_escaped_string_literals_round_trip(text: str) -> None:
    # json.dumps escapes quotes, backslashes and control characters with escapes CEL shares.
    assert ev(json.dumps(text, ensure_ascii=False)) == text


# ---------------------------------------------------------------------------- error absorption

ERR = "self.missing"  # selecting an absent field is an error


@pytest.mark.parametrize(("src", "expected"), [
    (f"false && {ERR}", False), (f"{ERR} && false", False),
    (f"true || {ERR}", True), (f"{ERR} || true", True),
    ("false && 1", False), ("1 || true", True),
])
def test_logical_operators_absorb_errors_when_decided(src: str, expected: bool) -> None:
    assert ev(src, {}) is expected


@pytest.mark.parametrize("src", [
    f"true && {ERR}", f"{ERR} && true", f"false || {ERR}", f"{ERR} || false",
    f"{ERR} && {ERR}", f"{ERR} ? 1 : 2", f"!{ERR}",
])
def test_logical_operators_propagate_undecided_errors(src: str) -> None:
    assert "no such key: missing" in fails(src, {})


def test_all_and_exists_absorb_errors_but_exists_one_does_not() -> None:
    assert ev("[0, -1].all(x, 1 / x > 0)") is False  # error, then false: false wins
    assert "division by zero" in fails("[1, 0].all(x, 1 / x > 0)")
    assert ev("[0, 1].exists(x, 1 / x > 0)") is True
    assert "division by zero" in fails("[0, -1].exists(x, 1 / x > 0)")
    assert "division by zero" in fails("[0, 1].exists_one(x, 1 / x > 0)")


# ---------------------------------------------------------------------------- macros


@pytest.mark.parametrize(("src", "expected"), [
    ("[1, 2, 3].all(x, x > 0)", True), ("[1, 2, 3].all(x, x > 1)", False),
    ("[].all(x, false)", True), ("[].exists(x, true)", False),
    ("[1, 2, 3].exists(x, x == 2)", True), ("[1, 2, 2].exists_one(x, x == 2)", False),
    ("[1, 2, 3].exists_one(x, x == 2)", True), ("[1, 2, 3, 4].filter(x, x % 2 == 0)", [2, 4]),
    ("[1, 2].map(x, x * 10)", [10, 20]), ("[1, 2, 3].map(x, x > 1, x * 10)", [20, 30]),
    ("{'a': 1, 'b': 2}.all(k, k in ['a', 'b'])", True),
    ("{'a': 1, 'b': 2}.filter(k, k != 'a')", ["b"]),
    ("{'a': 1, 'b': 2}.exists_one(k, k == 'b')", True),
    ("[[1, 2], [3]].all(l, l.all(x, x > 0))", True),
    ("[1, 2].all(x, [3].all(y, y > x))", True),
])
def test_macros(src: str, expected: Any) -> None:
    assert ev(src) == expected


def test_macro_variables_are_scoped() -> None:
    assert "undeclared reference to 'x'" in fails("[1].all(x, true) && x == 1")


def test_has_tests_presence_and_select_requires_it() -> None:
    obj = {"present": 1, "nothing": None}
    assert ev("has(self.present)", obj) is True
    assert ev("has(self.absent)", obj) is False
    assert ev("has(self.nothing)", obj) is True
    assert ev("has(self.a.b)", {"a": {"b": 1}}) is True
    assert "no such key: absent" in fails("self.absent", obj)
    assert "no such key: a" in fails("has(self.a.b)", {})
    assert "does not support field selection" in fails("self.x.y", {"x": 1})


@pytest.mark.parametrize(("src", "obj"), [
    ("self.__namespace__ == 'ns'", {"namespace": "ns"}),
    ("has(self.__namespace__)", {"namespace": "ns"}),
    ("self.a__dash__b == 1", {"a-b": 1}),
    ("self.a__dot__b == 1", {"a.b": 1}),
    ("self.a__slash__b == 1", {"a/b": 1}),
    ("self.x__underscores__y == 1", {"x__y": 1}),
    ("self.__if__ == 1", {"if": 1}),
])
def test_kubernetes_property_name_escaping(src: str, obj: dict[str, Any]) -> None:
    assert ev(src, obj) is True


# ---------------------------------------------------------------------------- functions


@pytest.mark.parametrize(("src", "expected"), [
    ("size('héllo')", 5), ("'héllo'.size()", 5), ("[1, 2].size()", 2), ("size({'a': 1})", 1),
    ("size(b'ab')", 2),
    ("'xabcx'.matches('abc')", True), ("'abc'.matches('^b')", False),
    ("matches('abc', 'c$')", True), ("'abc\\n'.matches('^abc$')", False),
    ("'a1'.matches('^\\\\d')", False), ("'٣'.matches('\\\\d')", False),
    ("'path/x'.startsWith('path')", True), ("'path/x'.endsWith('/x')", True),
    ("'a//b'.contains('//')", True),
    ("'a/b/c'.split('/')", ["a", "b", "c"]), ("'a/b/c'.split('/', 2)", ["a", "b/c"]),
    ("'a/b/c'.split('/', 0)", []), ("'abc'.split('')", ["a", "b", "c"]),
    ("'ÄbC'.lowerAscii()", "Äbc"), ("'äbC'.upperAscii()", "äBC"),
    ("' \\t x y \\n'.trim()", "x y"), ("['a', 'b'].join()", "ab"),
    ("['a', 'b'].join(', ')", "a, b"),
    ("int('-42')", -42), ("int(3.9)", 3), ("int(-3.9)", -3), ("uint(3)", 3), ("double(2)", 2.0),
    ("string(12)", "12"), ("string(1.5)", "1.5"), ("string(true)", "true"),
    ("string(duration('1h'))", "3600s"), ("bool('true')", True), ("dyn(1)", 1),
])
def test_functions(src: str, expected: Any) -> None:
    assert ev(src) == expected


@pytest.mark.parametrize(("text", "pattern", "expected"), [
    ("abc", "^[[:alpha:]]+$", True), ("ab1", "^[[:alpha:]]+$", False),
    ("a.b", "^\\Qa.b\\E$", True), ("axb", "^\\Qa.b\\E$", False),
    ("ab\n", "b\\z", False), ("ab", "b\\z", True), ("a\nb", "(?m)^b$", True),
    ("ab", "(?<first>a)b", True), ("a b", "a\\sb", True), ("a&b", "^[&a-b]+$", True),
    # RE2-only syntax a translation onto Python's `re` got wrong or refused:
    ("ABC", "^(?i)abc$", True), ("xABC", "^x(?i)abc$", True), ("Xabc", "^x(?i)abc$", False),
    ("é", "^\\pL$", True), ("1", "^\\pL$", False), ("٣", "^\\d$", False),
    ("ab", "^\\p{Latin}+$", True), ("a\nb", "(?s)a.b", True), ("a\nb", "a.b", False),
])
def test_matches_uses_re2_semantics(text: str, pattern: str, expected: bool) -> None:
    assert ev("self[0].matches(self[1])", [text, pattern]) is expected


@pytest.mark.parametrize("pattern", ["(?=a)", "(?!a)", "(?<=a)b", "(a)\\1", "\\p{Nope}",
                                     "[[:nope:]]", "(a"])
def test_patterns_re2_would_reject_are_errors(pattern: str) -> None:
    fails("'a'.matches(self)", pattern)


@pytest.mark.parametrize(("src", "expected"), [
    ("duration('1h30s') > duration('90m')", False), ("duration('1h30s') < duration('61m')", True),
    ("duration('90m') == duration('1h30m')", True), ("duration('0s') == duration('0')", True),
    ("duration('1.5s') == duration('1500ms')", True), ("duration('-1h') < duration('0s')", True),
    ("duration('1h') + duration('30m') == duration('90m')", True),
    ("duration('2h30m').getHours()", 2), ("duration('2h30m').getMinutes()", 150),
    ("duration('10s') != duration('0s')", True),
])
def test_durations(src: str, expected: Any) -> None:
    assert ev(src) == expected
    assert isinstance(ev("duration('1h')"), Duration)


@pytest.mark.parametrize("src", ["duration('1')", "duration('1x')", "duration('')",
                                 "duration('h')", "int('1.5')", "int('x')", "string(null)"])
def test_bad_conversions_are_errors(src: str) -> None:
    fails(src)


@pytest.mark.parametrize(("src", "message"), [
    ("1 +", "Syntax error"), ("(1", "Syntax error"), ("'unterminated", "unterminated string"),
    ("self.namespace", "reserved identifier"), ("foo(1)", "undeclared reference to 'foo'"),
    ("bar", "undeclared reference to 'bar'"), ("'a'.startsWith()", "no matching overload"),
    ("has(self)", "invalid argument to has()"), ("[1].all(1, true)", "not an identifier"),
    ("9223372036854775808", "out of range"), ("'\\q'", "invalid escape"), ("1 # 2", "unexpected"),
    ("Msg{a: 1}", "not supported"),
])
def test_compile_errors(src: str, message: str) -> None:
    with pytest.raises(CELError) as info:
        compile_rule(src)
    assert message in str(info.value)


def test_programs_are_cached_and_reusable() -> None:
    program = compile_rule("self.a + 1")
    assert compile_rule("self.a + 1") is program
    assert [program.evaluate({"a": n}) for n in (1, 2)] == [2, 3]


def test_transition_rules_are_flagged() -> None:
    assert compile_rule("self == oldSelf").uses_old_self
    assert not compile_rule("self == 1").uses_old_self


def test_unexpected_python_errors_become_cel_errors() -> None:
    # A map key that Python cannot hash must not escape as a TypeError.
    assert "unsupported map key type" in fails("{[1]: 2}")


# ---------------------------------------------------------------------------- Gateway API rules


def _shipped_rules() -> set[str]:
    rules: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            rules.update(r["rule"] for r in node.get("x-kubernetes-validations", []))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    for path in sorted(SCHEMAS.glob("**/*.json")):
        walk(json.loads(path.read_text(encoding="utf-8")))
    return rules


SHIPPED_RULES = sorted(_shipped_rules())


def test_shipped_schemas_carry_the_gateway_api_rules() -> None:
    assert len(SHIPPED_RULES) >= 70


@pytest.mark.parametrize("rule", SHIPPED_RULES)
def test_every_shipped_rule_compiles(rule: str) -> None:
    program = compile_rule(rule)
    assert program.source == rule


@pytest.mark.parametrize(("rule", "self_value", "expected"), [
    ("self.all(l1, self.exists_one(l2, l1.name == l2.name))",
     [{"name": "a"}, {"name": "b"}], True),
    ("self.all(l1, self.exists_one(l2, l1.name == l2.name))",
     [{"name": "a"}, {"name": "a"}], False),
    ("self.all(l, l.protocol in ['HTTP', 'TCP', 'UDP'] ? !has(l.tls) : true)",
     [{"protocol": "HTTP", "tls": {}}], False),
    ("self.all(key, key.split(\"/\")[0].size() < 253)", {"example.com/x": "1"}, True),
    ("(self.type in ['Exact','PathPrefix']) ? self.value.startsWith('/') : true",
     {"type": "PathPrefix", "value": "api"}, False),
    ("(self.type in ['Exact','PathPrefix']) ? self.value.matches("
     "r\"\"\"^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$\"\"\") : true",
     {"type": "Exact", "value": "/a%2Gb"}, False),
    ("!(has(self.request) && has(self.backendRequest) && duration(self.request) != "
     "duration('0s') && duration(self.backendRequest) > duration(self.request))",
     {"request": "10s", "backendRequest": "1m"}, False),
    ("self.all(p1, self.exists_one(p2, (!has(p1.__namespace__) || p1.__namespace__ == '') "
     "== (!has(p2.__namespace__) || p2.__namespace__ == '')))",
     [{"namespace": "a"}, {}], True),
    ("(self.size() > 0 ? self[0].matches.size() : 0) + (self.size() > 1 ? "
     "self[1].matches.size() : 0) <= 2", [{"matches": [1, 2]}, {"matches": [3]}], False),
])
def test_gateway_api_rules(rule: str, self_value: Any, expected: bool) -> None:
    assert compile_rule(rule).evaluate(self_value) is expected
