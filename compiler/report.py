"""Diagnostics → text, JSON, GitHub workflow annotations or SARIF. Pure: returns strings."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .diagnostics import Diagnostic, Severity
from .sarif import to_sarif

FORMATS = ("text", "json", "github", "sarif")


def summary(diagnostics: Sequence[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    warnings = len(diagnostics) - errors
    return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def text(diagnostics: Iterable[Diagnostic]) -> str:
    lines = []
    for d in diagnostics:
        where = f"{d.location}: " if d.location else ""
        lines.append(f"{where}{d.severity.value}[{d.code}]: {d.message}")
        lines += [f"    {line}" for line in context_lines(d)]
        if d.hint:
            lines.append(f"    hint: {d.hint}")
    return "\n".join(lines)


def context_lines(d: Diagnostic) -> list[str]:
    """`cluster: …` and `related: …` lines: which cluster(s) and which other places."""
    lines = []
    if d.clusters:
        lines.append(f"cluster{'s' * (len(d.clusters) > 1)}: {d.cluster}")
    lines += [f"related: {r}" for r in d.related]
    return lines


def as_dict(d: Diagnostic) -> dict[str, Any]:
    loc = d.location
    return {"code": d.code, "severity": d.severity.value, "message": d.message,
            "file": loc.file if loc else None, "line": loc.line if loc else None,
            "column": loc.col if loc else None, "hint": d.hint,
            "cluster": d.cluster, "clusters": list(d.clusters),
            "related": [{"file": r.location.file, "line": r.location.line,
                         "column": r.location.col, "message": r.message} for r in d.related]}


def to_json(diagnostics: Sequence[Diagnostic], **extra: Any) -> str:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    doc = {"diagnostics": [as_dict(d) for d in diagnostics],
           "summary": {"errors": errors, "warnings": len(diagnostics) - errors}, **extra}
    return json.dumps(doc, indent=2, sort_keys=True)


def escape_data(value: str) -> str:
    """Escape a workflow command's message."""
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(value: str) -> str:
    """Escape a workflow command's property value (file, title)."""
    return escape_data(value).replace(":", "%3A").replace(",", "%2C")


def github(diagnostics: Iterable[Diagnostic]) -> str:
    """GitHub Actions workflow commands: `::error file=…,line=…,col=…,title=…::message`."""
    lines = []
    for d in diagnostics:
        props = []
        if d.location:
            props += [f"file={escape_property(d.location.file)}", f"line={d.location.line}",
                      f"col={d.location.col}"]
        props.append(f"title={escape_property(d.code)}")
        message = "\n".join([d.message, *context_lines(d),
                             *([f"hint: {d.hint}"] if d.hint else [])])
        lines.append(f"::{d.severity.value} {','.join(props)}::{escape_data(message)}")
    return "\n".join(lines)


def render(diagnostics: Sequence[Diagnostic], fmt: str, **extra: Any) -> str:
    if fmt == "json":
        return to_json(diagnostics, **extra)
    if fmt == "sarif":
        return to_sarif(diagnostics)
    if fmt == "github":
        return github(diagnostics)
    return text(diagnostics)
