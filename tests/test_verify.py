"""Certificate checks: every problem code from a constructed certificate, none for good input."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from compiler import pki, verify
from compiler.diagnostics import Severity
from compiler.verify import CertProblem

NOW = datetime(2027, 6, 1, tzinfo=UTC)
WINDOW = timedelta(days=30)
LONG_AGO = NOW - timedelta(days=365)
FAR_AHEAD = NOW + timedelta(days=365)
HOSTS = ("example.com", "www.example.com", "*.example.com")


# --- helpers -------------------------------------------------------------------------------


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey,
             encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption())


def _base64_chunks(*inputs: bytes) -> set[str]:
    """16-character runs of every PEM body: none may show up in a message."""
    chunks = set()
    for data in inputs:
        for body in re.findall(rb"-----BEGIN [A-Z ]+-----(.*?)-----END", data, re.DOTALL):
            flat = body.decode().replace("\n", "")
            chunks |= {flat[i:i + 16] for i in range(0, max(len(flat) - 16, 0), 8)}
    return chunks


def _assert_clean(problems: Iterable[CertProblem], *inputs: bytes) -> None:
    chunks = _base64_chunks(*inputs)
    for problem in problems:
        for text in (problem.message, problem.hint):
            assert "PRIVATE KEY" not in text and "-----BEGIN" not in text
            assert not any(chunk in text for chunk in chunks)


def _codes(problems: Sequence[CertProblem]) -> list[str]:
    return [p.code for p in problems]


def _bundle(data: bytes) -> list[CertProblem]:
    problems = verify.check_ca_bundle(data, now=NOW, warn_within=WINDOW)
    _assert_clean(problems, data)
    return problems


def _server(cert_pem: bytes, key_pem: bytes | None,
            hostnames: Sequence[str] = HOSTS) -> list[CertProblem]:
    problems = verify.check_server_certificate(
        cert_pem, key_pem, hostnames=hostnames, now=NOW, warn_within=WINDOW)
    _assert_clean(problems, cert_pem, key_pem or b"")
    return problems


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return pki.make_ca("Unit CA", not_before=LONG_AGO, not_after=FAR_AHEAD)


def _leaf(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], *,
          dns_names: Sequence[str] = ("example.com", "*.example.com"),
          not_before: datetime = LONG_AGO, not_after: datetime = FAR_AHEAD,
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return pki.issue_certificate(ca[0], ca[1], common_name="example.com", dns_names=dns_names,
                                 server=True, not_before=not_before, not_after=not_after)


# --- parsing -------------------------------------------------------------------------------


GARBLED = [
    b"",
    b"not a certificate at all",
    b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
]


@pytest.mark.parametrize("data", GARBLED)
def test_garbled_pem_is_invalid(data: bytes) -> None:
    certs, problems = verify.parse_pem_certificates(data)
    assert certs == []
    assert _codes(problems) == ["InvalidPEM"]
    _assert_clean(problems, data)


def test_truncated_block_is_invalid(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                                    ) -> None:
    pem = _pem(ca[0])
    certs, problems = verify.parse_pem_certificates(pem + pem[: len(pem) // 2])
    assert certs == [ca[0]]
    assert _codes(problems) == ["InvalidPEM"]
    assert "END" in problems[0].message
    _assert_clean(problems, pem)


def test_parse_keeps_order_and_skips_comments() -> None:
    files = pki.generate_dev_pki()
    data = b"# a comment\n" + files["server-cert.pem"] + b"junk\n" + files["ca-cert.pem"]
    certs, problems = verify.parse_pem_certificates(data)
    assert problems == []
    assert [c.subject.rfc4514_string() for c in certs] == [
        "O=Test Org,CN=example.com", "O=Test Org,CN=Test CA"]


# --- CA bundles ----------------------------------------------------------------------------


def test_good_bundle_has_no_problems(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                                     ) -> None:
    other, _ = pki.make_ca("Other CA", not_before=LONG_AGO, not_after=FAR_AHEAD)
    assert _bundle(_pem(ca[0]) + _pem(other)) == []


def test_dev_pki_ca_is_a_good_bundle() -> None:
    assert _bundle(pki.generate_dev_pki()["ca-cert.pem"]) == []


def test_empty_bundle_is_invalid() -> None:
    assert _codes(_bundle(b"\n")) == ["InvalidPEM"]


def test_expired_ca() -> None:
    expired, _ = pki.make_ca("Old CA", not_before=LONG_AGO, not_after=NOW - timedelta(days=1))
    problems = _bundle(_pem(expired))
    assert _codes(problems) == ["CertificateExpired"]
    assert "2027-05-31T00:00:00Z" in problems[0].message
    assert "CN=Old CA" in problems[0].message
    assert problems[0].severity is Severity.ERROR


def test_not_yet_valid_ca() -> None:
    future, _ = pki.make_ca("New CA", not_before=NOW + timedelta(days=1), not_after=FAR_AHEAD)
    problems = _bundle(_pem(future))
    assert _codes(problems) == ["CertificateNotYetValid"]
    assert "2027-06-02T00:00:00Z" in problems[0].message


def test_ca_expiring_soon_is_a_warning() -> None:
    soon, _ = pki.make_ca("Soon CA", not_before=LONG_AGO, not_after=NOW + timedelta(days=10))
    problems = _bundle(_pem(soon))
    assert _codes(problems) == ["CertificateExpiringSoon"]
    assert problems[0].severity is Severity.WARNING
    assert "2027-06-11T00:00:00Z" in problems[0].message


def test_expiry_boundaries() -> None:
    edge, _ = pki.make_ca("Edge CA", not_before=LONG_AGO, not_after=NOW)
    # notAfter is inclusive: valid (but expiring) at that instant, expired one second later.
    assert _codes(_bundle(_pem(edge))) == ["CertificateExpiringSoon"]
    later = verify.check_ca_bundle(_pem(edge), now=NOW + timedelta(seconds=1),
                                   warn_within=WINDOW)
    assert _codes(later) == ["CertificateExpired"]
    assert verify.check_ca_bundle(_pem(edge), now=NOW - WINDOW - timedelta(seconds=1),
                                  warn_within=WINDOW) == []


def test_naive_now_is_utc(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    assert verify.check_ca_bundle(_pem(ca[0]), now=NOW.replace(tzinfo=None),
                                  warn_within=WINDOW) == []


def test_leaf_in_bundle_is_not_a_ca(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                                    ) -> None:
    leaf, _ = _leaf(ca)
    problems = _bundle(_pem(ca[0]) + _pem(leaf))
    assert _codes(problems) == ["NotACertificateAuthority"]
    assert "#2" in problems[0].message and "CN=example.com" in problems[0].message


def test_private_key_in_bundle(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    for key_pem in (_key_pem(ca[1]), ca[1].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())):
        problems = _bundle(_pem(ca[0]) + key_pem)  # _bundle also checks messages are clean
        assert _codes(problems) == ["PrivateKeyInBundle"]


def test_bundle_reports_every_problem(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                                      ) -> None:
    expired, _ = pki.make_ca("Old CA", not_before=LONG_AGO, not_after=NOW - timedelta(days=1))
    leaf, key = _leaf(ca)
    data = _pem(expired) + _key_pem(key) + _pem(leaf) + GARBLED[2]
    assert sorted(_codes(_bundle(data))) == [
        "CertificateExpired", "InvalidPEM", "NotACertificateAuthority", "PrivateKeyInBundle"]


# --- server certificates -------------------------------------------------------------------


def test_good_server_certificate(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    leaf, key = _leaf(ca)
    assert _server(_pem(leaf) + _pem(ca[0]), _key_pem(key)) == []
    assert _server(_pem(leaf), None) == []


def test_dev_pki_server_certificate_is_good() -> None:
    files = pki.generate_dev_pki()
    assert _server(files["server-cert.pem"], files["server-key.pem"]) == []


def test_expired_server_certificate(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                                    ) -> None:
    leaf, key = _leaf(ca, not_after=NOW - timedelta(hours=1))
    problems = _server(_pem(leaf), _key_pem(key))
    assert _codes(problems) == ["CertificateExpired"]
    assert "2027-05-31T23:00:00Z" in problems[0].message


def test_chain_certificates_are_checked(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                                        ) -> None:
    soon, _ = pki.make_ca("Soon CA", not_before=LONG_AGO, not_after=NOW + timedelta(days=1))
    leaf, key = _leaf(ca)
    problems = _server(_pem(leaf) + _pem(soon), _key_pem(key))
    assert _codes(problems) == ["CertificateExpiringSoon"]
    assert "chain certificate #2" in problems[0].message


def test_server_garbled_pem() -> None:
    assert _codes(_server(b"garbage", None)) == ["InvalidPEM"]


@pytest.mark.parametrize(
    ("dns_names", "hostname", "covered"),
    [
        (["example.com"], "example.com", True),
        (["Example.COM"], "example.com.", True),
        (["*.example.com"], "a.example.com", True),
        (["*.example.com"], "A.Example.com", True),
        (["*.example.com"], "a.b.example.com", False),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], ".example.com", False),
        (["*.example.com"], "*.example.com", True),
        (["a.example.com"], "*.example.com", False),
        (["example.com"], "*.example.com", False),
        (["*.b.example.com"], "*.example.com", False),
        (["f*.example.com"], "foo.example.com", False),
        (["*oo.example.com"], "foo.example.com", False),
        (["a.*.example.com"], "a.b.example.com", False),
        (["*.com"], "example.com", False),
        (["*.*.example.com"], "a.b.example.com", False),
        ([], "example.com", False),
    ],
)
def test_covers_hostname(dns_names: list[str], hostname: str, covered: bool) -> None:
    assert verify.covers_hostname(dns_names, hostname) is covered


@given(st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,3}", fullmatch=True),
       st.from_regex(r"[a-z0-9]{1,10}\.[a-z]{2,6}", fullmatch=True))
def test_wildcard_covers_exactly_one_label(prefix: str, base: str) -> None:
    one_label = "." not in prefix
    assert verify.covers_hostname([f"*.{base}"], f"{prefix}.{base}") is one_label


def test_hostname_not_covered(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    leaf, key = _leaf(ca)
    problems = _server(_pem(leaf), _key_pem(key), ["a.b.example.com", "example.org"])
    assert _codes(problems) == ["HostnameNotCovered", "HostnameNotCovered"]
    assert "'a.b.example.com'" in problems[0].message
    assert "*.example.com" in problems[0].message


def test_common_name_is_not_used(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    leaf, key = _leaf(ca, dns_names=())  # CN=example.com but no SAN at all
    problems = _server(_pem(leaf), _key_pem(key), ["example.com"])
    assert _codes(problems) == ["HostnameNotCovered"]
    assert "none" in problems[0].message


def test_key_mismatch(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
    leaf, _ = _leaf(ca)
    other_key = ec.generate_private_key(ec.SECP256R1())
    problems = _server(_pem(leaf), _key_pem(other_key))
    assert _codes(problems) == ["KeyMismatch"]
    assert verify.fingerprint_sha256(leaf) in problems[0].message


_KEY_LABEL = "PRIVATE " + "KEY"  # built at run time: no key-shaped PEM is committed
GARBAGE_KEY = (f"-----BEGIN {_KEY_LABEL}-----\nAAAAAAAAAAAAAAAAAAAAAAAA\n"
               f"-----END {_KEY_LABEL}-----\n").encode()


@pytest.mark.parametrize("kind", ["garbage", "encrypted", "certificate", "truncated"])
def test_invalid_private_key(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
                             kind: str) -> None:
    leaf, key = _leaf(ca)
    key_pem = {
        "garbage": GARBAGE_KEY,
        "encrypted": _key_pem(key, serialization.BestAvailableEncryption(b"pw")),
        "certificate": _pem(leaf),
        "truncated": _key_pem(key)[:80],
    }[kind]
    problems = _server(_pem(leaf), key_pem)  # _server also checks messages are clean
    assert _codes(problems) == ["InvalidPrivateKey"]


# --- description ---------------------------------------------------------------------------


def test_fingerprint_is_sha256_of_der() -> None:
    cert = x509.load_pem_x509_certificate(pki.generate_dev_pki()["ca-cert.pem"])
    expected = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    assert verify.fingerprint_sha256(cert) == expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected)


def test_describe_has_public_facts_only(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
                                        ) -> None:
    cert, _ = pki.issue_certificate(
        ca[0], ca[1], common_name="svc", dns_names=["svc.example.com"],
        uris=["spiffe://example.com/ns/default/sa/svc"], client=True,
        not_before=datetime(2026, 1, 1, tzinfo=UTC), not_after=datetime(2027, 1, 1, tzinfo=UTC),
    )
    facts = verify.describe(cert)
    assert facts == {
        "subject": "CN=svc",
        "issuer": "CN=Unit CA",
        "serialNumber": format(cert.serial_number, "x"),
        "notBefore": "2026-01-01T00:00:00Z",
        "notAfter": "2027-01-01T00:00:00Z",
        "fingerprintSha256": verify.fingerprint_sha256(cert),
        "dnsNames": ["svc.example.com"],
        "uris": ["spiffe://example.com/ns/default/sa/svc"],
        "ipAddresses": [],
    }


def test_problem_becomes_diagnostic() -> None:
    problem = _bundle(b"")[0]
    diagnostic = problem.to_diagnostic()
    assert (diagnostic.code, diagnostic.severity, diagnostic.hint) == (
        "InvalidPEM", Severity.ERROR, problem.hint)
