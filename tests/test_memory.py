"""What keeps a large compile's memory small changes nothing: a lean compile (`Options.lean`,
what `mtlsc compile` and `check` run) gives the same files, diagnostics and model as a full
one; gateways that resolve alike on several clusters are one object; a node's Origin is made
once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from compiler.diagnostics import Location
from compiler.located import Node
from compiler.model import Gateway, Origin
from compiler.model_share import Sharing
from compiler.precedence import origin
from tests.fleet_support import compile_fleet, make_fleet
from tests.support import CASES, compile_root, prepare_case

PREFIXES = ("ok-", "guardrail-", "profile-", "gep91-", "warn-", "cert-", "sem-")
LEAN_CASES = sorted(p for p in CASES.iterdir() if p.is_dir() and p.name.startswith(PREFIXES))


@pytest.mark.parametrize("case", LEAN_CASES, ids=lambda p: p.name)
def test_lean_compile_equals_full_compile(case: Path, tmp_path: Path, test_pki: Path) -> None:
    root = prepare_case(case, tmp_path, test_pki)
    full = compile_root(root)
    lean = compile_root(root, lean=True)
    assert lean.files == full.files
    assert lean.diagnostics == full.diagnostics
    assert lean.model == full.model
    assert lean.waivers == full.waivers and lean.pins == full.pins
    # ... and holds none of what only explain, posture and diff read
    assert lean.placements == [] and lean.posture == ()
    if lean.policies is not None and lean.model is not None:
        assert lean.policies.intents == [] and lean.policies.documents == []


def test_gateways_resolved_alike_are_one_object(tmp_path: Path) -> None:
    result = compile_fleet(make_fleet(tmp_path, intents=12, clusters=3))
    assert result.ok and result.model is not None
    by_key: dict[str, list[Gateway]] = {}
    for cluster in result.model.clusters:
        for gw in cluster.gateways:
            by_key.setdefault(gw.key, []).append(gw)
    shared = 0
    for gateways in by_key.values():
        for i, gw in enumerate(gateways):
            for other in gateways[:i]:
                assert (gw == other) == (gw is other)  # equal means the same object
                shared += gw is other
    assert shared > 0


def test_sharing_keeps_values_and_shares_equal_parts(tmp_path: Path) -> None:
    result = compile_fleet(make_fleet(tmp_path, intents=4, clusters=2))
    assert result.model is not None
    gw = result.model.clusters[0].gateways[0]
    share = Sharing()
    assert share(gw) is gw
    assert share(replace(gw)) is gw  # an equal copy: the first object
    renamed = replace(gw, listeners=(*gw.listeners[:-1],
                                     replace(gw.listeners[-1], name="other")))
    made = share(renamed)
    assert made == renamed and made is not gw
    assert made.routes is gw.routes and made.ports is gw.ports
    assert all(a is b for a, b in zip(made.listeners[:-1], gw.listeners[:-1], strict=True))
    assert share(replace(renamed)) is made  # both variants are known


def test_origin_is_made_once_per_node() -> None:
    node = Node("x", Location("policies/a.yaml", 3, 5))
    first = origin(node)
    assert origin(node) is first
    node.layer = "cluster c1 (o)"  # layering relabels: a new origin, never a stale one
    again = origin(node)
    assert again.layer == "cluster c1 (o)" and again.location == first.location
    node.loc = Location("policies/a.yaml", 4, 5)
    assert origin(node).location.line == 4


def test_equal_restrictions_written_elsewhere_stay_apart(tmp_path: Path) -> None:
    """`ClientRestrictions.origin` is left out of `==`, yet guardrail violations and the
    ClientTrafficPolicy point at it: a cluster override repeating the base's restrictions
    must keep its own origin, so such gateways (and their frontends/ports) are not shared."""
    result = compile_fleet(make_fleet(tmp_path, intents=12, clusters=2))
    assert result.model is not None
    gw = next(g for c in result.model.clusters for g in c.gateways
              if g.frontend is not None and g.frontend.default is not None)
    assert gw.frontend is not None and gw.frontend.default is not None
    default = gw.frontend.default
    elsewhere = Origin(Location("policies/overrides/o.yaml", 9, 7), "cluster c1 (o)")
    moved = replace(default, restrictions=replace(default.restrictions, origin=elsewhere))
    copy = replace(gw, frontend=replace(gw.frontend, default=moved),
                   ports=tuple(replace(p, validation=moved) if p.validation == default else p
                               for p in gw.ports))
    assert copy == gw  # what `==` sees ...
    share = Sharing()
    assert share(gw) is gw
    made = share(copy)
    assert made is not gw  # ... is not all there is
    assert made.frontend is not None and made.frontend.default is not None
    assert made.frontend.default.restrictions.origin == elsewhere
    assert all(p.validation.restrictions.origin == elsewhere for p in made.ports
               if p.validation is not None and p.validation == default)
    assert made.routes is gw.routes and made.listeners is gw.listeners  # the rest is shared


@pytest.mark.parametrize("case", ["ok-default-only", "guardrail-violation"])
def test_a_lean_compile_computes_the_posture_only_for_guardrails(
        case: str, tmp_path: Path, test_pki: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing reads the posture of a lean compile without guardrail rules, so it is skipped
    (a fleet-sized pass); with rules it is what the rules read."""
    from compiler import pipeline

    calls: list[int] = []
    real = pipeline.compute_posture

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "compute_posture", counted)
    root = prepare_case(CASES / case, tmp_path, test_pki)
    compile_root(root, lean=True)
    assert len(calls) == (1 if case.startswith("guardrail-") else 0)
    compile_root(root)
    assert len(calls) == (2 if case.startswith("guardrail-") else 1)
