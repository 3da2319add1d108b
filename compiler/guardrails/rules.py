"""Guardrail documents: parse their rules and check each expression before any cluster is seen.

A rule is checked once, statically: it must compile (syntax, only the variables of its scope)
and, evaluated against two synthetic samples of the typed view (view.py), must run without a
type error or an unknown field and return a bool. Everything is located in the guardrail file.
Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..diagnostics import Diagnostic, Location, Severity, error
from ..k8s.cel import CELError, Expression, compile_expression, names_used
from ..located import Node
from .view import CERTIFICATE_FIELDS, SCOPES, samples


@dataclass(frozen=True, slots=True)
class Selector:
    """Where a rule applies: every field given must match; an empty field matches everything."""

    clusters: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()
    cluster_labels: tuple[tuple[str, str], ...] = ()
    namespaces: tuple[str, ...] = ()
    gateways: tuple[str, ...] = ()  # name or namespace/name
    gateway_classes: tuple[str, ...] = ()
    implementations: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule of a Guardrail document, parsed, with its CEL expression compiled once."""

    guardrail: str  # the Guardrail's metadata.name
    name: str
    scope: str  # "port" | "gateway" | "cluster"
    source: str  # the CEL text
    severity: Severity
    message: str
    selector: Selector
    location: Location  # the rule's `name` line
    expression_location: Location
    reads_certificates: bool  # needs fetched certificate data (skipped by `validate`)
    program: Expression | None  # None when the expression did not compile

    @property
    def title(self) -> str:
        return f"{self.guardrail}/{self.name}"


def _strings(node: Node | None, key: str) -> tuple[str, ...]:
    return tuple(str(item.value) for item in node.seq(key)) if node is not None else ()


def _selector(node: Node | None) -> Selector:
    if node is None:
        return Selector()
    labels = node.get("clusterLabels")
    return Selector(
        clusters=_strings(node, "clusters"), environments=_strings(node, "environments"),
        cluster_labels=tuple(sorted((k, str(v.value)) for k, v in labels.items()))
        if labels is not None else (),
        namespaces=_strings(node, "namespaces"), gateways=_strings(node, "gateways"),
        gateway_classes=_strings(node, "gatewayClasses"),
        implementations=_strings(node, "implementations"))


def parse_rules(root: Node) -> tuple[list[Rule], list[Diagnostic]]:
    """The rules of one Guardrail document (schema-checked) and the problems of their
    expressions."""
    meta, spec = root.find(("metadata",)), root.find(("spec",))
    guardrail = str(meta.scalar("name"))
    rules: list[Rule] = []
    problems: list[Diagnostic] = []
    for node in spec.seq("rules"):
        expr = node.find(("expression",))
        scope = str(node.scalar("scope"))
        program, found = check_expression(str(expr.value), scope, expr.loc)
        problems += found
        try:
            reads = bool(names_used(str(expr.value)) & CERTIFICATE_FIELDS)
        except CELError:
            reads = False
        rules.append(Rule(
            guardrail, str(node.scalar("name")), scope, str(expr.value),
            Severity(str(node.scalar("severity", "error"))), str(node.scalar("message")),
            _selector(node.get("selector")), node.find(("name",)).loc, expr.loc, reads,
            program if not found else None))
    return rules, problems


def check_expression(src: str, scope: str, where: Location) -> tuple[Expression | None,
                                                                       list[Diagnostic]]:
    """Compile `src` for `scope` and run it on the samples: unknown variables or fields, type
    errors and non-boolean results are errors at `where`."""
    variables = SCOPES[scope]
    hint = (f"a {scope}-scoped rule may use {', '.join(sorted(variables))}; "
            "docs/guardrails.md lists every field and its type")
    try:
        program = compile_expression(src, variables)
    except CELError as exc:
        return None, [error("InvalidGuardrailRule", f"guardrail expression does not compile: "
                            f"{exc}", where, hint)]
    for sample in samples(scope):
        try:
            value = program.evaluate(sample)
        except CELError as exc:
            return None, [error("InvalidGuardrailRule", f"guardrail expression fails on the "
                                f"typed view: {exc}", where, hint)]
        if not isinstance(value, bool):
            kind = type(value).__name__
            return None, [error("InvalidGuardrailRule", f"guardrail expression returns {kind}, "
                                "not bool", where, "a rule must be true when compliant, e.g. "
                                "`port.mode == 'AllowValidOnly'`")]
    return program, []


def duplicate_rules(rules: Sequence[Rule]) -> list[Diagnostic]:
    """Rule names are unique across all Guardrails: waivers name them."""
    seen: dict[str, Rule] = {}
    out = []
    for rule in sorted(rules, key=lambda r: r.location):
        first = seen.setdefault(rule.name, rule)
        if first is not rule:
            out.append(error("DuplicateGuardrailRule", f"guardrail rule {rule.name!r} is "
                             f"defined twice (first at {first.location})", rule.location,
                             "rule names are unique across all Guardrails (waivers name "
                             "them): rename one"))
    return out
