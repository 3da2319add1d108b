"""Tokenizer, AST and recursive-descent parser for the CEL subset Kubernetes rules use.

The grammar follows the CEL language definition (precedence from loosest to tightest:
`?:`, `||`, `&&`, relations incl. `in`, `+ -`, `* / %`, unary `! -`, member access).
Macros (`has`, `all`, `exists`, `exists_one`, `filter`, `map`) are expanded at parse time
into dedicated nodes, as the reference implementation does, so the evaluator never sees
them as ordinary calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class CELError(Exception):
    """A CEL rule failed to parse, compile or evaluate; the message is user-facing."""


class UInt(int):
    """CEL `uint`: Python has one integer type, so unsigned values carry their own class."""

    def __repr__(self) -> str:
        return f"{int(self)}u"


# Words CEL reserves; they can be neither identifiers nor field names (hence the
# `__namespace__` escaping Kubernetes applies to such property names).
RESERVED = frozenset({
    "as", "break", "const", "continue", "else", "for", "function", "if", "import",
    "let", "loop", "package", "namespace", "return", "var", "void", "while",
})


# ---------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: int, uint, double, string, bytes, bool or null."""

    value: Any


@dataclass(frozen=True, slots=True)
class Ident:
    """A name on its own, such as the variable `self`."""

    name: str


@dataclass(frozen=True, slots=True)
class Select:
    """Field selection: `operand.field`."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Has:
    """The `has(operand.field)` macro: whether the field is present."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index:
    """Indexing: `operand[index]`, a list position or a map key."""

    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call:
    """A function call `name(args)`, or with a `target` the method call `target.name(args)`."""

    name: str
    target: Node | None
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ListLit:
    """A list literal: `[item, ...]`."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLit:
    """A map literal: `{key: value, ...}`."""

    entries: tuple[tuple[Node, Node], ...]


@dataclass(frozen=True, slots=True)
class Unary:
    """A unary operator and its operand: `!x` or `-x`."""

    op: str  # "!" or "-"
    operand: Node


@dataclass(frozen=True, slots=True)
class Binary:
    """A binary operator and its operands, `&&`, `||` and the relations (`in`) included."""

    op: str
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Cond:
    """The conditional `cond ? then : other`."""

    cond: Node
    then: Node
    other: Node


@dataclass(frozen=True, slots=True)
class Comprehension:
    """A macro over a list or map, expanded at parse time: `range_.macro(var, pred)`, or for
    `map` `range_.map(var, [pred,] transform)`."""

    macro: str  # all | exists | exists_one | filter | map
    range_: Node
    var: str
    pred: Node | None  # None only for the 2-argument `map`
    transform: Node | None  # only for `map`


Node = (Lit | Ident | Select | Has | Index | Call | ListLit | MapLit | Unary | Binary | Cond
        | Comprehension)


# ---------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class Token:
    """One token of a rule's text; `value` is what a literal stands for, `pos` its offset."""

    kind: str  # int uint double string bytes bool null ident op eof
    text: str
    value: Any
    pos: int


