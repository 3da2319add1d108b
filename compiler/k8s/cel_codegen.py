"""Translate a Kubernetes CEL validation rule into Python source.

The translation answers a narrower question than the interpreter (`cel.py`): it produces a
Python condition that is True only when the rule certainly evaluates to `true`. Every CEL
error becomes a Python exception, which the caller reads as "not proven"; that is sound
because an error can only ever make a rule *not* true, and `&&`/`||`/`all`/`exists`, which in
CEL may absorb an error, here raise instead (a lost shortcut, never a wrong verdict). Values
are computed exactly: operators and functions run the interpreter's own runtime through the
helpers in `codegen_runtime`, with inline Python only where it is provably the same
(comparing with a string, bool or null literal, membership in a list of string literals).
Comprehensions become loops in helper functions of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from compiler.k8s import _cel_syntax as syntax
from compiler.k8s._cel_functions import lookup
from compiler.k8s._cel_runtime import unescape_field
from compiler.k8s._cel_syntax import CELError, Node, parse

# A translated expression: Python source, the Python type its value certainly has ("bool",
# "int", "str", "dict", "list", "NoneType" or None for unknown), and the schema node the
# value was already checked against (None if unknown).
Code = tuple[str, str | None, Mapping[str, Any] | None]
Scope = dict[str, Code]

_KINDS = {"object": "dict", "array": "list", "string": "str", "boolean": "bool",
          "integer": "int"}
_ORDER = {"<": ("order_lt", "<"), "<=": ("order_le", "<="), ">": ("order_gt", ">"),
          ">=": ("order_ge", ">=")}
_ARITHMETIC = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "%": "modulo"}
_BOOL_FUNCTIONS = frozenset({"matches", "startsWith", "endsWith", "contains"})
_QUANTIFIERS = frozenset({"all", "exists", "exists_one"})


def kind_of(schema: Any) -> str | None:
    """The Python type a value has once it passed the generated check of `schema`."""
    if not isinstance(schema, Mapping):
        return None
    name = schema.get("type")
    return _KINDS.get(name) if isinstance(name, str) else None


def _typed(code: str, schema: Any) -> Code:
    return code, kind_of(schema), schema if isinstance(schema, Mapping) else None


class Unsupported(Exception):
    """The translator does not handle this construct; the rule stays "not proven"."""


class Unit:
    """Generated source under construction: function definitions and the constants they use."""

    def __init__(self, first: int = 0) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.count = first  # names are numbered on from here, unique across units

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def constant(self, value: Any, prefix: str = "k") -> str:
        name = self.name(prefix)
        self.constants[name] = value
        return name

    def define(self, header: str, body: list[str]) -> None:
        self.lines.append(header)
        self.lines.extend(f"    {line}" for line in body)

    def source(self) -> str:
        return "\n".join(self.lines) + "\n"


def translate_rule(source: str, unit: Unit, schema: Mapping[str, Any] | None = None) -> str | None:
    """A Python condition over `v` (the rule's `self`, already checked against `schema`)
    that is True only when the rule evaluates to true, or None when it cannot be translated."""
    try:
        code = _Translator(unit).expr(_parse(source), {"self": _typed("v", schema)})
    except (Unsupported, CELError, RecursionError):
        return None
    return code[0] if code[1] == "bool" else f"({code[0]} is True)"


@lru_cache(maxsize=4096)
def _parse(source: str) -> Node:
    """Rules repeat across schema versions: each is parsed once per process."""
    return parse(source)


def _as_bool(code: Code) -> str:
    return code[0] if code[1] == "bool" else f"boolean({code[0]})"


def _literal_of(node: syntax.Node, *kinds: type) -> bool:
    return isinstance(node, syntax.Lit) and type(node.value) in kinds


def _field(code: Code, name: str) -> Mapping[str, Any] | None:
    """The schema of field `name` of a value checked against `code`'s schema."""
    schema = code[2]
    if schema is None or code[1] != "dict":
        return None
    properties = schema.get("properties")
    if isinstance(properties, Mapping) and name in properties:
        found = properties[name]
    elif not properties:
        found = schema.get("additionalProperties")
    else:
        return None
    return found if isinstance(found, Mapping) else None


def _items(code: Code) -> Code:
    """What a comprehension variable ranging over `code` is known to be."""
    if code[1] == "dict":
        return "", "str", None  # map keys
    if code[1] == "list" and code[2] is not None:
        return _typed("", code[2].get("items"))
    return "", None, None


class _Translator:
    def __init__(self, unit: Unit) -> None:
        self.unit = unit

    def expr(self, node: syntax.Node, scope: Scope) -> Code:
        match node:
            case syntax.Lit(value=value):
                return self._literal(value)
            case syntax.Ident(name=name):
                if name not in scope:
                    raise Unsupported(name)
                return scope[name]
            case syntax.Select(operand=operand, field=field):
                return self._select(self.expr(operand, scope), field)
            case syntax.Has(operand=operand, field=field):
                target, key = self.expr(operand, scope), unescape_field(field)
                if target[1] != "dict":
                    helper = "has" if key == field else "has_escaped"
                    return f"{helper}({target[0]}, {field!r})", "bool", None
                if key != field:  # as `rt.has_field`: the JSON name, or the name as written
                    return f"({key!r} in {target[0]} or {field!r} in {target[0]})", "bool", None
                return f"({field!r} in {target[0]})", "bool", None
            case syntax.Index(operand=operand, index=key):
                target = self.expr(operand, scope)
                code = f"index({target[0]}, {self.expr(key, scope)[0]})"
                if target[1] == "list":  # an element, already checked against `items`
                    return code, *_items(target)[1:]
                return code, None, None
            case syntax.Call():
                return self._call(node, scope)
            case syntax.ListLit(items=items):
                return "[" + ", ".join(self.expr(i, scope)[0] for i in items) + "]", "list", None
            case syntax.MapLit(entries=entries):
                pairs = ", ".join(f"({self.expr(k, scope)[0]}, {self.expr(v, scope)[0]})"
                                  for k, v in entries)
                return f"make_map({pairs})", "dict", None
            case syntax.Unary(op="!", operand=operand):
                return f"(not {_as_bool(self.expr(operand, scope))})", "bool", None
            case syntax.Unary(op="-", operand=operand):
                return f"negate({self.expr(operand, scope)[0]})", None, None
            case syntax.Binary():
                return self._binary(node, scope)
            case syntax.Cond(cond=cond, then=then, other=other):
                test = _as_bool(self.expr(cond, scope))
                yes, no = self.expr(then, scope), self.expr(other, scope)
                kind = yes[1] if yes[1] == no[1] else None
                return f"({yes[0]} if {test} else {no[0]})", kind, None
            case syntax.Comprehension():
                return self._comprehension(node, scope)
        raise Unsupported(repr(node))

    def _literal(self, value: Any) -> Code:
        kind = type(value)
        if kind in (bool, int, str, type(None)):
            return repr(value), kind.__name__, None
        return self.unit.constant(value), None, None  # uint, double, bytes: bound as objects

    def _select(self, target: Code, field: str) -> Code:
        if unescape_field(field) != field:
            return f"select_escaped({target[0]}, {field!r})", None, None
        if target[1] == "dict":
            return _typed(f"{target[0]}[{field!r}]", _field(target, field))
        return f"select({target[0]}, {field!r})", None, None

    def _call(self, node: syntax.Call, scope: Scope) -> Code:
        method = node.target is not None
        impl = lookup(node.name, len(node.args), method=method)  # CELError if undeclared
        operands = [self.expr(arg, scope) for arg in (
            node.args if node.target is None else (node.target, *node.args))]
        args = ", ".join(code[0] for code in operands)
        if node.name == "size" and operands[0][1] in ("str", "list", "dict"):
            return f"len({args})", "int", None
        if node.name in ("size", "matches"):
            return f"{node.name}({args})", "bool" if node.name == "matches" else None, None
        function = self.unit.constant(impl, "f")
        return f"{function}({args})", "bool" if node.name in _BOOL_FUNCTIONS else None, None

    def _binary(self, node: syntax.Binary, scope: Scope) -> Code:
        op = node.op
        left, right = self.expr(node.left, scope), self.expr(node.right, scope)
        if op in ("&&", "||"):
            word = "and" if op == "&&" else "or"
            return f"({_as_bool(left)} {word} {_as_bool(right)})", "bool", None
        if op in ("==", "!="):
            same = self._equality(node, left, right)
            return (same if op == "==" else f"(not {same})"), "bool", None
        if op in _ORDER:
            helper, symbol = _ORDER[op]
            if left[1] == right[1] and left[1] in ("int", "str"):
                return f"({left[0]} {symbol} {right[0]})", "bool", None
            return f"({helper}({left[0]}, {right[0]}) {symbol} 0)", "bool", None
        if op == "in":
            items = node.right.items if isinstance(node.right, syntax.ListLit) else ()
            literals = [i.value for i in items if isinstance(i, syntax.Lit)]
            if items and len(literals) == len(items) and all(type(i) is str for i in literals):
                return f"({left[0]} in ({''.join(repr(i) + ', ' for i in literals)}))", "bool", None
            if left[1] == "str" and right[1] == "list" and _items(right)[1] == "str":
                return f"({left[0]} in {right[0]})", "bool", None
            return f"contains({left[0]}, {right[0]})", "bool", None
        if op == "+" and left[1] == right[1] and left[1] in ("str", "int"):
            if left[1] == "str":
                return f"({left[0]} + {right[0]})", "str", None
            return f"int64({left[0]} + {right[0]})", "int", None
        return f"{_ARITHMETIC[op]}({left[0]}, {right[0]})", None, None

    @staticmethod
    def _equality(node: syntax.Binary, left: Code, right: Code) -> str:
        # CEL equality is Python's for two values of the same plain kind, and against a
        # str literal (other kinds never equal a string); identity against true/false/null.
        if left[1] == right[1] and left[1] in ("str", "int", "bool"):
            return f"({left[0]} == {right[0]})"
        for lit, other, code in ((node.right, left[0], right[0]), (node.left, right[0], left[0])):
            if _literal_of(lit, str):
                return f"({other} == {code})"
            if _literal_of(lit, bool, type(None)):
                return f"({other} is {code})"
            if _literal_of(lit, int):
                return f"equals_int({other}, {code})"
        return f"equals({left[0]}, {right[0]})"

    def _comprehension(self, node: syntax.Comprehension, scope: Scope) -> Code:
        params = ", ".join(sorted({code[0] for code in scope.values() if code[0].isidentifier()}))
        items = self.expr(node.range_, scope)
        var = self.unit.name("c_")
        inner = {**scope, node.var: (var, *_items(items)[1:])}
        pred = _as_bool(self.expr(node.pred, inner)) if node.pred is not None else None
        body = [f"it = comprehension_range({items[0]}, {node.macro!r})"]
        loop = f"for {var} in it:"
        result: Code = ("", "list", items[2] if node.macro == "filter" else None)
        if node.macro == "all":
            body += [loop, f"    if not {pred}:", "        return False", "return True"]
        elif node.macro == "exists":
            body += [loop, f"    if {pred}:", "        return True", "return False"]
        elif node.macro == "exists_one":
            body += ["n = 0", loop, f"    if {pred}:", "        n += 1", "return n == 1"]
        elif node.macro == "filter":
            body += ["out = []", loop, f"    if {pred}:", f"        out.append({var})",
                     "return out"]
        elif node.macro == "map" and node.transform is not None:
            value = self.expr(node.transform, inner)[0]
            body += ["out = []", loop]
            body += [f"    if {pred}:", f"        out.append({value})"] if pred else [
                f"    out.append({value})"]
            body.append("return out")
        else:
            raise Unsupported(node.macro)
        name = self.unit.name("m")
        self.unit.define(f"def {name}({params}):", body)
        kind = "bool" if node.macro in _QUANTIFIERS else "list"
        return f"{name}({params})", kind, result[2] if items[1] == "list" else None
