"""Envoy Gateway: clientRestrictions become a ClientTrafficPolicy that repeats the Gateway's
validation (its translator replaces the listener's CA set and mode with the policy's)."""

from __future__ import annotations

import copy
from pathlib import Path

from ruamel.yaml import YAML

from compiler.render.client_traffic_policy import policy_differences
from tests.support import CASES, compile_root, prepare_case

CASE = CASES / "profile-envoy-gateway-restrictions"
OUT = CASE / "expected" / "eg" / "ns"


def _load(name: str) -> dict:  # type: ignore[type-arg]
    return dict(YAML(typ="safe", pure=True).load((OUT / name).read_text(encoding="utf-8")))


def test_emitted_policies_repeat_the_gateway_validation() -> None:
    gateway = _load("gateway-gw.yaml")
    for name in ("clienttrafficpolicy-gw-mtls-8443.yaml", "clienttrafficpolicy-gw-mtls-9443.yaml"):
        assert policy_differences(gateway, _load(name)) == []


def test_the_self_check_sees_a_policy_that_would_change_the_port() -> None:
    gateway = _load("gateway-gw.yaml")
    policy = _load("clienttrafficpolicy-gw-mtls-9443.yaml")
    wrong_mode = copy.deepcopy(policy)
    wrong_mode["spec"]["tls"]["clientValidation"]["mode"] = "RequireAndVerify"
    fewer_cas = copy.deepcopy(policy)
    del fewer_cas["spec"]["tls"]["clientValidation"]["caCertificateRefs"][1]
    unvalidated = copy.deepcopy(policy)
    unvalidated["spec"]["targetRefs"][0]["sectionName"] = "nowhere"
    for bad in (wrong_mode, fewer_cas, unvalidated):
        assert len(policy_differences(gateway, bad)) == 1


def test_no_policy_where_the_intent_says_enforced_elsewhere() -> None:
    names = sorted(p.name for p in OUT.iterdir())
    assert [n for n in names if n.startswith("clienttrafficpolicy-")] == [
        "clienttrafficpolicy-gw-mtls-8443.yaml", "clienttrafficpolicy-gw-mtls-9443.yaml"]


def test_refusal_names_every_reason(tmp_path: Path, test_pki: Path) -> None:
    case = CASES / "profile-envoy-gateway-restrictions-refused"
    result = compile_root(prepare_case(case, tmp_path, test_pki))
    [refused] = [d for d in result.diagnostics if d.code == "RestrictionNotEnforced"]
    assert "envoy-gateway 1.7.2 has no clientValidation.mode" in refused.message
    assert "CA bundles live in shared-cas" in refused.message
    assert "tenant-a/api" in refused.message
    assert not result.ok
