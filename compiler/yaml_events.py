"""libyaml's event stream → located node trees, with the limits for untrusted input built in.

One iterative pass over the events of PyYAML's C parser (no recursion, so no depth can exhaust a
stack): scalars get their core-schema values, collections their children, every node its 1-based
line and column. The pass stops at the first problem of a file and reports it where it is:

- nesting deeper than `MAX_DEPTH` collections (`YAMLTooDeep`),
- more than `MAX_NODES` nodes in one file, each alias counted at the size of what it repeats, so
  an alias bomb stops after a bounded amount of work (`YAMLTooManyNodes`),
- a tag outside the core schema (`YAMLTag`), a merge key `<<` (`YAMLMergeKey`), a collection used
  as a mapping key (`YAMLComplexKey`), a repeated key (`DuplicateKey`), an alias to an anchor
  not defined before it (`YAMLSyntax`).

An alias shares the anchored subtree (a new node at the alias's position holds the same value),
so expanding one costs O(1) here; the node limit bounds what later stages walk.
"""

from __future__ import annotations

from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

from .diagnostics import Diagnostic, Location, error
from .nodes import Document, Node
from .policy_text import line_col
from .yaml_core import MAP, SEQ, TagError, plain, show_tag, tagged

MAX_DEPTH = 64
MAX_NODES = 250_000

# The C parser when the PyYAML wheel has it (it does on every common platform), else the pure
# Python one with the same event API. Only the parser is used: never a constructor.
PARSER: Any = yaml.CBaseLoader if yaml.__with_libyaml__ else yaml.BaseLoader
_SCALAR, _ALIAS = yaml.ScalarEvent, yaml.AliasEvent
_MAP_START, _SEQ_START = yaml.MappingStartEvent, yaml.SequenceStartEvent
_MAP_END, _SEQ_END = yaml.MappingEndEvent, yaml.SequenceEndEvent
_DOC_START, _DOC_END, _STREAM_END = yaml.DocumentStartEvent, yaml.DocumentEndEvent, \
    yaml.StreamEndEvent
_NO_KEY: Any = object()


# Values of plain scalars seen before ("HTTPS", "name", "8443"): immutable, so they can be shared.
_PLAIN_CACHE: dict[str, Any] = {}


def _remember(text: str) -> Any:
    value = plain(text)
    if len(_PLAIN_CACHE) < 8192 and len(text) < 64:
        _PLAIN_CACHE[text] = value
    return value


class _Stop(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.message)
        self.diagnostic = diagnostic


def build_documents(text: str, file: str) -> tuple[list[Document], Diagnostic | None]:
    """Every non-empty document of `text`, or the first problem found in it."""
    parser = PARSER(text)
    try:
        return _Builder(file).run(parser.get_event), None
    except _Stop as stop:
        return [], stop.diagnostic
    except yaml.MarkedYAMLError as exc:
        return [], _syntax_error(exc, file, text)
    except yaml.reader.ReaderError as exc:  # policy_text checks first; kept as a safety net
        line, col = line_col(text, min(exc.position, len(text)))
        return [], error("YAMLEncoding", f"invalid character: {exc.reason}",
                         Location(file, line, col))
    except yaml.YAMLError as exc:
        return [], error("YAMLSyntax", f"invalid YAML: {exc}", Location(file, 1, 1))


