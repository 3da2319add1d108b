"""The located YAML tree: values that remember the file, line and column they came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .diagnostics import Location

if TYPE_CHECKING:
    from .model import Origin

Path = tuple[str | int, ...]


@dataclass(slots=True)
class Node:
    """A located YAML value. `value` is dict[str, Node], list[Node] or a scalar."""

    value: Any
    loc: Location
    key_loc: Location | None = None  # where the mapping key of this value stands
    layer: str = "base"
    # The Origin made for this node (`precedence.origin`): one object however many clusters
    # resolve the node, instead of one per cluster (memory of large fleets).
    origin_memo: Origin | None = field(default=None, compare=False, repr=False)

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
    """One YAML document of a policy file, as a located tree."""

    file: str
    index: int  # position of the document within a multi-document file
    root: Node

