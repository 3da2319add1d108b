"""What JSON Schema cannot check: defaults, CEL rules and list-type uniqueness.

A `PlanNode` tree mirrors only the parts of a schema that carry defaults,
`x-kubernetes-validations` or `x-kubernetes-list-type: map|set`, with every CEL rule
compiled up front. Walking the (small) plan alongside an object is much cheaper than
walking the whole schema, and it only visits values that are present, which is also the
API server's rule: validations of absent optional fields do not run.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from compiler.k8s._schema_error import (
    CEL_RULE_VIOLATION,
    DUPLICATE_LIST_KEY,
    Path,
    SchemaError,
    show,
)
from compiler.k8s.cel import CELError, Program, compile_rule

_IMMUTABLE = frozenset({str, int, float, bool, type(None)})
_FIELD_PATH_STEP = re.compile(r"\.([A-Za-z_$][A-Za-z0-9_$-]*)|\['((?:[^'\\]|\\.)*)'\]")


@dataclass(frozen=True)
class Rule:
    """One `x-kubernetes-validations` entry, compiled."""

    source: str
    message: str | None
    program: Program | None
    message_program: Program | None
    field_path: Path
    compile_error: str | None = None

    def check(self, value: Any, path: Path) -> SchemaError | None:
        where = path + self.field_path
        if self.program is None:
            return SchemaError(where, f"rule failed to compile: {self.compile_error}: "
                               f"{self.source}", CEL_RULE_VIOLATION)
        try:
            result = self.program.evaluate(value)
        except CELError as exc:
            # Same wording as the API server: the CEL error, then the rule it came from.
            return SchemaError(where, f"{exc} evaluating rule: {self.message or self.source}",
                               CEL_RULE_VIOLATION)
        if result is True:
            return None
        if result is not False:
            return SchemaError(where, f"rule did not evaluate to a bool: {self.source}",
                               CEL_RULE_VIOLATION)
        return SchemaError(where, self._failure_message(value), CEL_RULE_VIOLATION)

    def _failure_message(self, value: Any) -> str:
        if self.message_program is not None:
            try:
                text = self.message_program.evaluate(value)
            except CELError:
                text = None
            if isinstance(text, str) and text.strip() and "\n" not in text:
                return text.strip()
        return self.message.strip() if self.message else f"failed rule: {self.source.strip()}"


@dataclass
class PlanNode:
    """The part of one schema node JSON Schema cannot check (its properties' defaults, CEL rules,
    list type), with the plans of the children that carry any."""

    defaults: dict[str, Any] = field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    list_type: str | None = None
    map_keys: tuple[str, ...] = ()
    properties: dict[str, PlanNode] = field(default_factory=dict)
    items: PlanNode | None = None
    additional: PlanNode | None = None
    defaults_below: bool = True  # whether any default sits here or deeper (set when built)

    def is_empty(self) -> bool:
        return not (self.defaults or self.rules or self.list_type or self.properties
                    or self.items or self.additional)


# ---------------------------------------------------------------------------- building


def build_plan(schema: Mapping[str, Any]) -> PlanNode | None:
    node = PlanNode(
        rules=tuple(_compile_rules(schema.get("x-kubernetes-validations") or ())),
        list_type=_list_type(schema),
        map_keys=tuple(schema.get("x-kubernetes-list-map-keys") or ()),
    )
    for name, child in (schema.get("properties") or {}).items():
        if "default" in child:
            node.defaults[name] = child["default"]
        child_plan = build_plan(child)
        if child_plan is not None:
            node.properties[name] = child_plan
    if isinstance(schema.get("items"), Mapping):
        node.items = build_plan(schema["items"])
    if isinstance(schema.get("additionalProperties"), Mapping):
        node.additional = build_plan(schema["additionalProperties"])
    children = [*node.properties.values(), node.items, node.additional]
    node.defaults_below = bool(node.defaults) or any(
        child is not None and child.defaults_below for child in children)
    return None if node.is_empty() else node


def _list_type(schema: Mapping[str, Any]) -> str | None:
    list_type = schema.get("x-kubernetes-list-type")
    return list_type if list_type in ("map", "set") else None


def _compile_rules(entries: Any) -> Iterator[Rule]:
    for entry in entries:
        source = str(entry.get("rule", ""))
        try:
            program = compile_rule(source)
        except CELError as exc:
            yield Rule(source, entry.get("message"), None, None, (), str(exc))
            continue
        if program.uses_old_self:
            continue  # transition rules compare with the stored object; there is none here
        yield Rule(source, entry.get("message"), program,
                   _message_program(entry.get("messageExpression")),
                   parse_field_path(entry.get("fieldPath") or ""))


def _message_program(source: Any) -> Program | None:
    if not isinstance(source, str):
        return None
    try:
        return compile_rule(source)
    except CELError:
        return None  # the static message is the documented fallback


def parse_field_path(text: str) -> Path:
    """`.spec.ports` or `.metadata['name']` (relative to the rule's node) as a path tuple."""
    steps: list[str | int] = []
    pos = 0
    while pos < len(text):
        match = _FIELD_PATH_STEP.match(text, pos)
        if match is None:
            return tuple(steps)  # a malformed fieldPath still reports at the rule's node
        steps.append(match.group(1) if match.group(1) is not None else match.group(2))
        pos = match.end()
    return tuple(steps)


# ---------------------------------------------------------------------------- walking


def apply_defaults(plan: PlanNode | None, value: Any) -> None:
    """Fill absent properties with schema defaults, in place, as the API server does."""
    if plan is None or not plan.defaults_below:
        return  # nothing to fill in this subtree
    if isinstance(value, dict):
        for name, default in plan.defaults.items():
            if name not in value:
                value[name] = default if type(default) in _IMMUTABLE else copy.deepcopy(default)
        for name, child in plan.properties.items():
            if name in value:
                apply_defaults(child, value[name])
        if plan.additional is not None:
            for item in value.values():
                apply_defaults(plan.additional, item)
    elif isinstance(value, list) and plan.items is not None:
        for item in value:
            apply_defaults(plan.items, item)


def check(plan: PlanNode | None, value: Any, path: Path, *,
          run_rules: bool) -> Iterator[SchemaError]:
    """CEL rule failures (if `run_rules`) and duplicate list entries, depth first."""
    if plan is None or value is None:
        return
    if run_rules:
        for rule in plan.rules:
            error = rule.check(value, path)
            if error is not None:
                yield error
    if isinstance(value, dict):
        yield from _check_children(plan, value, path, run_rules)
    elif isinstance(value, list):
        if plan.list_type is not None:
            yield from _duplicates(plan, value, path)
        for index, item in enumerate(value):
            yield from check(plan.items, item, (*path, index), run_rules=run_rules)


def _check_children(plan: PlanNode, value: dict[str, Any], path: Path,
                    run_rules: bool) -> Iterator[SchemaError]:
    for name, child in plan.properties.items():
        if name in value:
            yield from check(child, value[name], (*path, name), run_rules=run_rules)
    if plan.additional is not None:
        for key, item in value.items():
            yield from check(plan.additional, item, (*path, key), run_rules=run_rules)


def _duplicates(plan: PlanNode, items: list[Any], path: Path) -> Iterator[SchemaError]:
    seen: set[str] = set()
    for index, item in enumerate(items):
        key = _list_key(plan, item)
        if key is None:
            continue  # a map-list entry that is not an object is a schema violation already
        if key in seen:
            yield SchemaError(_duplicate_path(plan, path, index),
                              f"Duplicate value: {_describe_key(plan, item)}", DUPLICATE_LIST_KEY)
        seen.add(key)


def _list_key(plan: PlanNode, item: Any) -> str | None:
    if plan.list_type == "set":
        return json.dumps(item, sort_keys=True, default=str)
    if not isinstance(item, dict):
        return None
    return json.dumps([item.get(k) for k in plan.map_keys], sort_keys=True, default=str)


def _duplicate_path(plan: PlanNode, path: Path, index: int) -> Path:
    # With a single map key, point at the key field itself: that is what must change.
    if plan.list_type == "map" and len(plan.map_keys) == 1:
        return (*path, index, plan.map_keys[0])
    return (*path, index)


def _describe_key(plan: PlanNode, item: Any) -> str:
    if plan.list_type == "set":
        return show(item)
    return show({k: item.get(k) for k in plan.map_keys})
