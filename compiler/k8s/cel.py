"""A CEL interpreter for the subset Kubernetes `x-kubernetes-validations` rules use.

`compile_rule` parses a rule once (cached by source text) and turns the AST into a tree
of Python closures, so evaluating a rule on each validated object costs no parsing and
little dispatch. Errors are CEL values, not crashes: `&&`, `||`, `all` and `exists`
absorb an error when the other side decides the result (`false && error == false`),
exactly as CEL specifies; any other error surfaces as `CELError` with a readable message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from compiler.k8s import _cel_runtime as rt
from compiler.k8s._cel_functions import lookup
from compiler.k8s._cel_runtime import Duration
from compiler.k8s._cel_syntax import (
    Binary,
    Call,
    CELError,
    Comprehension,
    Cond,
    Has,
    Ident,
    Index,
    ListLit,
    Lit,
    MapLit,
    Node,
    Select,
    UInt,
    Unary,
    parse,
)

__all__ = ["CELError", "Duration", "Expression", "Program", "UInt", "compile_expression",
           "compile_rule", "names_used"]

Env = dict[str, Any]
Fn = Callable[[Env], Any]

# Variables a Kubernetes validation rule may reference.
ROOT_VARIABLES = frozenset({"self", "oldSelf"})

_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "==": rt.equals,
    "!=": lambda a, b: not rt.equals(a, b),
    "<": lambda a, b: rt.compare("_<_", a, b) < 0,
    "<=": lambda a, b: rt.compare("_<=_", a, b) <= 0,
    ">": lambda a, b: rt.compare("_>_", a, b) > 0,
    ">=": lambda a, b: rt.compare("_>=_", a, b) >= 0,
    "in": rt.contains,
    "+": rt.add,
    "-": rt.subtract,
    "*": rt.multiply,
    "/": rt.divide,
    "%": rt.modulo,
}


def _run(fn: Fn, env: Env) -> Any:
    """Evaluate a compiled expression; every failure, even a bug, is a CELError (a rule
    failure), never a crash."""
    try:
        return fn(env)
    except CELError:
        raise
    except (RecursionError, MemoryError) as exc:
        raise CELError(f"evaluation aborted: {type(exc).__name__}") from None
    except Exception as exc:
        raise CELError(f"internal evaluation error: {exc!r}") from None


@dataclass(frozen=True, eq=False)
class Program:
    """A compiled rule; `evaluate` may be called any number of times, concurrently."""

    source: str
    uses_old_self: bool
    _fn: Fn

    def evaluate(self, self_value: Any, old_self: Any = None) -> Any:
        env: Env = {"self": self_value}
        if self.uses_old_self:
            env["oldSelf"] = old_self
        return _run(self._fn, env)


@lru_cache(maxsize=4096)
def compile_rule(src: str) -> Program:
    """Parse and check a rule; raises CELError for syntax errors and unknown names."""
    try:
        ast = parse(src)
    except RecursionError:
        raise CELError("Syntax error: expression nested too deeply") from None
    return Program(src, _references(ast, "oldSelf"), _compile(ast, ROOT_VARIABLES))


@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled expression over named variables (not only `self`), e.g. a guardrail rule."""

    source: str
    variables: frozenset[str]
    _fn: Fn

    def evaluate(self, env: dict[str, Any]) -> Any:
        return _run(self._fn, env)


@lru_cache(maxsize=1024)
def compile_expression(src: str, variables: frozenset[str]) -> Expression:
    """Parse and check an expression that may reference exactly `variables`; raises CELError
    for syntax errors and undeclared references."""
    try:
        ast = parse(src)
    except RecursionError:
        raise CELError("Syntax error: expression nested too deeply") from None
    return Expression(src, variables, _compile(ast, variables))


def names_used(src: str) -> frozenset[str]:
    """Every identifier and selected field name in an expression (for static checks such as
    "does this rule read certificate data?"); raises CELError for syntax errors."""
    found: set[str] = set()

    def visit(node: Node) -> bool:
        if isinstance(node, Ident):
            found.add(node.name)
        elif isinstance(node, Select | Has):
            found.add(node.field)
        return True
    _visit(src, visit)
    return frozenset(found)


