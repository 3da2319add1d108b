"""`emit_memo`: a gateway rendered for several clusters through one memo gives exactly the
units rendered without it, and the memo stays within its bound."""

from __future__ import annotations

import pytest

from compiler.emit_memo import EmitMemo
from compiler.k8s.validate import SchemaStore
from compiler.pipeline import Result, reference_grant_version, schema_roots
from compiler.render_units import Unit, render_unit
from tests.fleet_support import compile_fleet, make_fleet
from tests.support import REPO


def _units(result: Result, memo: EmitMemo | None) -> list[Unit]:
    """Every unit of the fleet, cluster by cluster, as one process computes them."""
    assert result.ok and result.model is not None and result.materials is not None
    store = SchemaStore(schema_roots(REPO))
    out = []
    for cluster in result.model.clusters:
        target = cluster.target
        pems = result.materials.ca_pems_for(target.certificate_source)
        version = reference_grant_version(store, target)
        out += [render_unit(gw, target, pems, store, envoy=True, grant_version=version,
                            memo=memo) for gw in cluster.gateways]
    return out


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Result:
    return compile_fleet(make_fleet(tmp_path_factory.mktemp("fleet"), 30, 5))


def test_units_through_the_memo_are_the_units_without_it(fleet: Result) -> None:
    memo = EmitMemo()
    assert _units(fleet, memo) == _units(fleet, None)
    # Not vacuous: most gateways are one object on several clusters (150 units, 30 gateways)
    assert memo.hits > 150


def test_a_full_memo_keeps_what_it_has_and_changes_nothing(fleet: Result) -> None:
    memo = EmitMemo(limit=40_000)
    assert _units(fleet, memo) == _units(fleet, None)
    assert 0 < memo.size <= 40_000 and memo.hits > 0
    assert memo.size == sum(size for _, _, size in memo.entries.values())


def test_the_self_check_verdict_comes_with_the_kept_envoy_config(
        fleet: Result, monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit whose Envoy config is taken from the memo still carries the Gateway/Envoy
    self-check's findings (here a planted one), as if it were checked again."""
    from compiler import render_units

    monkeypatch.setattr(render_units, "differences", lambda *args, **kwargs: ["planted"])
    memo = EmitMemo()
    units = _units(fleet, memo)
    assert memo.hits and units == _units(fleet, None)
    assert all(any(d.code == "InternalInconsistency" for d in unit.problems)
               for unit in units)
