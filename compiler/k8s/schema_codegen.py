"""Compile a schema into Python source for one question: is this object certainly valid?

`compile_fast_path` writes one function per schema node: exact-type checks
(`type(v) is dict`), loops over properties and items, inlined length/enum/required checks,
memoized RE2 `pattern` and `format` checks, the node's `x-kubernetes-validations` CEL rules
translated by `cel_codegen`, and the `x-kubernetes-list-type` uniqueness checks. The source is
compiled in memory once per schema and process; nothing generated is ever written to or read
from disk.

The answer is sound: True only when the generic validator (`jsonschema` as configured in
`_jsonschema_support`, then the rule plan of `_schema_plan`) reports no error at all, given
that schema defaults have already been applied. False means "not proven" and the caller runs
the generic validator for the exact diagnostics. Any keyword, rule or value the generator
does not model compiles to False for the node that carries it; a Python exception while
checking is False too. Semantics follow the two generic walkers: jsonschema applies a
keyword only to instances of its type; the plan runs rules on present, non-null values and
descends only through `properties`, `items` and `additionalProperties` (never into `anyOf`,
`allOf` or `propertyNames`), so those subschemas compile without rules.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

from compiler.k8s.cel import CELError, compile_rule
from compiler.k8s.cel_codegen import Unit, translate_rule
from compiler.k8s.codegen_runtime import NAMESPACE

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "default",
                          "examples", "deprecated", "readOnly", "writeOnly", "x-mtlsc-source"})
_TYPES = {"object": "dict", "array": "list", "string": "str", "boolean": "bool",
          "integer": "int", "null": "NoneType"}
_LENGTHS = {"maxLength": ("str", ">"), "minLength": ("str", "<"),
            "maxItems": ("list", ">"), "minItems": ("list", "<"),
            "maxProperties": ("dict", ">"), "minProperties": ("dict", "<")}
_PLAIN = "(dict, list, str, int, float, bool, NoneType)"


class _Unsupported(Exception):
    pass


class _Library:
    """Every function generated in this process, in one namespace: schema versions share
    most of their subschemas, and each distinct (subschema, rules) compiles once."""

    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {**NAMESPACE, "NoneType": type(None),
                                          "MISSING": _MISSING, "__builtins__": __builtins__}
        self.functions: dict[tuple[str, bool], str] = {}
        self.names = 0
        self.lock = threading.Lock()


def compile_fast_path(schema: Any, *, rules: bool = True) -> Check:
    """A sound "certainly valid" predicate for `schema` (see the module docstring); with
    `rules=False` it covers the JSON Schema keywords only."""
    with _LIBRARY.lock:
        unit = Unit(first=_LIBRARY.names)
        generator = _Generator(unit, _LIBRARY.functions)
        try:
            root = generator.node(schema, rules)
            code = compile(unit.source(), "<mtlsc validation fast path>", "exec")
            namespace = {**_LIBRARY.namespace, **unit.constants}
            exec(code, namespace)  # our own source, generated in memory from the schema
        except (SyntaxError, RecursionError, MemoryError, ValueError, TypeError):
            return _never  # a schema too deep or too odd to generate: always the generic path
        _LIBRARY.namespace.update(namespace)  # only now, complete, can others use it
        for key, name in generator.new.items():
            _LIBRARY.functions[key] = name
        _LIBRARY.names = unit.count
        function: Check = namespace[root]

    def certainly_valid(value: Any) -> bool:
        try:
            return function(value) is True
        except Exception:  # any failure inside generated code means "not proven"
            return False
    return certainly_valid


def _never(_value: Any) -> bool:
    return False


class _Missing:
    pass


_MISSING = _Missing()
_LIBRARY = _Library()


class _Generator:
    def __init__(self, unit: Unit, known: Mapping[tuple[str, bool], str]) -> None:
        self.unit = unit
        self.known = known  # functions of earlier compiles
        self.new: dict[tuple[str, bool], str] = {}  # identical subschemas share a function

    def node(self, schema: Any, rules: bool) -> str:
        if schema is True or (isinstance(schema, Mapping) and not schema):
            return "always"
        if not isinstance(schema, Mapping):
            return "never"
        key = (json.dumps(schema, sort_keys=True, default=repr), rules)
        found = self.known.get(key) or self.new.get(key)
        if found is None:
            found = self.new[key] = self.unit.name("s")
            try:
                body = self._body(schema, rules)
            except _Unsupported:
                body = ["return False"]
            self.unit.define(f"def {found}(v):", body)
        return found

    def _body(self, schema: Mapping[str, Any], rules: bool) -> list[str]:
        lines = ["t = type(v)"]
        known = self._type(schema.get("type"), lines) if "type" in schema else None
        if known is None:
            lines.append(f"if t not in {_PLAIN}:")
            lines.append("    return False")
        for name, arg in schema.items():
            if name in _ANNOTATIONS or name.startswith("x-kubernetes-") or name == "type":
                continue
            self._keyword(name, arg, schema, rules, known, lines)
        if rules:
            self._plan_checks(schema, known, lines)
        lines.append("return True")
        return lines

    def _type(self, arg: Any, lines: list[str]) -> str | None:
        names = arg if isinstance(arg, list) else [arg]
        tests = []
        for name in names:
            if name == "number":
                tests += ["t is int", "t is float"]
            elif isinstance(name, str) and name in _TYPES:
                tests.append(f"t is {_TYPES[name]}")
            else:
                raise _Unsupported(name)
        lines.append(f"if not ({' or '.join(tests) or 'False'}):")
        lines.append("    return False")
        return _TYPES.get(names[0]) if len(names) == 1 and isinstance(names[0], str) else None

    def _keyword(self, name: str, arg: Any, schema: Mapping[str, Any], rules: bool,
                 known: str | None, lines: list[str]) -> None:
        if name in _LENGTHS:
            kind, op = _LENGTHS[name]
            if type(arg) is not int:
                raise _Unsupported(name)
            _guarded(known, kind, [f"if len(v) {op} {arg}:", "    return False"], lines)
        elif name in ("minimum", "maximum"):
            if type(arg) is not int:
                raise _Unsupported(name)
            test = f"v {'<' if name == 'minimum' else '>'} {arg} or v != v"
            if known is None or known == "int":
                lines += [f"if (t is int or t is float) and ({test}):", "    return False"]
        elif name == "pattern" and isinstance(arg, str):
            memo, pattern = self.unit.constant({}, "r"), self.unit.constant(arg, "p")
            _guarded(known, "str", [f"if not ({memo}.get(v) or pattern_fill({memo}, "
                                    f"{pattern}, v)):", "    return False"], lines)
        elif name == "format" and isinstance(arg, str):
            memo = self.unit.constant({}, "r")
            _guarded(known, "str", [f"if not ({memo}.get(v) or format_fill({memo}, "
                                    f"{arg!r}, v)):", "    return False"], lines)
        elif name in ("enum", "const"):
            self._enum(arg if name == "enum" else [arg], known, lines)
        elif name == "required" and isinstance(arg, list) and all(
                isinstance(k, str) for k in arg):
            tests = " or ".join(f"{k!r} not in v" for k in arg)
            if tests:
                _guarded(known, "dict", [f"if {tests}:", "    return False"], lines)
        elif name == "properties" and isinstance(arg, Mapping):
            body = []
            for key, sub in arg.items():
                child = self.node(sub, rules)
                if child != "always":
                    body += [f"x = v.get({key!r}, MISSING)",
                             f"if x is not MISSING and not {child}(x):", "    return False"]
            _guarded(known, "dict", body, lines)
        elif name == "additionalProperties":
            _guarded(known, "dict", self._additional(arg, schema, rules), lines)
        elif name == "propertyNames":
            child = self.node(arg, False)
            _guarded(known, "dict", ["for x in v:", f"    if not {child}(x):",
                                     "        return False"], lines)
        elif name == "items" and "prefixItems" not in schema:
            child = self.node(arg, rules)
            _guarded(known, "list", ["for x in v:", f"    if not {child}(x):",
                                     "        return False"], lines)
        elif name in ("anyOf", "allOf") and isinstance(arg, list) and arg:
            calls = [f"{self.node(sub, False)}(v)" for sub in arg]
            joined = " or ".join(calls) if name == "anyOf" else " and ".join(calls)
            lines += [f"if not ({joined}):", "    return False"]
        else:
            raise _Unsupported(name)

    def _enum(self, options: Any, known: str | None, lines: list[str]) -> None:
        if not isinstance(options, list):
            raise _Unsupported("enum")
        kinds = {type(option) for option in options}
        if len(kinds) == 1 and kinds <= {str, int}:
            kind = next(iter(kinds)).__name__
            allowed = self.unit.constant(frozenset(options), "e")
            test = "" if known == kind else f"t is not {kind} or "
            lines += [f"if {test}v not in {allowed}:", "    return False"]
        else:
            allowed = self.unit.constant(tuple(options), "e")
            lines += [f"if not same_any(v, {allowed}):", "    return False"]

    def _additional(self, arg: Any, schema: Mapping[str, Any], rules: bool) -> list[str]:
        if "patternProperties" in schema:
            raise _Unsupported("patternProperties")
        known_names = frozenset(schema.get("properties") or ())
        names = self.unit.constant(known_names, "n")
        if arg is False:
            return [f"if not {names}.issuperset(v):", "    return False"]
        if known_names and rules and isinstance(arg, Mapping):
            # the rule plan applies additionalProperties' rules to *every* key; jsonschema
            # only to unknown ones: not modelled
            raise _Unsupported("properties with additionalProperties")
        child = self.node(arg, rules)
        if child == "always":
            return []
        test = f"x not in {names} and " if known_names else ""
        return ["for x in v:", f"    if {test}not {child}(v[x]):", "        return False"]

    def _plan_checks(self, schema: Mapping[str, Any], known: str | None,
                     lines: list[str]) -> None:
        """What `_schema_plan.check` adds: list uniqueness and CEL rules (on non-null)."""
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "set":
            _guarded(known, "list", ["if not distinct_set(v):", "    return False"], lines)
        elif list_type == "map":
            keys = self.unit.constant(tuple(schema.get("x-kubernetes-list-map-keys") or ()))
            _guarded(known, "list", [f"if not distinct_map(v, {keys}):", "    return False"],
                     lines)
        if known == "NoneType":
            return  # rules never run on null
        tests = [self._rule(entry, schema)
                 for entry in schema.get("x-kubernetes-validations") or ()]
        checks = [part for test in tests if test != "True"
                  for part in (f"if not {test}:", "    return False")]
        if checks and known is None:
            lines.append("if v is not None:")
            lines.extend(f"    {line}" for line in checks)
        else:
            lines.extend(checks)

    def _rule(self, entry: Any, schema: Mapping[str, Any]) -> str:
        if not isinstance(entry, Mapping):
            raise _Unsupported("rule")
        source = str(entry.get("rule", ""))
        try:
            program = compile_rule(source)
        except CELError:
            return "False"  # the generic validator reports the broken rule
        if program.uses_old_self:
            return "True"  # transition rules are skipped without a stored object
        return translate_rule(source, self.unit, schema) or "False"


def _guarded(known: str | None, kind: str, body: list[str], lines: list[str]) -> None:
    """Add `body`, which applies to instances of Python type `kind` only."""
    if not body or (known is not None and known != kind):
        return
    if known == kind:
        lines.extend(body)
    else:
        lines.append(f"if t is {kind}:")
        lines.extend(f"    {line}" for line in body)
