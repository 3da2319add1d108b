"""Property tests: over random gateways, the GEP-91 rules hold for what the compiler emits.

The oracle below reads only the *emitted* Gateway object and applies GEP-91 as the API defines
it (perPort by port for HTTPS listeners, else default; an omitted perPort mode means
AllowValidOnly). It shares no code with the compiler's resolver.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.emit import to_yaml
from compiler.layering import check_references, place
from compiler.load import load_texts
from compiler.precedence import Capabilities
from compiler.render.gateway_api import render_gateway
from compiler.resolve import resolve

PORTS = [443, 8443, 8444, 9443]
CAS = ["ca-a", "ca-b", "ca-c"]
MODES = ["AllowValidOnly", "AllowInsecureFallback"]
TARGET = {
    "apiVersion": "mtlsc.dev/v1alpha1", "kind": "ClusterTarget", "metadata": {"name": "c1"},
    "spec": {"gatewayAPI": {"version": "v1.5.1", "channel": "standard"},
             "implementations": {"agentgateway": "agentgateway"}, "certificateSource": "s"},
}


@st.composite
def listeners(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Listeners that never conflict: each port gets one protocol family, distinct hostnames."""
    ports = draw(st.lists(st.sampled_from(PORTS), min_size=1, max_size=4, unique=True))
    out: list[dict[str, Any]] = []
    for port in ports:
        family = draw(st.sampled_from(["HTTPS", "HTTPS", "HTTP", "TLS"]))
        hosts = draw(st.lists(st.sampled_from(["a.example.com", "b.example.com", None]),
                              min_size=1, max_size=3, unique=True))
        for i, host in enumerate(hosts):
            protocol = family if family != "HTTPS" else draw(st.sampled_from(["HTTPS", "TLS"])) \
                if i else "HTTPS"
            item: dict[str, Any] = {"name": f"l{port}-{i}", "port": port, "protocol": protocol}
            if host:
                item["hostname"] = host
            if protocol == "HTTPS":
                item["certificate"] = "srv"
            out.append(item)
    return out


