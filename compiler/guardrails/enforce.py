"""Evaluate guardrail rules over the typed view, honouring the intents' waivers.

Runs on every `validate`, `compile`, `check` and `diff` (pipeline.py), on the model and posture
of that run, never from a render cache: verdicts depend on the guardrails, the waivers and the
clock. A violation is reported at the intent line that produced the offending value and names
the rule (a related location). Pure.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from ..diagnostics import Diagnostic, Location, Related, Severity, error
from ..k8s.cel import CELError, fields_read, names_used
from ..load import Policies
from ..model import Gateway, PortValidation, Target
from ..verdicts import VIOLATION, violation_message
from .rules import Rule, Selector, duplicate_rules, parse_rules
from .view import ClusterView, GatewayView, PortView

WAIVE_HINT = ("fix the value at this line, or waive the rule for this gateway in the intent's "
              "spec.guardrailWaivers (rule, reason, owner, expires)")


@dataclass(frozen=True, slots=True)
class Waiver:
    """An intent's waiver of one guardrail rule: its reason, owner, expiry and location."""

    gateway: str  # namespace/name of the intent
    rule: str
    reason: str
    owner: str
    expires: date | None  # None: not a valid date (reported)
    location: Location  # the waiver's `rule` line
    expires_location: Location

    def active(self, today: date) -> bool:
        return self.expires is not None and today <= self.expires


def load_rules(policies: Policies) -> tuple[list[Rule], list[Diagnostic]]:
    rules: list[Rule] = []
    problems: list[Diagnostic] = []
    for root in policies.guardrails:
        found, bad = parse_rules(root)
        rules += found
        problems += bad
    return rules, problems + duplicate_rules(rules)


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def load_waivers(policies: Policies) -> list[Waiver]:
    out = []
    for intent in sorted(policies.intents, key=lambda i: i.key):
        spec = intent.root.find(("spec",))
        for node in spec.seq("guardrailWaivers"):
            expires = node.find(("expires",))
            out.append(Waiver(intent.key, str(node.scalar("rule")), str(node.scalar("reason")),
                              str(node.scalar("owner")), _parse_date(str(expires.value)),
                              node.find(("rule",)).loc, expires.loc))
    return out


def check_waivers(waivers: Sequence[Waiver], rules: Sequence[Rule],
                  today: date) -> list[Diagnostic]:
    """Unknown rule names, impossible dates and expired waivers are errors."""
    known = {r.name for r in rules}
    out = []
    for w in waivers:
        if w.rule not in known:
            out.append(error("UnknownGuardrailRule", f"waiver names guardrail rule {w.rule!r}, "
                             "which no Guardrail defines", w.location,
                             "known rules: " + (", ".join(sorted(known)) or "(none)")))
        if w.expires is None:
            out.append(error("InvalidGuardrailWaiver", "waiver expiry is not a valid date",
                             w.expires_location, "write the last day it holds as YYYY-MM-DD"))
        elif not w.active(today):
            out.append(error("ExpiredGuardrailWaiver", f"waiver of guardrail rule {w.rule!r} "
                             f"(owner {w.owner}) expired on {w.expires.isoformat()}",
                             w.expires_location, "fix what the rule reports and delete the "
                             "waiver, or extend it after a new review"))
    return out


def selects(selector: Selector, target: Target, gw: Gateway | None,
            implementation: str | None) -> bool:
    """Every given selector field must match; gateway fields are ignored for cluster scope."""
    labels = dict(target.labels)
    if selector.clusters and target.name not in selector.clusters:
        return False
    if selector.environments and target.environment not in selector.environments:
        return False
    if any(labels.get(k) != v for k, v in selector.cluster_labels):
        return False
    if gw is None:
        return True
    return not (
        (selector.namespaces and gw.namespace not in selector.namespaces)
        or (selector.gateways and not {gw.name, gw.key} & set(selector.gateways))
        or (selector.gateway_classes and gw.class_name not in selector.gateway_classes)
        or (selector.implementations and implementation not in selector.implementations))


def intent_locations(policies: Policies) -> dict[str, Location]:
    """Where each intent's metadata stands (by gateway key): the fallback location of a
    violation. Taken before the compile lets go of the located trees."""
    out = {}
    for intent in policies.intents:
        meta = intent.root.find(("metadata",))
        out[intent.key] = meta.key_loc or meta.loc
    return out


def _port_location(names: frozenset[str], gw: Gateway, port: PortValidation,
                   fallback: Location) -> Location:
    """The intent line that produced the value the rule reads on this port."""
    v = port.validation
    certs = [lst.certificate.origin.location for lst in gw.listeners
             if lst.key in port.listeners and lst.certificate is not None]
    listeners = [lst.origin.location for lst in gw.listeners if lst.key in port.listeners]
    if "certificates" in names and certs:
        return certs[0]
    if v is not None:
        if "anchors" in names:
            return v.ca_origin.location
        if "restrictions" in names and v.restrictions.origin is not None:
            return v.restrictions.origin.location
        return v.mode_origin.location
    disabled = [e.origin.location for e in (gw.frontend.per_port if gw.frontend else ())
                if e.port == port.port]
    return (disabled or listeners or [fallback])[0]


