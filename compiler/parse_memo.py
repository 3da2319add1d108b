"""The located documents of policy files parsed before, so a warm run parses only what changed.

`located.parse_documents` is a pure function of a file's name and content (and of mtlsc's code
and the YAML parser), and `schema_memo.file_digest` digests exactly those two. So the documents
of a file whose digest was seen by the previous compile are those it parsed then. The render
cache's store holds one entry: per digest, the file's documents as plain JSON (each node as
`[kind, line, col, key line, key col, value]`, mapping values as alternating keys and nodes).

Only a clean parse is remembered: a file with any problem is parsed again every run, so
diagnostics never come from this memo. The entry is checksummed like every cache entry and
decoded strictly (`decode` raises on any shape `encode` does not produce): a damaged or
foreign entry, or a damaged item in it, is ignored and that file parsed afresh. Only the files
of this run are written back, so the entry does not grow with history.

An alias in a policy file shares the anchored subtree in a fresh parse and is a copy of it here;
no stage changes a node in place, so the two trees are alike in every way a stage can see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from .cache import EntryStore, code_salt
from .diagnostics import Location
from .nodes import Document, Node

KIND = "parsed"
_SCALAR, _MAP, _SEQ = 0, 1, 2
_SCALARS = (str, int, float, bool, type(None))
_DECODE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError,
                  RecursionError)


@cache
def _key() -> str:
    parser = f"pyyaml {yaml.__version__} libyaml {yaml.__with_libyaml__}"
    return hashlib.sha256(f"{KIND}-1\0{code_salt()}\0{parser}".encode()).hexdigest()


class Unencodable(ValueError):
    """A tree this memo has no exact plain form for (it is then simply not remembered)."""


def _encode_node(node: Node) -> list[Any]:
    if node.layer != "base":
        raise Unencodable("a layered node")
    key = node.key_loc
    value = node.value
    kind = type(value)
    if kind is dict:
        payload: Any = []
        for name, child in value.items():
            if type(name) is not str:
                raise Unencodable("a key that is not a string")
            payload += [name, _encode_node(child)]
        tag = _MAP
    elif kind is list:
        payload, tag = [_encode_node(child) for child in value], _SEQ
    elif kind in _SCALARS:
        payload, tag = value, _SCALAR
    else:
        raise Unencodable(f"a scalar of type {kind.__name__}")
    return [tag, node.loc.line, node.loc.col, None if key is None else key.line,
            None if key is None else key.col, payload]


def encode(documents: list[Document]) -> list[Any]:
    """The plain form of one file's documents (raises `Unencodable`)."""
    return [[doc.index, _encode_node(doc.root)] for doc in documents]


def _bad() -> Any:
    raise TypeError("not the plain form of a parsed document")


def _decoder(file: str) -> Callable[[Any], Node]:
    def node(raw: Any) -> Node:
        if type(raw) is not list or len(raw) != 6:
            _bad()
        tag, line, col, key_line, key_col, payload = raw
        if type(line) is not int or type(col) is not int:
            _bad()
        key = None
        if key_line is not None or key_col is not None:
            if type(key_line) is not int or type(key_col) is not int:
                _bad()
            key = Location(file, key_line, key_col)
        if tag == _MAP and type(payload) is list and len(payload) % 2 == 0:
            value: Any = {}
            for at in range(0, len(payload), 2):
                name = payload[at]
                if type(name) is not str or name in value:
                    _bad()
                value[name] = node(payload[at + 1])
        elif tag == _SEQ and type(payload) is list:
            value = [node(child) for child in payload]
        elif tag == _SCALAR and type(payload) in _SCALARS:
            value = payload
        else:
            value = _bad()
        return Node(value, Location(file, line, col), key)

    return node


def decode(raw: Any, file: str) -> list[Document]:
    """The documents of `file` from their plain form; raises on any other shape."""
    if type(raw) is not list:
        _bad()
    node = _decoder(file)
    out = []
    for item in raw:
        if type(item) is not list or len(item) != 2 or type(item[0]) is not int:
            _bad()
        out.append(Document(file, item[0], node(item[1])))
    return out


class ParsedFiles:
    """The documents of clean files by file digest: read from the store on first use, written
    back (when writable) as exactly this run's clean files."""

    def __init__(self, store: EntryStore | None) -> None:
        self.store = store
        self.loaded = False
        self.known: dict[str, Any] = {}
        self.seen: dict[str, Any] = {}
        self.changed = False

    def get(self, digest: str, file: str) -> list[Document] | None:
        if not self.loaded:
            self.loaded = True
            raw = self.store.get(KIND, _key()) if self.store is not None else None
            self.known = raw if isinstance(raw, dict) else {}
        raw = self.known.get(digest)
        if raw is None:
            return None
        try:
            found = decode(raw, file)
        except _DECODE_ERRORS:
            return None
        self.seen[digest] = raw
        return found

    def add(self, digest: str, documents: list[Document]) -> None:
        try:
            self.seen[digest] = encode(documents)
        except (Unencodable, RecursionError):
            return
        self.changed = True

    def save(self) -> None:
        if self.store is None or not self.store.writable:
            return
        if self.changed or set(self.seen) != set(self.known):
            self.store.put(KIND, _key(), self.seen)
