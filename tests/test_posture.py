"""The effective posture: golden text per profile case, the comparison diff uses, the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from compiler.cli import main
from compiler.posture import (
    FALLBACK,
    FALLBACK_NO_CA,
    NONE,
    STRENGTH,
    VALID_ONLY,
    Anchor,
    ClusterPosture,
    GatewayPosture,
    PortPosture,
    Restriction,
    compare,
    compute_posture,
)
from compiler.posture_render import render, to_data
from tests.support import CASES, compile_root, prepare_case

EXTRA = ("ok-seed-per-port", "ok-listenerset", "warn-restrictions-unknown-implementation")
POSTURE_CASES = sorted(p for p in CASES.iterdir() if p.is_dir() and (p / "expected").is_dir()
                       and (p.name.startswith("profile-") or p.name in EXTRA))


@pytest.mark.parametrize("case", POSTURE_CASES, ids=lambda p: p.name)
def test_posture_golden(case: Path, tmp_path: Path, test_pki: Path,
                        update_goldens: bool) -> None:
    result = compile_root(prepare_case(case, tmp_path, test_pki))
    assert result.ok and result.model is not None
    clusters = [c for c in result.model.clusters if c.gateways]
    text = render(compute_posture(clusters, result.materials), "text") + "\n"
    golden = case / "posture.txt"
    if update_goldens:
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def _port(mode: str = VALID_ONLY, anchors: tuple[Anchor, ...] = (),
          restrictions: tuple[Restriction, ...] = ()) -> PortPosture:
    return PortPosture(443, ("https",), "default", mode, mode, anchors, restrictions, (), ())


def _cluster(port: PortPosture) -> tuple[ClusterPosture, ...]:
    return (ClusterPosture("c", (GatewayPosture("ns", "gw", "cls", "istio", None,
                                                (port,)),)),)


A = Anchor("ns/ca", "CN=A", "aa" * 32, "2030-01-01T00:00:00Z")
B = Anchor("ns/ca", "CN=B", "bb" * 32, "2030-01-01T00:00:00Z")
SAN = Restriction("subjectAltName", ("x.example.com",), "yes", "kgateway listener tls.options")


@pytest.mark.parametrize(("old", "new", "direction"), [
    (_port(VALID_ONLY), _port(FALLBACK), "weaker"),
    (_port(FALLBACK), _port(NONE), "weaker"),
    (_port(NONE), _port(VALID_ONLY), "stronger"),
    (_port(anchors=(A,)), _port(anchors=(A, B)), "weaker"),
    (_port(anchors=(A, B)), _port(anchors=(A,)), "stronger"),
    (_port(restrictions=(SAN,)), _port(), "weaker"),
    (_port(restrictions=(replace(SAN, enforced="no"),)), _port(restrictions=(SAN,)),
     "stronger"),
])
def test_compare_says_which_way_a_port_moved(old: PortPosture, new: PortPosture,
                                             direction: str) -> None:
    (change,) = compare(_cluster(old), _cluster(new))
    assert (change.cluster, change.gateway, change.port, change.direction) == \
        ("c", "ns/gw", 443, direction)


def test_compare_of_equal_postures_is_empty() -> None:
    assert compare(_cluster(_port(anchors=(A,))), _cluster(_port(anchors=(A,)))) == ()


def test_posture_command_json_and_markdown(example: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["posture", "--root", str(example), "--cluster", "demo",
                                "--format", "json", "-q"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    (cluster,) = data["clusters"]
    modes = {(g["name"], p["port"]): p["enforced_mode"] for g in cluster["gateways"]
             for p in g["ports"]}
    assert modes[("mtls", 8443)] == VALID_ONLY and modes[("mtls", 8444)] == FALLBACK
    anchor = cluster["gateways"][0]["ports"][0]["anchors"][0]
    assert len(anchor["fingerprint"]) == 64 and anchor["not_after"].endswith("Z")
    done = runner.invoke(main, ["posture", "--root", str(example), "--cluster", "demo",
                                "--format", "markdown", "-q"])
    assert done.exit_code == 0 and "| 8444 | https-8444 | perPort |" in done.stdout


def test_posture_command_refuses_a_broken_repository(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "x.yaml").write_text("kind: Nonsense\n")
    done = CliRunner().invoke(main, ["posture", "--root", str(tmp_path), "-q"])
    assert done.exit_code == 1 and "clusters" not in done.stdout


def test_posture_data_is_json_ready() -> None:
    data = to_data(_cluster(_port(anchors=(A,), restrictions=(SAN,))))
    assert json.loads(json.dumps(data)) == data


_modes = st.sampled_from([NONE, FALLBACK_NO_CA, FALLBACK, VALID_ONLY])
_anchor_sets = st.frozensets(st.sampled_from([A, B]))


@given(_modes, _modes, _anchor_sets, _anchor_sets)
def test_compare_is_antisymmetric(mode_a: str, mode_b: str, anchors_a: frozenset[Anchor],
                                  anchors_b: frozenset[Anchor]) -> None:
    """What is weaker from a to b is stronger from b to a, and nothing changes from a to a."""
    a = _cluster(_port(mode_a, tuple(sorted(anchors_a, key=lambda x: x.fingerprint))))
    b = _cluster(_port(mode_b, tuple(sorted(anchors_b, key=lambda x: x.fingerprint))))
    flip = {"weaker": "stronger", "stronger": "weaker", "changed": "changed"}
    forward = sorted((c.direction, c.what.split(" ")[0]) for c in compare(a, b))
    backward = sorted((flip[c.direction], c.what.split(" ")[0]) for c in compare(b, a))
    assert [d for d, _ in forward].count("weaker") == [d for d, _ in backward].count("weaker")
    assert [d for d, _ in forward].count("stronger") == \
        [d for d, _ in backward].count("stronger")
    assert compare(a, a) == ()
    assert (STRENGTH[mode_b] < STRENGTH[mode_a]) == any(
        c.direction == "weaker" and c.what.startswith("mode") for c in compare(a, b))