_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+|//[^\n]*)
  | (?P<double>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<hex>0[xX][0-9a-fA-F]+[uU]?)
  | (?P<int>\d+[uU]?)
  | (?P<string>[rRbB]{0,2}(?:\"\"\"|'''|"|'))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%!<>?:.,\[\]{}()])
""", re.VERBOSE)

_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "`": "`", "?": "?",
}


def tokenize(src: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if m is None:
            raise CELError(f"Syntax error: unexpected character {src[pos]!r} at {pos}")
        kind = m.lastgroup or ""
        if kind == "string":
            token, pos = _lex_string(src, pos, m.group())
            tokens.append(token)
            continue
        if kind != "ws":
            tokens.append(_make_token(kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("eof", "", None, len(src)))
    return tokens


def _make_token(kind: str, text: str, pos: int) -> Token:
    if kind == "double":
        return Token("double", text, float(text), pos)
    if kind in ("hex", "int"):
        unsigned = text[-1] in "uU"
        digits = text[:-1] if unsigned else text
        value = int(digits, 16 if kind == "hex" else 10)
        if unsigned:
            if value > UINT64_MAX:
                raise CELError(f"Syntax error: uint literal out of range at {pos}")
            return Token("uint", text, UInt(value), pos)
        return Token("int", text, value, pos)  # range checked after folding a unary minus
    if kind == "ident":
        return _ident_token(text, pos)
    return Token("op", text, text, pos)


def _ident_token(text: str, pos: int) -> Token:
    if text in ("true", "false"):
        return Token("bool", text, text == "true", pos)
    if text == "null":
        return Token("null", text, None, pos)
    if text == "in":
        return Token("op", text, text, pos)
    if text in RESERVED:
        raise CELError(f"Syntax error: reserved identifier {text!r} at {pos}")
    return Token("ident", text, text, pos)


def _lex_string(src: str, start: int, opening: str) -> tuple[Token, int]:
    prefix = opening.rstrip("\"'").lower()
    if len(set(prefix)) != len(prefix):
        raise CELError(f"Syntax error: bad string prefix at {start}")
    quote = opening[len(prefix):]
    raw, is_bytes = "r" in prefix, "b" in prefix
    body_start = pos = start + len(opening)
    while True:
        if pos >= len(src):
            raise CELError(f"Syntax error: unterminated string starting at {start}")
        if src.startswith(quote, pos):
            break
        if src[pos] == "\n" and len(quote) == 1:
            raise CELError(f"Syntax error: newline in string starting at {start}")
        pos += 2 if src[pos] == "\\" and not raw else 1
    body = src[body_start:pos]
    value: str | bytes = body if raw else _unescape(body, is_bytes, start)
    if is_bytes and isinstance(value, str):
        value = value.encode()
    kind = "bytes" if is_bytes else "string"
    return Token(kind, src[start:pos + len(quote)], value, start), pos + len(quote)


def _unescape(body: str, is_bytes: bool, start: int) -> str | bytes:
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char != "\\":
            out += char.encode()
            i += 1
            continue
        chunk, i = _escape_at(body, i + 1, is_bytes, start)
        out += chunk
    return bytes(out) if is_bytes else out.decode("utf-8")


def _escape_at(body: str, i: int, is_bytes: bool, start: int) -> tuple[bytes, int]:
    """Decode one escape whose backslash precedes `body[i]`; return its bytes and the next index."""
    char = body[i] if i < len(body) else ""
    if char in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[char].encode(), i + 1
    widths = {"x": 2, "X": 2, "u": 4, "U": 8}
    if char in widths and not (is_bytes and char in "uU"):
        digits = body[i + 1:i + 1 + widths[char]]
        if len(digits) == widths[char] and all(c in "0123456789abcdefABCDEF" for c in digits):
            raw_byte = is_bytes and char in "xX"
            return _code_point(int(digits, 16), raw_byte, start), i + 1 + len(digits)
    elif char in "0123" and re.fullmatch(r"[0-7]{3}", body[i:i + 3]):
        return _code_point(int(body[i:i + 3], 8), is_bytes, start), i + 3
    raise CELError(f"Syntax error: invalid escape sequence in string at {start}")


def _code_point(value: int, as_byte: bool, start: int) -> bytes:
    if as_byte:
        return bytes([value])
    if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
        raise CELError(f"Syntax error: invalid code point in string at {start}")
    return chr(value).encode()


# ---------------------------------------------------------------------------- parser

_RELATIONS = frozenset({"<", "<=", ">", ">=", "==", "!=", "in"})
_MACROS = {"all": (2,), "exists": (2,), "exists_one": (2,), "filter": (2,), "map": (2, 3)}


def parse(src: str) -> Node:
    parser = _Parser(tokenize(src))
    node = parser.expr()
    parser.expect("eof")
    return node


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    # -- token helpers

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def next(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        token = self.peek()
        if token.kind == "op" and token.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str) -> Token:
        token = self.next()
        if (token.kind == "eof" and text == "eof") or (token.kind == "op" and token.text == text):
            return token
        found = repr(token.text) if token.text else "end of input"
        raise CELError(f"Syntax error: expected {text!r}, found {found} at {token.pos}")

    # -- grammar

    def expr(self) -> Node:
        cond = self.binary_chain(("||",), self.conjunction)
        if not self.accept("?"):
            return cond
        then = self.binary_chain(("||",), self.conjunction)
        self.expect(":")
        return Cond(cond, then, self.expr())

    def conjunction(self) -> Node:
        return self.binary_chain(("&&",), self.relation)

    def relation(self) -> Node:
        return self.binary_chain(tuple(_RELATIONS), self.addition)

    def addition(self) -> Node:
        return self.binary_chain(("+", "-"), self.multiplication)

    def multiplication(self) -> Node:
        return self.binary_chain(("*", "/", "%"), self.unary)

    def binary_chain(self, ops: tuple[str, ...], operand: Callable[[], Node]) -> Node:
        node: Node = operand()
        while self.peek().kind == "op" and self.peek().text in ops:
            op = self.next().text
            node = Binary(op, node, operand())
        return node

    def unary(self) -> Node:
        ops: list[str] = []
        while self.peek().kind == "op" and self.peek().text in ("!", "-"):
            ops.append(self.next().text)
        node = self.member()
        if ops and ops[-1] == "-" and isinstance(node, Lit) and _is_plain_int(node.value):
            ops.pop()  # fold into the literal so that INT64_MIN is expressible
            node = Lit(-node.value)
        if isinstance(node, Lit) and _is_plain_int(node.value) and not (
                INT64_MIN <= node.value <= INT64_MAX):
            raise CELError("Syntax error: integer literal out of range")
        for op in reversed(ops):
            node = Unary(op, node)
        return node

    def member(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                node = self.member_suffix(node)
            elif self.accept("["):
                node = Index(node, self.expr())
                self.expect("]")
            else:
                return node

    def member_suffix(self, operand: Node) -> Node:
        name = self.expect_ident()
        if not self.accept("("):
            return Select(operand, name)
        args = self.arguments(")")
        if name in _MACROS and len(args) in _MACROS[name]:
            return _expand_macro(name, operand, args)
        return Call(name, operand, args)

    def primary(self) -> Node:
        token = self.next()
        if token.kind in ("int", "uint", "double", "string", "bytes", "bool", "null"):
            return Lit(token.value)
        if token.kind == "ident":
            return self.identifier(token.text)
        if token.kind == "op" and token.text == ".":
            return self.identifier(self.expect_ident())  # leading dot: root-scoped name
        if token.kind == "op" and token.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if token.kind == "op" and token.text == "[":
            return ListLit(self.arguments("]"))
        if token.kind == "op" and token.text == "{":
            return self.map_literal()
        found = repr(token.text) if token.text else "end of input"
        raise CELError(f"Syntax error: unexpected {found} at {token.pos}")

    def identifier(self, name: str) -> Node:
        if not self.accept("("):
            if self.peek().kind == "op" and self.peek().text == "{":
                raise CELError("Syntax error: message construction is not supported")
            return Ident(name)
        args = self.arguments(")")
        if name == "has":
            return _expand_has(args)
        return Call(name, None, args)

    def expect_ident(self) -> str:
        token = self.next()
        if token.kind != "ident":
            found = repr(token.text) if token.text else "end of input"
            raise CELError(f"Syntax error: expected identifier, found {found} at {token.pos}")
        return token.text

    def arguments(self, closing: str) -> tuple[Node, ...]:
        args: list[Node] = []
        while not self.accept(closing):
            args.append(self.expr())
            if not self.accept(","):
                self.expect(closing)
                break
        return tuple(args)

    def map_literal(self) -> Node:
        entries: list[tuple[Node, Node]] = []
        while not self.accept("}"):
            key = self.expr()
            self.expect(":")
            entries.append((key, self.expr()))
            if not self.accept(","):
                self.expect("}")
                break
        return MapLit(tuple(entries))


def _is_plain_int(value: Any) -> bool:
    return type(value) is int


def _expand_has(args: tuple[Node, ...]) -> Node:
    if len(args) != 1 or not isinstance(args[0], Select):
        raise CELError("Syntax error: invalid argument to has() macro")
    return Has(args[0].operand, args[0].field)


def _expand_macro(name: str, target: Node, args: tuple[Node, ...]) -> Node:
    if not isinstance(args[0], Ident):
        raise CELError(f"Syntax error: argument is not an identifier in {name}() macro")
    var = args[0].name
    if name == "map":
        pred = args[1] if len(args) == 3 else None
        return Comprehension("map", target, var, pred, args[-1])
    return Comprehension(name, target, var, args[1], None)
