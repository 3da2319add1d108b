"""The error value every validation step of `compiler.k8s.validate` produces."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SCHEMA_VIOLATION = "SchemaViolation"
CEL_RULE_VIOLATION = "CELRuleViolation"
DUPLICATE_LIST_KEY = "DuplicateListKey"

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class SchemaError:
    """One problem, located by the path of the offending value inside the object."""

    path: Path
    message: str
    code: str

    def __str__(self) -> str:
        return f"{format_path(self.path)}: {self.message}"

    def sort_key(self) -> tuple[tuple[tuple[int, str | int], ...], str, str]:
        # Keys and indices must not be compared with each other, so tag each step.
        steps = tuple((0, p) if isinstance(p, str) else (1, p) for p in self.path)
        return steps, self.code, self.message


def format_path(path: Path) -> str:
    """`spec.listeners[1].tls` style, as kubectl prints field paths; `<root>` when empty."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif step.replace("-", "").replace("_", "").isalnum():
            text += f".{step}" if text else step
        else:
            text += f"[{json.dumps(step)}]"
    return text or "<root>"


def show(value: Any, limit: int = 80) -> str:
    """A value as JSON, shortened so that a message never embeds a whole object."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit - 3] + "..."