class _Frame:
    __slots__ = ("anchor", "container", "first", "key", "key_loc", "node")

    def __init__(self, node: Node, container: Any, anchor: str | None, first: int) -> None:
        self.node, self.container, self.anchor, self.first = node, container, anchor, first
        self.key: Any = _NO_KEY
        self.key_loc: Location | None = None


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.stack: list[_Frame] = []
        self.anchors: dict[str, tuple[Node, int]] = {}
        self.count = 0
        self.root: Node | None = None

    def run(self, next_event: Any) -> list[Document]:
        # The hot loop: scalars (most events) are handled inline, the rest in small methods.
        docs: list[Document] = []
        index = -1
        file, stack, known = self.file, self.stack, _PLAIN_CACHE
        container: Any
        while True:
            event = next_event()
            kind = type(event)
            if kind is _SCALAR:
                mark = event.start_mark
                loc = Location(file, mark.line + 1, mark.column + 1)
                tag, text = event.tag, event.value
                if tag is None and event.implicit[0]:
                    value = known.get(text, _NO_KEY)
                    if value is _NO_KEY:
                        value = _remember(text)
                elif tag is None or tag == "!":
                    value = text
                else:
                    value = self._tagged(tag, text, loc)
                self.count += 1
                if self.count > MAX_NODES:
                    self._count(0, loc)
                if not stack:
                    node = self.root = Node(value, loc)
                else:
                    frame = stack[-1]
                    container = frame.container
                    if type(container) is list:
                        node = Node(value, loc)
                        container.append(node)
                    elif frame.key is _NO_KEY:
                        self._key(frame, value, loc, tag is None and event.implicit[0])
                        node = None
                    else:
                        node = Node(value, loc, frame.key_loc)
                        container[frame.key] = node
                        frame.key = _NO_KEY
                if event.anchor is not None:
                    self.anchors[event.anchor] = (node or Node(value, loc), 1)
            elif kind is _MAP_START or kind is _SEQ_START:
                mark = event.start_mark
                loc = Location(file, mark.line + 1, mark.column + 1)
                if event.tag is not None or len(stack) >= MAX_DEPTH:
                    self._check_open(event, kind is _MAP_START, loc)
                container = {} if kind is _MAP_START else []
                first = self.count
                self.count += 1
                if self.count > MAX_NODES:
                    self._count(0, loc)
                if not stack:
                    node = self.root = Node(container, loc)
                else:
                    frame = stack[-1]
                    parent = frame.container
                    if type(parent) is list:
                        node = Node(container, loc)
                        parent.append(node)
                    elif frame.key is _NO_KEY:
                        raise self._complex_key(loc)
                    else:
                        node = Node(container, loc, frame.key_loc)
                        parent[frame.key] = node
                        frame.key = _NO_KEY
                stack.append(_Frame(node, container, event.anchor, first))
            elif kind is _MAP_END or kind is _SEQ_END:
                frame = stack.pop()
                if frame.anchor is not None:
                    self.anchors[frame.anchor] = (frame.node, self.count - frame.first)
            elif kind is _ALIAS:
                self._alias(event)
            elif kind is _DOC_START:
                index += 1
                self.anchors, self.root = {}, None
            elif kind is _DOC_END:
                if self.root is not None and self.root.value is not None:
                    docs.append(Document(file, index, self.root))
            elif kind is _STREAM_END:
                return docs

    def _loc(self, event: Any) -> Location:
        mark = event.start_mark
        return Location(self.file, mark.line + 1, mark.column + 1)

    def _fail(self, code: str, message: str, loc: Location, hint: str) -> _Stop:
        return _Stop(error(code, message, loc, hint))

    def _tagged(self, tag: str, text: str, loc: Location) -> Any:
        try:
            return tagged(tag, text)
        except TagError as exc:
            raise self._fail("YAMLTag", str(exc), loc, "remove the tag; policy files hold "
                             "plain strings, numbers, booleans, lists and mappings") from None

    def _key(self, frame: _Frame, value: Any, loc: Location, is_plain: bool) -> None:
        key = value if type(value) is str else str(value)
        if is_plain and key == "<<":
            raise self._fail("YAMLMergeKey", "merge keys (<<) are not supported", loc,
                             "write the keys out, or quote '<<' if it is meant as a key")
        first = frame.container.get(key)
        if first is not None:
            raise self._fail("DuplicateKey", f"duplicate key {key!r} (first defined at line "
                             f"{first.key_loc.line})", loc,
                             "YAML mappings must not repeat a key; merge the two entries into one")
        frame.key, frame.key_loc = key, loc

    def _add(self, frame: _Frame, node: Node) -> None:
        container = frame.container
        if type(container) is list:
            container.append(node)
        else:
            node.key_loc = frame.key_loc
            container[frame.key] = node
            frame.key = _NO_KEY

    def _place(self, node: Node) -> None:
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        if frame.key is _NO_KEY and type(frame.container) is dict:
            raise self._complex_key(node.loc)
        self._add(frame, node)

    def _complex_key(self, loc: Location) -> _Stop:
        return self._fail("YAMLComplexKey", "a mapping key must be a scalar, not a list or "
                          "mapping", loc, "use a plain string as the key")

    def _check_open(self, event: Any, is_map: bool, loc: Location) -> None:
        tag = event.tag
        if tag is not None and tag != "!" and tag != (MAP if is_map else SEQ):
            what = "a mapping" if is_map else "a list"
            raise self._fail("YAMLTag", f"tag {show_tag(tag)} is not allowed on {what}", loc,
                             "remove the tag; policy files hold plain strings, numbers, "
                             "booleans, lists and mappings")
        if len(self.stack) >= MAX_DEPTH:
            raise self._fail("YAMLTooDeep", f"nesting deeper than {MAX_DEPTH} levels", loc,
                             "policy documents are a few levels deep; check the brackets")

    def _alias(self, event: Any) -> None:
        loc = self._loc(event)
        found = self.anchors.get(event.anchor)
        if found is None:
            raise self._fail("YAMLSyntax", f"alias *{event.anchor} has no anchor before it",
                             loc, f"define '&{event.anchor}' earlier in the same document "
                             "(an alias cannot refer to a collection that contains it)")
        target, size = found
        self._count(size, loc)
        node = Node(target.value, loc)
        if self.stack and self.stack[-1].key is _NO_KEY and \
                type(self.stack[-1].container) is dict:
            if target.is_map or target.is_seq:
                self._place(node)  # raises YAMLComplexKey
            self._key(self.stack[-1], target.value, loc, False)
            return
        self._place(node)

    def _count(self, size: int, loc: Location) -> None:
        self.count += size
        if self.count > MAX_NODES:
            raise self._fail("YAMLTooManyNodes", f"more than {MAX_NODES} YAML nodes in one file "
                             "(aliases count as the nodes they repeat)", loc,
                             "an alias bomb, or a file that should be split; expand fewer aliases")