def _gateway_location(names: frozenset[str], gw: Gateway, fallback: Location) -> Location:
    certs = [lst.certificate.origin.location for lst in gw.listeners if lst.certificate]
    if "certificates" in names and certs:
        return certs[0]
    return fallback


@dataclass(frozen=True, slots=True)
class _Subject:
    """One thing a rule is evaluated for: its variables, where a violation points, what to
    call it in a message."""

    env: dict[str, object]
    location: Location
    what: str
    gateway: str | None


def _subjects(rule: Rule, cluster: ClusterView, meta: Mapping[str, Location],
              names: frozenset[str]) -> Iterator[_Subject]:
    if rule.scope == "cluster":
        if selects(rule.selector, cluster.target, None, None):
            yield _Subject({"cluster": cluster.value}, cluster.target.origin.location,
                           "cluster", None)
        return
    for g in cluster.gateways:
        if not selects(rule.selector, cluster.target, g.model, str(g.value["implementation"])):
            continue
        fallback = meta.get(g.model.key, g.model.origin.location)
        if rule.scope == "gateway":
            yield _Subject({"cluster": cluster.value, "gateway": g.value},
                           _gateway_location(names, g.model, fallback),
                           f"gateway {g.model.key}", g.model.key)
            continue
        for p in g.ports:
            yield _port_subject(cluster, g, p, names, fallback)


def _port_subject(cluster: ClusterView, g: GatewayView, p: PortView, names: frozenset[str],
                  fallback: Location) -> _Subject:
    return _Subject({"cluster": cluster.value, "gateway": g.value, "port": p.value},
                    _port_location(names, g.model, p.model, fallback),
                    f"gateway {g.model.key} port {p.model.port}", g.model.key)


def _verdict(rule: Rule, subject: _Subject, cluster: str) -> Diagnostic | None:
    assert rule.program is not None
    related = (Related(rule.location, f"guardrail rule {rule.title}"),)
    try:
        ok = rule.program.evaluate(subject.env)
    except CELError as exc:
        return Diagnostic("GuardrailEvaluationError", Severity.ERROR,
                          f"guardrail rule {rule.title} fails on {subject.what}: {exc}",
                          rule.expression_location, "guard the expression, e.g. with has() "
                          "or `'key' in cluster.labels`", clusters=(cluster,))
    if ok is True:
        return None
    if not isinstance(ok, bool):
        return error("InvalidGuardrailRule", f"guardrail rule {rule.title} returns "
                     f"{type(ok).__name__} on {subject.what}, not bool",
                     rule.expression_location).in_clusters(cluster)
    return Diagnostic(VIOLATION, rule.severity,
                      violation_message(subject.what, rule.title, rule.message),
                      subject.location, WAIVE_HINT, clusters=(cluster,), related=related)


def reads_one_gateway(rule: Rule) -> bool:
    """Whether the rule's verdict on a subject reads nothing of any other gateway: `cluster`
    appears only as `cluster.<field>`, never as `cluster.gateways` (the one field that holds
    every gateway of the cluster). A delta compile re-evaluates such rules on the gateways it
    recompiles and keeps every other verdict (`compiler.delta.subcompile`)."""
    try:
        fields = fields_read(rule.source, "cluster")
    except CELError:
        return False
    return fields is not None and "gateways" not in fields


def enforce(views: Sequence[ClusterView], rules: Sequence[Rule], waivers: Sequence[Waiver],
            meta: Mapping[str, Location], today: date, *, certificates: bool
            ) -> list[Diagnostic]:
    """Every violation of every rule over every cluster view (`meta`: `intent_locations`).
    Without fetched certificates (`certificates=False`, i.e. `validate`) rules that read them
    are skipped."""
    active = {(w.gateway, w.rule) for w in waivers if w.active(today)}
    out: list[Diagnostic] = []
    for rule in rules:
        if rule.program is None or (rule.reads_certificates and not certificates):
            continue
        names = names_used(rule.source)
        for cluster in views:
            if "certificates" in names and not cluster.server_certificates_complete:
                continue  # not fetched (offline check/diff): reported as NotCheckedOffline
            for subject in _subjects(rule, cluster, meta, names):
                if subject.gateway is not None and (subject.gateway, rule.name) in active:
                    continue
                found = _verdict(rule, subject, cluster.target.name)
                if found is not None:
                    out.append(found)
    return out


def waivers_of(gateway: str, waivers: Sequence[Waiver], today: date) -> list[Waiver]:
    """The active waivers of one gateway (for `posture` and `explain`)."""
    return [w for w in waivers if w.gateway == gateway and w.active(today)]