def fields_read(src: str, name: str) -> frozenset[str] | None:
    """The fields an expression selects directly on the variable `name` (`name.f`,
    `has(name.f)`), or None when it uses `name` in any other way (on its own, indexed, in a
    list, as a function's argument): what a static check such as "which parts of `cluster`
    does this rule read?" can rely on. Raises CELError for syntax errors."""
    found: set[str] = set()
    whole = False

    def visit(node: Node) -> bool:
        nonlocal whole
        if isinstance(node, Select | Has) and isinstance(node.operand, Ident) and \
                node.operand.name == name:
            found.add(node.field)
            return False
        if isinstance(node, Ident) and node.name == name:
            whole = True
        return True
    _visit(src, visit)
    return None if whole else frozenset(found)


def _visit(src: str, visit: Callable[[Node], bool]) -> None:
    """Parse `src` and call `visit` on its nodes, top-down; a node's children are visited
    when `visit` returns True. Raises CELError for syntax errors."""
    def walk(node: Node) -> None:
        if visit(node):
            for child in _children(node):
                walk(child)
    try:
        walk(parse(src))
    except RecursionError:
        raise CELError("Syntax error: expression nested too deeply") from None


def _references(node: Node, name: str) -> bool:
    if isinstance(node, Ident):
        return node.name == name
    return any(_references(child, name) for child in _children(node))


def _children(node: Node) -> tuple[Node, ...]:
    match node:
        case Select(operand=o) | Has(operand=o) | Unary(operand=o):
            return (o,)
        case Index(operand=o, index=i):
            return (o, i)
        case Call(target=t, args=args):
            return args if t is None else (t, *args)
        case ListLit(items=items):
            return items
        case MapLit(entries=entries):
            return tuple(part for entry in entries for part in entry)
        case Binary(left=left, right=right):
            return (left, right)
        case Cond(cond=c, then=t, other=o):
            return (c, t, o)
        case Comprehension(range_=r, pred=p, transform=t):
            return tuple(n for n in (r, p, t) if n is not None)
    return ()


# ---------------------------------------------------------------------------- compiler


def _compile(node: Node, scope: frozenset[str]) -> Fn:
    match node:
        case Lit(value=value):
            return lambda env: value
        case Ident(name=name):
            return _ident(name, scope)
        case Select(operand=operand, field=field):
            target = _compile(operand, scope)
            return lambda env: rt.select_field(target(env), field)
        case Has(operand=operand, field=field):
            target = _compile(operand, scope)
            return lambda env: rt.has_field(target(env), field)
        case Index(operand=operand, index=index):
            container, key = _compile(operand, scope), _compile(index, scope)
            return lambda env: rt.index_value(container(env), key(env))
        case Call():
            return _call(node, scope)
        case ListLit(items=items):
            fns = [_compile(item, scope) for item in items]
            return lambda env: [fn(env) for fn in fns]
        case MapLit():
            return _map_literal(node, scope)
        case Unary(op=op, operand=operand):
            inner = _compile(operand, scope)
            unary = rt.logical_not if op == "!" else rt.negate
            return lambda env: unary(inner(env))
        case Binary():
            return _binary(node, scope)
        case Cond():
            return _conditional(node, scope)
        case Comprehension():
            return _comprehension(node, scope)
    raise CELError(f"unsupported expression {node!r}")


def _ident(name: str, scope: frozenset[str]) -> Fn:
    if name not in scope:
        raise CELError(f"undeclared reference to '{name}'")

    def load(env: Env) -> Any:
        try:
            return env[name]
        except KeyError:
            raise CELError(f"no such attribute: {name}") from None
    return load


def _call(node: Call, scope: frozenset[str]) -> Fn:
    impl = lookup(node.name, len(node.args), method=node.target is not None)
    operands = (node.args if node.target is None else (node.target, *node.args))
    fns = [_compile(arg, scope) for arg in operands]
    if len(fns) == 1:
        only = fns[0]
        return lambda env: impl(only(env))
    return lambda env: impl(*[fn(env) for fn in fns])