@st.composite
def validation(draw: st.DrawFn, *, per_port: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["mode"] = draw(st.sampled_from(MODES))
    if draw(st.integers(0, 4)) > 0:
        out["caBundles"] = draw(st.lists(st.sampled_from(CAS), min_size=1, max_size=3,
                                         unique=True))
    if per_port and draw(st.integers(0, 5)) == 0:
        out = {"disabled": True}
    return out


@st.composite
def intents(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"gatewayClassName": "agentgateway", "clusters": ["c1"],
                            "listeners": draw(listeners())}
    cv: dict[str, Any] = {}
    if draw(st.booleans()):
        cv["default"] = draw(validation(per_port=False))
    ports = draw(st.lists(st.sampled_from(PORTS), max_size=3))  # may repeat: duplicates
    if ports:
        cv["perPort"] = [{"port": p, **draw(validation(per_port=True))} for p in ports]
    if cv:
        spec["clientValidation"] = cv
    return {"apiVersion": "mtlsc.dev/v1alpha1", "kind": "GatewayIntent",
            "metadata": {"name": "gw", "namespace": "ns"}, "spec": spec}


def compile_one(intent: dict[str, Any], max_refs: int = 8) -> tuple[Any, list[Any]]:
    texts = {"intent.yaml": to_yaml(intent, header=False).decode(),
             "target.yaml": to_yaml(TARGET, header=False).decode()}
    policies, diags = load_texts(texts)
    assert not diags, diags
    diags = check_references(policies)
    placement, found = place(policies.intents[0], policies.targets[0], policies.overrides)
    gateway, more = resolve(placement, Capabilities(True, max_refs))
    return gateway, [*diags, *found, *more]


def gep91_oracle(gateway: dict[str, Any]) -> dict[int, tuple[str, tuple[str, ...]] | None]:
    """Per HTTPS port of an emitted Gateway: (mode, CA names) or None (no validation)."""
    frontend = gateway["spec"].get("tls", {}).get("frontend")
    out: dict[int, tuple[str, tuple[str, ...]] | None] = {}
    for listener in gateway["spec"]["listeners"]:
        if listener["protocol"] != "HTTPS":
            continue
        port = listener["port"]
        if frontend is None:
            out[port] = None
            continue
        entry = next((p for p in frontend.get("perPort", []) if p["port"] == port), None)
        validation = entry["tls"].get("validation") if entry else \
            frontend["default"].get("validation")
        out[port] = None if validation is None else (
            validation.get("mode", "AllowValidOnly"),
            tuple(r["name"] for r in validation["caCertificateRefs"]))
    return out


def codes(diags: list[Any]) -> list[str]:
    return [d.code for d in diags]


SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(intents())
def test_emitted_gateway_gives_the_resolved_validation(intent: dict[str, Any]) -> None:
    gateway, diags = compile_one(intent)
    if any(d.is_error for d in diags):
        return
    emitted = render_gateway(gateway).obj
    oracle = gep91_oracle(emitted)
    model = {p.port: None if p.validation is None else
             (p.validation.mode.value, tuple(r.name for r in p.validation.ca_bundles))
             for p in gateway.ports}
    assert model == oracle


@SETTINGS
@given(intents())
def test_emitted_validation_is_fully_explicit(intent: dict[str, Any]) -> None:
    gateway, diags = compile_one(intent)
    if any(d.is_error for d in diags):
        return
    frontend = render_gateway(gateway).obj["spec"].get("tls", {}).get("frontend")
    if frontend is None:
        return
    validations = [frontend["default"].get("validation")]
    validations += [p["tls"].get("validation") for p in frontend.get("perPort", [])]
    for v in filter(None, validations):
        assert v["mode"] in MODES
        assert v["caCertificateRefs"]
        assert all(r["kind"] == "ConfigMap" and r["group"] == "" for r in v["caCertificateRefs"])


@SETTINGS
@given(intents())
def test_inheritance_and_api_default(intent: dict[str, Any]) -> None:
    """An omitted perPort mode is the default's mode, or AllowValidOnly without a default."""
    gateway, diags = compile_one(intent)
    if any(d.is_error for d in diags):
        return
    cv = intent["spec"].get("clientValidation", {})
    default = cv.get("default")
    for entry in cv.get("perPort", []):
        resolved = next(e for e in gateway.frontend.per_port if e.port == entry["port"])
        if entry.get("disabled"):
            assert resolved.validation is None
            continue
        expected_mode = entry.get("mode") or (default or {}).get("mode") or "AllowValidOnly"
        assert resolved.validation.mode.value == expected_mode
        expected_cas = entry.get("caBundles") or default["caBundles"]
        assert [r.name for r in resolved.validation.ca_bundles] == expected_cas


@SETTINGS
@given(intents())
def test_only_https_listeners_are_affected_and_share_per_port(intent: dict[str, Any]) -> None:
    gateway, _ = compile_one(intent)
    https = {}
    for lst in intent["spec"]["listeners"]:
        if lst["protocol"] == "HTTPS":
            https.setdefault(lst["port"], set()).add(lst["name"])
    assert {p.port: set(p.listeners) for p in gateway.ports} == https


@SETTINGS
@given(intents())
def test_errors_and_warnings(intent: dict[str, Any]) -> None:
    gateway, diags = compile_one(intent)
    found = codes(diags)
    cv = intent["spec"].get("clientValidation", {})
    default = cv.get("default")
    https_ports = {lst["port"] for lst in intent["spec"]["listeners"]
                   if lst["protocol"] == "HTTPS"}
    per_ports = [e["port"] for e in cv.get("perPort", [])]
    assert ("DuplicatePerPort" in found) == (len(per_ports) != len(set(per_ports)))
    missing_ca = (default is not None and "caBundles" not in default) or any(
        not e.get("disabled") and "caBundles" not in e and default is None
        for e in cv.get("perPort", []))
    assert ("MissingCACertificate" in found) == missing_ca
    if any(d.is_error for d in diags):
        return
    assert ("PerPortWithoutHTTPSListener" in found) == bool(set(per_ports) - https_ports)
    none_ports = {p.port for p in gateway.ports if p.source.value == "none"}
    assert found.count("NoClientValidation") == len(none_ports)
    insecure = [p for p in gateway.ports
                if p.validation and p.validation.mode.value == "AllowInsecureFallback"]
    assert found.count("InsecureFrontendValidationMode") == len(insecure)


@SETTINGS
@given(intents(), st.integers(1, 3))
def test_ca_reference_limit(intent: dict[str, Any], limit: int) -> None:
    _, diags = compile_one(intent, max_refs=limit)
    if "MissingCACertificate" in codes(diags) or "DuplicatePerPort" in codes(diags):
        return
    cv = intent["spec"].get("clientValidation", {})
    lists = [cv["default"].get("caBundles", [])] if "default" in cv else []
    lists += [e.get("caBundles", []) for e in cv.get("perPort", [])]
    assert ("TooManyCACertificateRefs" in codes(diags)) == any(len(x) > limit for x in lists)
