"""The dev PKI: files, determinism, and that real verifiers and TLS stacks accept it."""

from __future__ import annotations

import hashlib
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import DNSName  # the verifier's DNSName subject is this same class
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from compiler import pki

# Inside the fixed default validity window, so results do not depend on the clock.
VERIFY_AT = datetime(2027, 6, 1, tzinfo=UTC)
# Pins the bytes the example overlays embed; if this changes, every overlay changes.
GOLDEN_CA_CERT_SHA256 = "203826472cca2a827c2d9da366b7ac41c603ecad039b21c49cd96fff788c32c9"


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "dev"  # missing: create_dev_pki makes it
    pki.create_dev_pki(directory)
    return directory


def _cert(directory: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((directory / name).read_bytes())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- files -------------------------------------------------------------------------------


def test_files_have_expected_names_and_modes(pki_dir: Path) -> None:
    assert sorted(p.name for p in pki_dir.iterdir()) == sorted(pki.PKI_FILES)
    assert _mode(pki_dir) == 0o700
    for name in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        assert _mode(pki_dir / name) == 0o600


def test_keys_are_pkcs8_p256(pki_dir: Path) -> None:
    for name in ("ca-key.pem", "server-key.pem", "client-key.pem"):
        data = (pki_dir / name).read_bytes()
        assert data.startswith(b"-----BEGIN " + b"PRIVATE KEY-----")  # PKCS#8, unencrypted
        key = serialization.load_pem_private_key(data, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert isinstance(key.curve, ec.SECP256R1)


def test_create_returns_written_paths(tmp_path: Path) -> None:
    written = pki.create_dev_pki(tmp_path / "x")
    assert [p.name for p in written] == list(pki.PKI_FILES)
    assert all(p.is_file() for p in written)


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    pki.create_dev_pki(tmp_path)
    with pytest.raises(pki.PkiExistsError) as info:
        pki.create_dev_pki(tmp_path, seed="other")
    assert tmp_path / "ca-key.pem" in info.value.paths
    assert (tmp_path / "ca-cert.pem").read_bytes() == pki.generate_dev_pki()["ca-cert.pem"]


def test_overwrite_replaces_and_tightens_modes(tmp_path: Path) -> None:
    pki.create_dev_pki(tmp_path)
    (tmp_path / "server-key.pem").chmod(0o644)
    pki.create_dev_pki(tmp_path, seed="other", overwrite=True)
    assert _mode(tmp_path / "server-key.pem") == 0o600
    expected = pki.generate_dev_pki("other")
    assert all((tmp_path / n).read_bytes() == data for n, data in expected.items())


def test_refusal_happens_before_any_write(tmp_path: Path) -> None:
    (tmp_path / "client-key.pem").write_bytes(b"someone's key")
    with pytest.raises(pki.PkiExistsError):
        pki.create_dev_pki(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client-key.pem"]


def test_ensure_creates_once(tmp_path: Path) -> None:
    assert pki.ensure_dev_pki(tmp_path / "d") is True
    assert pki.ensure_dev_pki(tmp_path / "d") is False


# --- determinism -------------------------------------------------------------------------


def test_same_seed_is_byte_identical(tmp_path: Path) -> None:
    first = pki.create_dev_pki(tmp_path / "a")
    second = pki.create_dev_pki(tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert pki.generate_dev_pki() == pki.generate_dev_pki(pki.DEFAULT_SEED)


def test_default_ca_matches_golden_bytes() -> None:
    ca_pem = pki.generate_dev_pki()["ca-cert.pem"]
    assert hashlib.sha256(ca_pem).hexdigest() == GOLDEN_CA_CERT_SHA256


def test_other_seed_changes_every_file() -> None:
    default, other = pki.generate_dev_pki(), pki.generate_dev_pki("another seed")
    assert all(default[name] != other[name] for name in pki.PKI_FILES)


def test_random_seed_gives_fresh_keys(tmp_path: Path) -> None:
    pki.create_dev_pki(tmp_path / "a", seed=None)
    pki.create_dev_pki(tmp_path / "b", seed=None)
    for name in ("ca-key.pem", "ca-cert.pem"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes()


def test_derived_material_is_in_range() -> None:
    for role in ("ca", "server", "client", ""):
        assert 0 < pki.derive_serial("s", role) < 2**159
        assert pki.derive_private_key("s", role).private_numbers().private_value > 0
    assert pki.derive_serial("a", "bc") != pki.derive_serial("ab", "c")


def test_validity_window_is_fixed_by_default(pki_dir: Path) -> None:
    for name in ("ca-cert.pem", "server-cert.pem", "client-cert.pem"):
        cert = _cert(pki_dir, name)
        assert cert.not_valid_before_utc == datetime(2026, 1, 1, tzinfo=UTC)
        assert cert.not_valid_after_utc == datetime(2036, 1, 1, tzinfo=UTC)


# --- contents ----------------------------------------------------------------------------


def _subject(cert: x509.Certificate) -> tuple[str, str]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    org = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    return str(cn), str(org)


def test_ca_is_a_ca(pki_dir: Path) -> None:
    ca = _cert(pki_dir, "ca-cert.pem")
    assert _subject(ca) == ("Test CA", "Test Org")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)


@pytest.mark.parametrize(
    ("name", "common_name", "usage"),
    [
        ("server-cert.pem", "example.com", ExtendedKeyUsageOID.SERVER_AUTH),
        ("client-cert.pem", "client.example.com", ExtendedKeyUsageOID.CLIENT_AUTH),
    ],
)
def test_leaf_contents(pki_dir: Path, name: str, common_name: str,
                       usage: x509.ObjectIdentifier) -> None:
    ca, leaf = _cert(pki_dir, "ca-cert.pem"), _cert(pki_dir, name)
    assert _subject(leaf) == (common_name, "Test Org")
    assert leaf.issuer == ca.subject
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["example.com", "*.example.com"]
    assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


# --- verification by cryptography's verifier -------------------------------------------


def _policy(ca: x509.Certificate) -> PolicyBuilder:
    return PolicyBuilder().store(Store([ca])).time(VERIFY_AT)


@pytest.mark.parametrize("hostname", ["example.com", "www.example.com"])
def test_server_cert_verifies(pki_dir: Path, hostname: str) -> None:
    ca = _cert(pki_dir, "ca-cert.pem")
    verifier = _policy(ca).build_server_verifier(DNSName(hostname))
    chain = verifier.verify(_cert(pki_dir, "server-cert.pem"), [])
    assert chain[-1] == ca


def test_server_cert_rejects_other_names(pki_dir: Path) -> None:
    verifier = _policy(_cert(pki_dir, "ca-cert.pem")).build_server_verifier(
        DNSName("a.b.example.com"))
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki_dir, "server-cert.pem"), [])


def test_client_cert_verifies(pki_dir: Path) -> None:
    verifier = _policy(_cert(pki_dir, "ca-cert.pem")).build_client_verifier()
    verified = verifier.verify(_cert(pki_dir, "client-cert.pem"), [])
    assert verified.subjects is not None
    assert x509.DNSName("example.com") in verified.subjects


def test_client_cert_is_not_a_server_cert(pki_dir: Path) -> None:
    verifier = _policy(_cert(pki_dir, "ca-cert.pem")).build_server_verifier(
        DNSName("example.com"))
    with pytest.raises(VerificationError):
        verifier.verify(_cert(pki_dir, "client-cert.pem"), [])


# --- verification by the openssl binary ------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not on PATH")
@pytest.mark.parametrize(("name", "purpose"),
                         [("server-cert.pem", "sslserver"), ("client-cert.pem", "sslclient")])
def test_openssl_verify_agrees(pki_dir: Path, name: str, purpose: str) -> None:
    result = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca-cert.pem", "-purpose", purpose,
         "-attime", str(int(VERIFY_AT.timestamp())), name],
        cwd=pki_dir, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{name}: OK"


# --- a real TLS handshake --------------------------------------------------------------


def _server_context(directory: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server-cert.pem", directory / "server-key.pem")
    context.load_verify_locations(directory / "ca-cert.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _client_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca_file)
    context.load_cert_chain(cert_file, key_file)
    return context


def _serve_once(context: ssl.SSLContext, listener: socket.socket,
                outcome: dict[str, object]) -> None:
    # Runs in a thread: record everything, raise nothing (pytest treats that as failure).
    try:
        conn, _ = listener.accept()
        with context.wrap_socket(conn, server_side=True) as tls:
            outcome["peer"] = tls.getpeercert()
            tls.sendall(b"ok")
    except (ssl.SSLError, OSError) as exc:
        outcome["error"] = exc


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[object, dict[str, object]]:
    """Client result (bytes read or the exception) and what the server saw."""
    outcome: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        thread = threading.Thread(target=_serve_once, args=(server, listener, outcome))
        thread.start()
        result: object
        try:
            with socket.create_connection(listener.getsockname(), timeout=10) as raw, \
                    client.wrap_socket(raw, server_hostname="example.com") as tls:
                result = tls.recv(2)
        except (ssl.SSLError, OSError) as exc:
            result = exc
        thread.join(timeout=10)
    return result, outcome


def _clock_in_default_window() -> bool:
    return pki.DEFAULT_NOT_BEFORE < datetime.now(UTC) < pki.DEFAULT_NOT_AFTER


# The handshake uses OpenSSL's own clock, which cannot be pinned like the verifiers above.
needs_clock = pytest.mark.skipif(not _clock_in_default_window(),
                                 reason="system clock outside the dev PKI validity window")


@needs_clock
def test_mutual_tls_handshake_succeeds(pki_dir: Path) -> None:
    client = _client_context(pki_dir / "ca-cert.pem", pki_dir / "client-cert.pem",
                             pki_dir / "client-key.pem")
    result, outcome = _handshake(_server_context(pki_dir), client)
    assert result == b"ok", outcome.get("error")
    peer = outcome["peer"]
    assert isinstance(peer, dict)
    assert (("commonName", "client.example.com"),) in peer["subject"]


@needs_clock
def test_handshake_rejects_client_from_unrelated_ca(pki_dir: Path, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    other_ca, other_key = pki.make_ca("Other CA", not_before=now - timedelta(days=1),
                                      not_after=now + timedelta(days=1))
    cert, key = pki.issue_certificate(
        other_ca, other_key, common_name="client.example.com", dns_names=["example.com"],
        client=True, not_before=now - timedelta(days=1), not_after=now + timedelta(days=1),
    )
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    client = _client_context(pki_dir / "ca-cert.pem", tmp_path / "c.pem", tmp_path / "k.pem")
    result, outcome = _handshake(_server_context(pki_dir), client)
    # The server, not the client, must be the one refusing: it requires a trusted peer.
    assert isinstance(outcome.get("error"), ssl.SSLCertVerificationError)
    assert "peer" not in outcome
    assert result != b"ok"