def _mark_location(exc: yaml.MarkedYAMLError, file: str, text: str) -> Location:
    # At the end of the stream the problem mark is useless; the context mark says where the
    # unterminated construct (quoted string, flow sequence) started. When that is at the end
    # too, the last character written is the best place to look.
    end = line_col(text, len(text))
    problem = exc.problem_mark
    at_end = problem is not None and (problem.line + 1, problem.column + 1) >= end
    mark = (exc.context_mark or exc.problem_mark) if at_end else \
        (exc.problem_mark or exc.context_mark)
    if mark is None:
        return Location(file, 1, 1)
    if (mark.line + 1, mark.column + 1) >= end and text.strip():
        return Location(file, *line_col(text, len(text.rstrip()) - 1))
    return Location(file, mark.line + 1, mark.column + 1)


def _syntax_error(exc: yaml.MarkedYAMLError, file: str, text: str) -> Diagnostic:
    problem = (exc.problem or exc.context or "invalid YAML").strip()
    context = f" {exc.context}" if exc.context and exc.problem else ""
    if "maximum nesting depth" in problem:  # libyaml's own limit on open flow collections
        return error("YAMLTooDeep", f"nesting too deep: {problem}", _mark_location(exc, file, text),
                     "policy documents are a few levels deep; check the brackets")
    return error(
        "YAMLSyntax",
        f"YAML syntax error: {problem}{context}",
        _mark_location(exc, file, text),
        "check indentation, quoting and that every ':' in a value is quoted",
    )
