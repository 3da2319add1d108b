"""Validation of rendered objects the way the API server would judge them."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from compiler.k8s.schema_import import object_meta_schema
from compiler.k8s.validate import (
    CEL_RULE_VIOLATION,
    DUPLICATE_LIST_KEY,
    SCHEMA_VIOLATION,
    KubeSchema,
    SchemaError,
    SchemaStore,
    shipped_schema_root,
    validate_object,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
GW = "gateway.networking.k8s.io/v1"
PER_PORT = ("spec", "tls", "frontend", "perPort")
CA_REFS = ("spec", "tls", "frontend", "default", "validation", "caCertificateRefs")
RULES_SKIPPED = "some validation rules were not checked"


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore([SCHEMAS])


def schema(store: SchemaStore, kind: str, bundle: str = "v1.5.1", channel: str = "standard",
           api_version: str = GW) -> KubeSchema:
    found = store.get(bundle, channel, api_version, kind)
    assert found is not None
    return found


def ca_ref(name: str) -> dict[str, str]:
    return {"group": "", "kind": "ConfigMap", "name": name}


def gateway() -> dict[str, Any]:
    return {
        "apiVersion": GW, "kind": "Gateway",
        "metadata": {"name": "edge", "namespace": "infra",
                     "labels": {"app.kubernetes.io/part-of": "mtlsc"}},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [
                {"name": "https", "port": 443, "protocol": "HTTPS",
                 "hostname": "api.example.com",
                 "tls": {"mode": "Terminate", "certificateRefs": [{"name": "api-cert"}]}},
                {"name": "admin", "port": 8443, "protocol": "HTTPS",
                 "tls": {"certificateRefs": [{"name": "admin-cert"}]}},
                {"name": "http", "port": 80, "protocol": "HTTP"},
            ],
            "tls": {"frontend": {
                "default": {"validation": {"caCertificateRefs": [ca_ref("clients-ca")]}},
                "perPort": [{"port": 8443, "tls": {"validation": {
                    "caCertificateRefs": [ca_ref("admin-ca")],
                    "mode": "AllowInsecureFallback"}}}],
            }},
        },
    }


def route() -> dict[str, Any]:
    return {
        "apiVersion": GW, "kind": "HTTPRoute",
        "metadata": {"name": "api", "namespace": "apps"},
        "spec": {
            "parentRefs": [{"name": "edge", "namespace": "infra", "sectionName": "https"}],
            "hostnames": ["api.example.com"],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                       "backendRefs": [{"name": "api", "port": 8080}]}],
        },
    }


def grant(api_version: str = "gateway.networking.k8s.io/v1beta1") -> dict[str, Any]:
    return {
        "apiVersion": api_version, "kind": "ReferenceGrant",
        "metadata": {"name": "allow-infra", "namespace": "certs"},
        "spec": {"from": [{"group": GW.split("/")[0], "kind": "Gateway", "namespace": "infra"}],
                 "to": [{"group": "", "kind": "ConfigMap", "name": "clients-ca"}]},
    }


def config_map() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "clients-ca", "namespace": "certs"},
            "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\n..."}}


def only(errors: list[SchemaError], code: str) -> list[SchemaError]:
    return [e for e in errors if e.code == code]


def paths(errors: list[SchemaError]) -> set[tuple[str | int, ...]]:
    return {e.path for e in errors}


# ---------------------------------------------------------------------------- Gateway


@pytest.mark.parametrize("bundle", ["v1.5.1", "v1.6.1"])
@pytest.mark.parametrize("channel", ["standard", "experimental"])
def test_valid_gateway_with_frontend_tls_passes(store: SchemaStore, bundle: str,
                                                channel: str) -> None:
    assert validate_object(schema(store, "Gateway", bundle, channel), gateway()) == []


def test_duplicate_per_port_ports(store: SchemaStore) -> None:
    obj = gateway()
    per_port = obj["spec"]["tls"]["frontend"]["perPort"]
    per_port.append(copy.deepcopy(per_port[0]))
    errors = validate_object(schema(store, "Gateway"), obj)
    assert [(e.path, e.message) for e in only(errors, CEL_RULE_VIOLATION)] == [
        (PER_PORT, "Port for TLS configuration must be unique within the Gateway")]
    assert [e.path for e in only(errors, DUPLICATE_LIST_KEY)] == [(*PER_PORT, 1, "port")]
    assert len(errors) == 2


def test_duplicate_listener_names(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["listeners"][2]["name"] = "https"
    errors = validate_object(schema(store, "Gateway"), obj)
    cel = only(errors, CEL_RULE_VIOLATION)
    assert [(e.path, e.message) for e in cel] == [
        (("spec", "listeners"), "Listener name must be unique within the Gateway")]
    assert [e.path for e in only(errors, DUPLICATE_LIST_KEY)] == [
        ("spec", "listeners", 2, "name")]


def test_http_listener_with_tls(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["listeners"][2]["tls"] = {"certificateRefs": [{"name": "c"}]}
    errors = validate_object(schema(store, "Gateway"), obj)
    assert [(e.path, e.message, e.code) for e in errors] == [
        (("spec", "listeners"), "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']",
         CEL_RULE_VIOLATION)]


def test_ca_certificate_ref_limit_depends_on_bundle(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["tls"]["frontend"]["default"]["validation"]["caCertificateRefs"] = [
        ca_ref(f"ca-{i}") for i in range(9)]
    errors = validate_object(schema(store, "Gateway", "v1.5.1"), obj)
    too_many = [e for e in errors if e.path == CA_REFS]
    assert [e.code for e in too_many] == [SCHEMA_VIOLATION]
    assert "must have at most 8 items" in too_many[0].message
    assert validate_object(schema(store, "Gateway", "v1.6.1"), obj) == []


def test_unknown_field(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["listeners"][0]["tlsMode"] = "Terminate"
    errors = validate_object(schema(store, "Gateway"), obj)
    assert [(e.path, e.code) for e in errors] == [
        (("spec", "listeners", 0, "tlsMode"), SCHEMA_VIOLATION)]
    assert errors[0].message == 'unknown field "spec.listeners[0].tlsMode"'


def test_wrong_type(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["listeners"][0]["port"] = "443"
    errors = validate_object(schema(store, "Gateway"), obj)
    assert only(errors, SCHEMA_VIOLATION)[1].path == ("spec", "listeners", 0, "port")
    assert "must be of type integer" in only(errors, SCHEMA_VIOLATION)[1].message
    # A wrong type blocks CEL evaluation, as on the API server, and says so.
    assert errors[0].path == () and RULES_SKIPPED in errors[0].message
    assert not only(errors, CEL_RULE_VIOLATION)


def test_bad_enum_mode(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["tls"]["frontend"]["perPort"][0]["tls"]["validation"]["mode"] = "Optional"
    errors = validate_object(schema(store, "Gateway"), obj)
    bad = [e for e in errors if e.path]
    assert [e.path for e in bad] == [(*PER_PORT, 0, "tls", "validation", "mode")]
    assert bad[0].message.startswith('Unsupported value: "Optional": supported values: ')


def test_blocking_errors_skip_rules_but_not_list_checks(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["listeners"][2]["name"] = "https"  # breaks a CEL rule and the list-map key
    obj["spec"]["listeners"][2]["protocol"] = 80  # wrong type: blocking
    errors = validate_object(schema(store, "Gateway"), obj)
    assert not only(errors, CEL_RULE_VIOLATION)
    assert [e.path for e in only(errors, DUPLICATE_LIST_KEY)] == [
        ("spec", "listeners", 2, "name")]
    assert RULES_SKIPPED in errors[0].message
    obj["spec"]["listeners"][2].update(protocol="HTTP", extra=1)  # unknown field: not blocking
    errors = validate_object(schema(store, "Gateway"), obj)
    assert [e.code for e in errors] == [CEL_RULE_VIOLATION, SCHEMA_VIOLATION, DUPLICATE_LIST_KEY]


def test_frontend_tls_is_unknown_before_v1_5(store: SchemaStore) -> None:
    errors = validate_object(schema(store, "Gateway", "v1.4.0"), gateway())
    assert [(e.path, e.code, e.message) for e in errors] == [
        (("spec", "tls"), SCHEMA_VIOLATION, 'unknown field "spec.tls"')]


def test_defaults_apply_before_rules_and_input_is_not_mutated(store: SchemaStore) -> None:
    obj = gateway()
    before = copy.deepcopy(obj)
    # "admin" has no tls.mode: the default (Terminate) must satisfy the HTTPS mode rule.
    assert validate_object(schema(store, "Gateway"), obj) == []
    assert obj == before


def test_rule_evaluation_errors_are_failures(store: SchemaStore) -> None:
    obj = gateway()
    del obj["spec"]["listeners"][1]["tls"]["certificateRefs"]
    [error] = validate_object(schema(store, "Gateway"), obj)
    assert error.code == CEL_RULE_VIOLATION
    assert error.path == ("spec", "listeners", 1, "tls")
    assert error.message == ("no such key: certificateRefs evaluating rule: certificateRefs or "
                             "options must be specified when mode is Terminate")


def test_patterns_use_re2_end_of_text_semantics(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["listeners"][2]["name"] = "http\n"  # Python's `$` would accept this
    errors = validate_object(schema(store, "Gateway"), obj)
    assert [e.path for e in errors] == [("spec", "listeners", 2, "name")]
    assert "should match" in errors[0].message


def test_address_formats(store: SchemaStore) -> None:
    obj = gateway()
    obj["spec"]["addresses"] = [{"type": "IPAddress", "value": "10.0.0.1"},
                                {"value": "fd00::1"}, {"type": "Hostname", "value": "lb.local"}]
    assert validate_object(schema(store, "Gateway"), obj) == []
    obj["spec"]["addresses"] = [{"type": "IPAddress", "value": "10.0.0.300"}]
    errors = validate_object(schema(store, "Gateway"), obj)
    assert [e.path for e in errors] == [("spec", "addresses", 0)]
    assert "exactly one" in errors[0].message


# ---------------------------------------------------------------------------- HTTPRoute


def test_valid_route_passes(store: SchemaStore) -> None:
    assert validate_object(schema(store, "HTTPRoute"), route()) == []


def test_path_prefix_must_start_with_slash(store: SchemaStore) -> None:
    obj = route()
    obj["spec"]["rules"][0]["matches"][0]["path"]["value"] = "v1"
    errors = validate_object(schema(store, "HTTPRoute"), obj)
    assert [(e.path, e.code, e.message) for e in errors] == [
        (("spec", "rules", 0, "matches", 0, "path"), CEL_RULE_VIOLATION,
         "value must be an absolute path and start with '/' when type one of "
         "['Exact', 'PathPrefix']")]


def test_route_timeouts_compare_durations(store: SchemaStore) -> None:
    obj = route()
    obj["spec"]["rules"][0]["timeouts"] = {"request": "10s", "backendRequest": "1m"}
    errors = validate_object(schema(store, "HTTPRoute"), obj)
    assert [(e.path, e.message) for e in errors] == [
        (("spec", "rules", 0, "timeouts"),
         "backendRequest timeout cannot be longer than request timeout")]
    obj["spec"]["rules"][0]["timeouts"]["backendRequest"] = "5s"
    assert validate_object(schema(store, "HTTPRoute"), obj) == []


# ---------------------------------------------------------------------------- ReferenceGrant


@pytest.mark.parametrize(("bundle", "api_version"), [
    ("v1.4.0", "gateway.networking.k8s.io/v1beta1"),
    ("v1.5.1", "gateway.networking.k8s.io/v1beta1"),
    ("v1.5.1", "gateway.networking.k8s.io/v1"),
])
def test_valid_reference_grant(store: SchemaStore, bundle: str, api_version: str) -> None:
    found = schema(store, "ReferenceGrant", bundle, api_version=api_version)
    assert validate_object(found, grant(api_version)) == []


def test_reference_grant_v1_is_not_served_in_v1_4(store: SchemaStore) -> None:
    assert store.get("v1.4.0", "standard", GW, "ReferenceGrant") is None


def test_invalid_reference_grant(store: SchemaStore) -> None:
    obj = grant()
    obj["spec"]["from"][0]["namespace"] = "Infra_NS"
    del obj["spec"]["to"][0]["kind"]
    found = schema(store, "ReferenceGrant", api_version=obj["apiVersion"])
    errors = validate_object(found, obj)
    assert paths(only(errors, SCHEMA_VIOLATION)) == {
        (), ("spec", "from", 0, "namespace"), ("spec", "to", 0, "kind")}
    assert "Required value" in {e.message for e in errors}


def test_api_version_and_kind_must_match_the_schema(store: SchemaStore) -> None:
    obj = grant()
    obj["kind"] = "Gateway"
    errors = validate_object(schema(store, "ReferenceGrant"), obj)  # the v1 schema
    assert {("apiVersion",), ("kind",)} <= paths(errors)


# ---------------------------------------------------------------------------- ConfigMap


def test_config_map_resolves_for_any_bundle(store: SchemaStore) -> None:
    found = store.get("v9.9.9", "whatever", "v1", "ConfigMap")
    assert found is not None
    assert found.document["properties"]["metadata"] == object_meta_schema()
    assert validate_object(found, config_map()) == []


@pytest.mark.parametrize(("key", "code"), [
    ("bad key", SCHEMA_VIOLATION), ("x" * 254, SCHEMA_VIOLATION), ("ca/crt", SCHEMA_VIOLATION),
    ("..ca", CEL_RULE_VIOLATION), (".", CEL_RULE_VIOLATION),
])
def test_config_map_bad_key(store: SchemaStore, key: str, code: str) -> None:
    obj = config_map()
    obj["data"][key] = "x"
    errors = validate_object(schema(store, "ConfigMap", api_version="v1"), obj)
    assert code in {e.code for e in errors}
    located = [e for e in errors if e.path]
    assert located and all(e.path in {("data", key), ("data",)} for e in located)


def test_config_map_other_rules(store: SchemaStore) -> None:
    obj = config_map()
    obj["binaryData"] = {"ca.crt": "!!not base64!!"}
    obj["immutable"] = "yes"
    obj["extra"] = 1
    errors = validate_object(schema(store, "ConfigMap", api_version="v1"), obj)
    assert {("binaryData", "ca.crt"), ("immutable",), ("extra",)} <= paths(errors)
    obj.update(binaryData={"ca.crt": "AAEC"}, immutable=True)
    del obj["extra"]
    [error] = validate_object(schema(store, "ConfigMap", api_version="v1"), obj)
    assert error.message == "data and binaryData must not have the same key"


# ---------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(("metadata", "path"), [
    ({"name": "Edge"}, ("metadata", "name")),
    ({"name": "a" * 254}, ("metadata", "name")),
    ({"namespace": "infra"}, ("metadata", "name")),
    ({"name": "edge", "namespace": "in.fra"}, ("metadata", "namespace")),
    ({"name": "edge", "labels": {"bad key!": "v"}}, ("metadata", "labels", "bad key!")),
    ({"name": "edge", "labels": {"k": "v" * 64}}, ("metadata", "labels", "k")),
    ({"name": "edge", "labels": {"-x.io/k": "v"}}, ("metadata", "labels", "-x.io/k")),
    ({"name": "edge", "annotations": {"a/b/c": "v"}}, ("metadata", "annotations", "a/b/c")),
    ({"name": "edge", "uid": 5}, ("metadata", "uid")),
    ({"name": "edge", "nickname": "e"}, ("metadata", "nickname")),
])
def test_metadata_checks(store: SchemaStore, metadata: dict[str, Any],
                         path: tuple[str, ...]) -> None:
    obj = gateway()
    obj["metadata"] = metadata
    errors = [e for e in validate_object(schema(store, "Gateway"), obj) if e.path]
    assert [e.path for e in errors] == [path]


def test_name_may_be_generated(store: SchemaStore) -> None:
    obj = gateway()
    obj["metadata"] = {"generateName": "edge-", "creationTimestamp": None}
    assert validate_object(schema(store, "Gateway"), obj) == []


# ---------------------------------------------------------------------------- store


def test_store_lookups(store: SchemaStore) -> None:
    assert store.available() == [(v, c) for v in ("v1.4.0", "v1.5.1", "v1.6.1")
                                 for c in ("experimental", "standard")]
    first = schema(store, "Gateway")
    assert store.get("1.5.1", "standard", GW, "Gateway") is first  # "v" prefix optional
    assert first.source["bundleVersion"] == "v1.5.1"
    assert store.get("v1.5.1", "standard", "example.com/v1", "Gateway") is None  # wrong group
    assert store.get("v1.5.1", "standard", GW, "../../kubernetes/configmap") is None
    assert store.get("v1.5.1", "../x", GW, "Gateway") is None
    assert store.get("v2.0.0", "standard", GW, "Gateway") is None
    assert store.get("v1.4.0", "standard", GW, "ListenerSet") is None


def test_first_root_wins(tmp_path: Path) -> None:
    override = tmp_path / "gateway-api" / "v1.5.1" / "standard"
    override.mkdir(parents=True)
    source = SCHEMAS / "gateway-api" / "v1.5.1" / "standard" / "gateway.v1.json"
    document = json.loads(source.read_text(encoding="utf-8"))
    document["properties"]["spec"]["properties"]["gatewayClassName"]["maxLength"] = 3
    (override / "gateway.v1.json").write_text(json.dumps(document), encoding="utf-8")
    shutil.copy(source.with_name("httproute.v1.json"), override)
    local = SchemaStore([tmp_path, SCHEMAS])
    errors = validate_object(schema(local, "Gateway"), gateway())
    assert ("spec", "gatewayClassName") in paths(errors)
    assert local.get("v1.6.1", "standard", GW, "Gateway") is not None  # falls through


def test_shipped_schema_root_finds_the_checkout() -> None:
    root = shipped_schema_root()
    assert root is not None and (root / "gateway-api").is_dir()


@pytest.mark.parametrize(("pattern", "value", "ok"), [
    ("^(?i)abc$", "ABC", True),  # a flag group after `^`: valid RE2, refused by a translation
    ("^(?i)abc$", "abd", False),
    ("^\\pL+$", "héllo", True),
    ("^\\pL+$", "h3llo", False),
    ("^[[:upper:]]\\z", "A", True),
    ("^a$", "a\n", False),  # RE2's `$` is the end of the text
])
def test_schema_patterns_run_on_re2(pattern: str, value: str, ok: bool) -> None:
    found = KubeSchema({"type": "object", "properties": {"v": {"type": "string",
                                                               "pattern": pattern}}})
    errors = validate_object(found, {"v": value})
    assert (errors == []) is ok, errors


def test_invalid_schema_pattern_is_an_error_not_a_crash() -> None:
    found = KubeSchema({"type": "object", "properties": {"v": {"type": "string",
                                                               "pattern": "(?=a)"}}})
    (problem,) = validate_object(found, {"v": "a"})
    assert problem.path == ("v",)


CTP = "gateway.envoyproxy.io/v1alpha1"


def _policy(**validation: Any) -> dict[str, Any]:
    return {"apiVersion": CTP, "kind": "ClientTrafficPolicy",
            "metadata": {"name": "gw-mtls-8443", "namespace": "ns"},
            "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                     "name": "gw", "sectionName": "https"}],
                     "tls": {"clientValidation": {
                         "mode": "RequireAndVerify",
                         "caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}],
                         **validation}}}}


def test_client_traffic_policy_resolves_for_any_bundle(store: SchemaStore) -> None:
    for bundle, channel in (("v1.5.1", "standard"), ("v1.6.1", "experimental")):
        found = store.get(bundle, channel, CTP, "ClientTrafficPolicy")
        assert found is not None
        assert found.source["implementationVersion"] == "v1.9.0"
    assert validate_object(found, _policy(subjectAltNames={
        "dnsNames": [{"type": "Exact", "value": "client.example.com"}]})) == []


@pytest.mark.parametrize(("change", "path"), [
    ({"mode": "AllowValidOnly"}, ("spec", "tls", "clientValidation", "mode")),
    ({"subjectAltNames": {"dns": ["x"]}}, ("spec", "tls", "clientValidation", "subjectAltNames")),
    ({"spiffe": True}, ("spec", "tls", "clientValidation")),
])
def test_client_traffic_policy_schema_refuses(store: SchemaStore, change: dict[str, Any],
                                              path: tuple[str, ...]) -> None:
    found = store.get("v1.6.1", "standard", CTP, "ClientTrafficPolicy")
    assert found is not None
    paths = [tuple(p.path[:len(path)]) for p in validate_object(found, _policy(**change))]
    assert path in paths


def test_client_traffic_policy_target_kind_rule(store: SchemaStore) -> None:
    found = store.get("v1.6.1", "standard", CTP, "ClientTrafficPolicy")
    assert found is not None
    obj = _policy()
    obj["spec"]["targetRefs"][0]["kind"] = "HTTPRoute"
    assert [p.code for p in validate_object(found, obj)] == [CEL_RULE_VIOLATION]
