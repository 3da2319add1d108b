"""Organisation guardrails: CEL rules over the typed view of each cluster, gateway and port
(docs/guardrails.md)."""

from __future__ import annotations

from .enforce import (
    Waiver,
    check_waivers,
    enforce,
    intent_locations,
    load_rules,
    load_waivers,
    reads_one_gateway,
    waivers_of,
)
from .rules import Rule, Selector
from .view import ClusterView, build_views

__all__ = ["ClusterView", "Rule", "Selector", "Waiver", "build_views", "check_waivers",
           "enforce", "intent_locations", "load_rules", "load_waivers", "reads_one_gateway",
           "waivers_of"]
