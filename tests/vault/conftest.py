"""Fixtures for tests that talk to a FakeVault, and test CA material made at test time.

Tests outside ``tests/vault`` can use the fixtures with
``from tests.vault.conftest import fake_vault, vault_client  # noqa: F401``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hvac  # type: ignore[import-untyped, unused-ignore]
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.vault.server import FakeVault

VaultClientFactory = Callable[..., hvac.Client]


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA bundle a client should trust
    cert: Path  # the server certificate (127.0.0.1)
    key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
             ) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=2)))


def make_ca(common_name: str, parent: Issued | None = None) -> Issued:
    """A CA certificate, self-signed or signed by ``parent``."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer = parent.key if parent else key
    issuer = parent.certificate.subject if parent else _name(common_name)
    certificate = (_builder(common_name, issuer, key.public_key())
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False, key_encipherment=False,
                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
                   .sign(signer, hashes.SHA256()))
    return Issued(certificate, key)


def make_server_cert(ca: Issued, address: str = "127.0.0.1") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))])
    certificate = (_builder(address, ca.certificate.subject, key.public_key())
                   .add_extension(san, critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .sign(ca.key, hashes.SHA256()))
    return Issued(certificate, key)


def write_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a 127.0.0.1 server certificate/key signed by it, written to disk."""
    ca = make_ca("FakeVault test CA")
    server = make_server_cert(ca)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca.write_text(ca.pem)
    files.cert.write_text(server.pem)
    files.key.write_bytes(server.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return files


@pytest.fixture
def fake_vault(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVault]:
    """A started FakeVault (HTTP, root token ``root``, KV v2 ``secret``, PKI ``pki``)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeVault() as vault:
        yield vault


@pytest.fixture
def vault_client(fake_vault: FakeVault) -> Iterator[VaultClientFactory]:
    """Make hvac clients for ``fake_vault`` (closed at teardown). ``token=""`` sends none."""
    clients: list[hvac.Client] = []

    def make(token: str = "root", namespace: str | None = None, url: str | None = None,
             verify: bool | str = True) -> hvac.Client:
        client = hvac.Client(url=url or fake_vault.url, token=token, namespace=namespace,
                             verify=verify, timeout=10)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.adapter.close()


@pytest.fixture
def tls_files(tmp_path: Path) -> TlsFiles:
    return write_tls_files(tmp_path)
