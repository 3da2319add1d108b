"""YAML documents as trees of located nodes.

Every value the user wrote keeps the file, line and column it came from and the layer that set it,
so any later stage (schema checks, precedence rules, certificate checks, `mtlsc explain`) can point
at the exact line. Policy files are untrusted input: `policy_text` checks their size and encoding,
`yaml_events` builds the tree from libyaml's event stream with bounded depth, node count and
aliases, and `yaml_core` gives scalars their YAML 1.2 core-schema values. No tag ever constructs
an object. The limits are documented in docs/input-limits.md.
"""

from __future__ import annotations

from .diagnostics import Diagnostic
from .nodes import Document, Node, Path
from .policy_text import decode
from .yaml_events import build_documents

__all__ = ["Document", "Node", "Path", "parse_documents"]


def parse_documents(data: str | bytes, file: str) -> tuple[list[Document], list[Diagnostic]]:
    """Parse every YAML document of one policy file; its first problem becomes one diagnostic.

    `data` is the file's bytes or its text; either is checked (size, UTF-8, control characters)
    before parsing. A file with a problem yields no documents.
    """
    text, problem = decode(data, file)
    if problem is not None:
        return [], [problem]
    documents, problem = build_documents(text, file)
    return ([], [problem]) if problem is not None else (documents, [])
