"""YAML documents as trees of located nodes.

Every value the user wrote keeps the file, line and column it came from and the layer that set it,
so any later stage (schema checks, precedence rules, certificate checks, `mtlsc explain`) can point
at the exact line. ruamel.yaml's round-trip loader gives us positions; we copy them into a small
immutable-by-convention tree so the rest of the compiler never touches ruamel types.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .diagnostics import Diagnostic, Location, error

Path = tuple[str | int, ...]


@dataclass(slots=True)
class Node:
    """A located YAML value. `value` is dict[str, Node], list[Node] or a scalar."""

    value: Any
    loc: Location
    key_loc: Location | None = None  # where the mapping key of this value stands
    layer: str = "base"

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_seq(self) -> bool:
        return isinstance(self.value, list)

    def get(self, key: str) -> Node | None:
        if isinstance(self.value, dict):
            child: Node | None = self.value.get(key)
            return child
        return None

    def scalar(self, key: str, default: Any = None) -> Any:
        child = self.get(key)
        return default if child is None else child.value

    def items(self) -> Iterator[tuple[str, Node]]:
        if isinstance(self.value, dict):
            yield from self.value.items()

    def seq(self, key: str) -> list[Node]:
        child = self.get(key)
        return list(child.value) if child is not None and child.is_seq else []

    def plain(self) -> Any:
        if isinstance(self.value, dict):
            return {k: v.plain() for k, v in self.value.items()}
        if isinstance(self.value, list):
            return [v.plain() for v in self.value]
        return self.value

    def at(self, path: Path) -> Node | None:
        """The node exactly at `path`, or None."""
        node: Node | None = self
        for step in path:
            node = node._child(step) if node is not None else None
        return node

    def _child(self, step: str | int) -> Node | None:
        if isinstance(step, str) and isinstance(self.value, dict):
            found: Node | None = self.value.get(step)
            return found
        if isinstance(step, int) and isinstance(self.value, list) and 0 <= step < len(self.value):
            item: Node = self.value[step]
            return item
        return None

    def find(self, path: Path) -> Node:
        """The deepest node on `path` (stops where the path leaves the tree)."""
        node = self
        for step in path:
            nxt = node._child(step)
            if nxt is None:
                return node
            node = nxt
        return node


@dataclass(frozen=True, slots=True)
class Document:
    file: str
    index: int  # position of the document within a multi-document file
    root: Node


def _loc(file: str, line: int, col: int) -> Location:
    return Location(file, line + 1, col + 1)


def _convert(data: Any, file: str, loc: Location, layer: str) -> Node:
    if isinstance(data, CommentedMap):
        children: dict[str, Node] = {}
        for key in data:
            kline, kcol, vline, vcol = data.lc.data[key]
            child = _convert(data[key], file, _loc(file, vline, vcol), layer)
            child.key_loc = _loc(file, kline, kcol)
            children[str(key)] = child
        return Node(children, loc, layer=layer)
    if isinstance(data, CommentedSeq):
        items = [
            _convert(item, file, _loc(file, *data.lc.item(i)), layer)
            for i, item in enumerate(data)
        ]
        return Node(items, loc, layer=layer)
    return Node(_plain_scalar(data), loc, layer=layer)


def _plain_scalar(value: Any) -> Any:
    """ruamel's round-trip scalars subclass str/int/float; keep plain Python types."""
    if value is None or isinstance(value, bool):
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    # Timestamps, binary and other YAML types the intent language does not use: keep their text
    # so the schema check can reject them with a location.
    return str(value)


def _yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    return yaml


def parse_documents(text: str, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every YAML document in `text`; a syntax error becomes one located diagnostic."""
    try:
        raw_docs = list(_yaml().load_all(text))
    except DuplicateKeyError as exc:
        return [], [_duplicate_key(exc, file)]
    except MarkedYAMLError as exc:
        return [], [_syntax_error(exc, file)]
    except YAMLError as exc:  # unmarked ruamel errors are rare; still a user error
        return [], [error("YAMLSyntax", f"invalid YAML: {exc}", Location(file, 1, 1))]
    docs: list[Document] = []
    for index, data in enumerate(raw_docs):
        if data is None:
            continue
        start = _loc(file, *_start_of(data))
        docs.append(Document(file, index, _convert(data, file, start, "base")))
    return docs, []


def _start_of(data: Any) -> tuple[int, int]:
    lc = getattr(data, "lc", None)
    if lc is None or lc.line is None:
        return (0, 0)
    return (lc.line, lc.col)


def _mark_location(exc: MarkedYAMLError, file: str) -> Location:
    # At the end of the stream the problem mark is useless; the context mark says where the
    # unterminated construct (quoted string, flow sequence) started.
    at_end = any(s in (exc.problem or "") for s in ("end of stream", "stream end"))
    mark = (exc.context_mark or exc.problem_mark) if at_end else \
        (exc.problem_mark or exc.context_mark)
    if mark is None:
        return Location(file, 1, 1)
    return Location(file, mark.line + 1, mark.column + 1)


def _syntax_error(exc: MarkedYAMLError, file: str) -> Diagnostic:
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    context = f" {exc.context}" if exc.context and exc.problem else ""
    return error(
        "YAMLSyntax",
        f"YAML syntax error: {problem}{context}",
        _mark_location(exc, file),
        "check indentation, quoting and that every ':' in a value is quoted",
    )


def _duplicate_key(exc: DuplicateKeyError, file: str) -> Diagnostic:
    problem = (exc.problem or "duplicate key").strip()
    first = exc.context_mark
    also = f" (first defined at line {first.line + 1})" if first is not None else ""
    loc = exc.problem_mark or first
    location = Location(file, loc.line + 1, loc.column + 1) if loc else Location(file, 1, 1)
    return error(
        "DuplicateKey",
        f"{problem}{also}",
        location,
        "YAML mappings must not repeat a key; merge the two entries into one",
    )
