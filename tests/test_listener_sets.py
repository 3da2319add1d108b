"""Tenant ListenerSets: strictness, posture and the Gateway/Envoy agreement."""

from __future__ import annotations

import shutil
from pathlib import Path

from compiler.posture import compute_posture
from tests.support import CASES, compile_root, prepare_case

OK = CASES / "ok-listenerset"


def test_a_weaker_port_is_an_error_under_strict(tmp_path: Path, test_pki: Path) -> None:
    root = prepare_case(OK, tmp_path, test_pki)
    relaxed = compile_root(root)
    assert relaxed.ok
    strict = compile_root(root, strict=True)
    codes = {d.code for d in strict.diagnostics if d.is_error}
    assert "ListenerSetWeakerPort" in codes and not strict.files


def test_asking_for_less_silences_the_warning(tmp_path: Path, test_pki: Path) -> None:
    root = prepare_case(OK, tmp_path, test_pki)
    intent = root / "policies" / "intent.yaml"
    intent.write_text(intent.read_text().replace(
        "    namespace: tenant-a\n", "    namespace: tenant-a\n"
        "    requireClientValidation: AllowInsecureFallback\n"))
    result = compile_root(root)
    assert result.ok and "ListenerSetWeakerPort" not in {d.code for d in result.diagnostics}


def test_posture_lists_tenant_listeners_on_the_parents_ports(tmp_path: Path,
                                                             test_pki: Path) -> None:
    result = compile_root(prepare_case(OK, tmp_path, test_pki))
    assert result.model is not None
    clusters = [c for c in result.model.clusters if c.target.name == "v161"]
    (cluster,) = compute_posture(clusters, result.materials)
    ports = {p.port: p for p in cluster.gateways[0].ports}
    assert ports[8443].listeners == ("https", "tenant-a.api")
    assert ports[8443].enforced_mode == "AllowValidOnly"
    assert ports[9443].listeners == ("tenant-a.partners",)
    assert ports[9443].enforced_mode == "AllowInsecureFallback"


def test_listener_set_objects_are_written_in_the_tenant_namespace(tmp_path: Path,
                                                                  test_pki: Path) -> None:
    result = compile_root(prepare_case(OK, tmp_path, test_pki))
    assert "out/v151/tenant-a/listenerset-tenant-a.yaml" in result.files
    gateway = result.files["out/v151/infra/gateway-platform.yaml"].decode()
    assert "a.example.com" not in gateway  # tenant listeners live in the ListenerSet only
    shutil.rmtree(tmp_path / OK.name)