def _map_literal(node: MapLit, scope: frozenset[str]) -> Fn:
    entries = [(_compile(k, scope), _compile(v, scope)) for k, v in node.entries]

    def build(env: Env) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        for key_fn, value_fn in entries:
            key = key_fn(env)
            if rt.type_name(key) not in ("string", "int", "uint", "bool"):
                raise CELError(f"unsupported map key type: {rt.type_name(key)}")
            if any(rt.equals(key, existing) for existing in result):
                raise CELError(f"Failed with repeated key: {key!r}")
            result[key] = value_fn(env)
        return result
    return build


def _binary(node: Binary, scope: frozenset[str]) -> Fn:
    left, right = _compile(node.left, scope), _compile(node.right, scope)
    if node.op in ("&&", "||"):
        return _logical(left, right, deciding=node.op == "||")
    op = _BINARY[node.op]
    return lambda env: op(left(env), right(env))


def _logical(left: Fn, right: Fn, *, deciding: bool) -> Fn:
    """`&&` (deciding=False) and `||` (deciding=True), commutative over errors."""
    name = "_||_" if deciding else "_&&_"

    def evaluate(env: Env) -> bool:
        left_value, left_error = _try_bool(left, env, name)
        if left_error is None and left_value is deciding:
            return deciding
        right_value, right_error = _try_bool(right, env, name)
        if right_error is None and right_value is deciding:
            return deciding
        error = left_error if left_error is not None else right_error
        if error is not None:
            raise error
        return not deciding
    return evaluate


def _try_bool(fn: Fn, env: Env, name: str) -> tuple[bool | None, CELError | None]:
    try:
        value = fn(env)
    except CELError as exc:
        return None, exc
    if not isinstance(value, bool):
        return None, rt.no_overload(name, value)
    return value, None


def _conditional(node: Cond, scope: frozenset[str]) -> Fn:
    cond, then, other = (_compile(n, scope) for n in (node.cond, node.then, node.other))

    def choose(env: Env) -> Any:
        test = cond(env)
        if not isinstance(test, bool):
            raise rt.no_overload("_?_:_", test)
        return then(env) if test else other(env)
    return choose


# ---------------------------------------------------------------------------- macros


def _comprehension(node: Comprehension, scope: frozenset[str]) -> Fn:
    inner = scope | {node.var}
    range_fn = _compile(node.range_, scope)
    pred = _compile(node.pred, inner) if node.pred is not None else None
    transform = _compile(node.transform, inner) if node.transform is not None else None
    loop = _MACRO_LOOPS[node.macro]

    def run(env: Env) -> Any:
        items = rt.iterate(range_fn(env), node.macro)
        return loop(items, env, node.var, pred, transform)
    return run


def _bind(env: Env, var: str, value: Any) -> Env:
    scoped = dict(env)
    scoped[var] = value
    return scoped


def _predicate(fn: Fn, env: Env, macro: str) -> bool:
    value = fn(env)
    if not isinstance(value, bool):
        raise rt.no_overload(macro, value)
    return value


def _quantifier(deciding: bool) -> Callable[..., bool]:
    """`exists` (deciding=True) and `all` (deciding=False): errors only count if undecided."""
    macro = "exists" if deciding else "all"

    def loop(items: Any, env: Env, var: str, pred: Fn, _transform: Fn | None) -> bool:
        first_error: CELError | None = None
        for item in items:
            try:
                if _predicate(pred, _bind(env, var, item), macro) is deciding:
                    return deciding
            except CELError as exc:
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return not deciding
    return loop


def _exists_one(items: Any, env: Env, var: str, pred: Fn, _transform: Fn | None) -> bool:
    count = 0
    for item in items:  # strict: an error anywhere is the result
        count += _predicate(pred, _bind(env, var, item), "exists_one")
    return count == 1


def _filter(items: Any, env: Env, var: str, pred: Fn, _transform: Fn | None) -> list[Any]:
    return [item for item in items if _predicate(pred, _bind(env, var, item), "filter")]


def _map(items: Any, env: Env, var: str, pred: Fn | None, transform: Fn) -> list[Any]:
    result = []
    for item in items:
        scoped = _bind(env, var, item)
        if pred is None or _predicate(pred, scoped, "map"):
            result.append(transform(scoped))
    return result


_MACRO_LOOPS: dict[str, Callable[..., Any]] = {
    "all": _quantifier(False),
    "exists": _quantifier(True),
    "exists_one": _exists_one,
    "filter": _filter,
    "map": _map,
}
