"""The dev PKI behind `mtlsc dev-pki DIR`: a CA, a server and a client certificate.

WARNING: with the default seed every key is derived from a string printed in this file,
so the dev private keys are public knowledge. They exist for demos and tests only; never
trust this CA outside a throwaway cluster. Pass `seed=None` for a private, random dev CA.

Why deterministic: the compiled example overlays embed the CA certificate PEM and must be
byte-identical on every machine. So keys come from HKDF over the seed, ECDSA signatures
use RFC 6979 (no per-signature randomness), serials are hashed from the seed, and the
validity window is fixed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SEED = "mtlsc-dev-pki"
DEFAULT_NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
DEFAULT_NOT_AFTER = datetime(2036, 1, 1, tzinfo=UTC)
ORGANIZATION = "Test Org"
DEV_DNS_NAMES = ("example.com", "*.example.com")

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server-cert.pem"
SERVER_KEY = "server-key.pem"
CLIENT_CERT = "client-cert.pem"
CLIENT_KEY = "client-key.pem"
# Written in this order; keys are the secret half of each pair.
PKI_FILES = (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY, CLIENT_CERT, CLIENT_KEY)
KEY_FILES = frozenset({CA_KEY, SERVER_KEY, CLIENT_KEY})

# Order n of the P-256 group (SEC 2); `cryptography` does not expose it.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_SERIAL_LIMIT = 2**159  # RFC 5280: at most 20 octets and positive


class PkiExistsError(FileExistsError):
    """Refusing to replace dev PKI files that are already there."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        names = ", ".join(str(p) for p in self.paths)
        super().__init__(f"refusing to overwrite existing dev PKI files: {names}")


# --- deterministic material -------------------------------------------------------------


def derive_private_key(seed: str, role: str) -> ec.EllipticCurvePrivateKey:
    """P-256 key for `role`, a pure function of (seed, role)."""
    okm = HKDF(
        algorithm=hashes.SHA256(),
        length=48,  # 128 bits more than the order, so the reduction bias is negligible
        salt=None,
        info=f"mtlsc dev-pki {role}".encode(),
    ).derive(seed.encode())
    # Map into [1, n-1]: zero is not a valid private scalar.
    scalar = int.from_bytes(okm, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def derive_serial(seed: str, role: str) -> int:
    """Positive serial below 2**159, a pure function of (seed, role)."""
    # NUL separators keep ("a", "bc") and ("ab", "c") apart.
    digest = hashlib.sha256(f"mtlsc dev-pki serial\0{seed}\0{role}".encode()).digest()
    return int.from_bytes(digest[:20], "big") % _SERIAL_LIMIT or 1


# --- certificate building blocks ---------------------------------------------------------


def _name(common_name: str, organization: str | None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _key_usage(*, digital_signature: bool, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,  # meaningless for EC keys
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _sign(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    # RFC 6979 signatures: the same inputs always give the same certificate bytes.
    return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)


def _base_builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
    serial: int | None, not_before: datetime, not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def make_ca(
    common_name: str, *, not_before: datetime, not_after: datetime,
    key: ec.EllipticCurvePrivateKey | None = None, organization: str | None = None,
    serial: int | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA; tests use it to build unrelated or expired CAs."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    name = _name(common_name, organization)
    public_key = key.public_key()
    builder = (
        _base_builder(name, name, public_key, serial, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=False, cert_sign=True), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
    )
    return _sign(builder, key), key


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    # Prefer the CA's own SKI so chain building matches on it, as openssl does.
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(
            _ec_public_key(ca_cert.public_key())
        )
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _ec_public_key(key: object) -> ec.EllipticCurvePublicKey:
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise TypeError("only EC issuers are supported")
    return key


def _subject_alt_name(dns_names: Iterable[str], uris: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    return x509.SubjectAlternativeName(names)


def _extended_key_usage(*, client: bool, server: bool) -> x509.ExtendedKeyUsage | None:
    usages = [ExtendedKeyUsageOID.SERVER_AUTH] if server else []
    usages += [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
    return x509.ExtendedKeyUsage(usages) if usages else None


def issue_certificate(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *, common_name: str,
    dns_names: Sequence[str] = (), uris: Sequence[str] = (), client: bool = False,
    server: bool = False, not_before: datetime, not_after: datetime,
    key: ec.EllipticCurvePrivateKey | None = None, organization: str | None = None,
    serial: int | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An end-entity certificate signed by `ca_cert`; no SAN extension when no names given."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    builder = (
        _base_builder(_name(common_name, organization), ca_cert.subject, key.public_key(),
                      serial, not_before, not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, cert_sign=False), critical=True)
        .add_extension(_authority_key_id(ca_cert), critical=False)
    )
    if dns_names or uris:
        builder = builder.add_extension(_subject_alt_name(dns_names, uris), critical=False)
    eku = _extended_key_usage(client=client, server=server)
    if eku is not None:
        builder = builder.add_extension(eku, critical=False)
    return _sign(builder, ca_key), key


# --- the dev PKI -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Leaf:
    """A leaf certificate of the dev PKI: its role (the file-name prefix), common name, and
    whether it serves as a TLS client or server certificate."""

    role: str
    common_name: str
    client: bool
    server: bool


_LEAVES = (
    _Leaf("server", "example.com", client=False, server=True),
    _Leaf("client", "client.example.com", client=True, server=False),
)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_dev_pki(
    seed: str = DEFAULT_SEED, not_before: datetime = DEFAULT_NOT_BEFORE,
    not_after: datetime = DEFAULT_NOT_AFTER,
) -> dict[str, bytes]:
    """File name -> PEM bytes for the whole dev PKI; a pure function of its arguments."""
    ca_cert, ca_key = make_ca(
        "Test CA", not_before=not_before, not_after=not_after, organization=ORGANIZATION,
        key=derive_private_key(seed, "ca"), serial=derive_serial(seed, "ca"),
    )
    files = {CA_CERT: _cert_pem(ca_cert), CA_KEY: _key_pem(ca_key)}
    for leaf in _LEAVES:
        cert, key = issue_certificate(
            ca_cert, ca_key, common_name=leaf.common_name, dns_names=DEV_DNS_NAMES,
            client=leaf.client, server=leaf.server, not_before=not_before,
            not_after=not_after, organization=ORGANIZATION,
            key=derive_private_key(seed, leaf.role), serial=derive_serial(seed, leaf.role),
        )
        files[f"{leaf.role}-cert.pem"] = _cert_pem(cert)
        files[f"{leaf.role}-key.pem"] = _key_pem(key)
    return files


def random_seed() -> str:
    """A fresh seed from os.urandom, for a dev CA nobody else can reproduce."""
    return secrets.token_hex(32)


def _prepare_directory(directory: Path) -> None:
    if directory.exists():
        return
    directory.mkdir(mode=0o700, parents=True)
    # mkdir's mode is filtered by the umask; be explicit since the keys live here.
    directory.chmod(0o700)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # Create with the final mode so a key is never readable by others, even briefly;
    # fchmod also tightens a pre-existing file being overwritten.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), mode)
        handle.write(data)


def create_dev_pki(
    directory: Path, *, seed: str | None = DEFAULT_SEED,
    not_before: datetime = DEFAULT_NOT_BEFORE, not_after: datetime = DEFAULT_NOT_AFTER,
    overwrite: bool = False,
) -> list[Path]:
    """Write the dev PKI into `directory`; `seed=None` gives random keys.

    Raises PkiExistsError before writing anything if a target exists and not `overwrite`.
    """
    targets = [directory / name for name in PKI_FILES]
    existing = [path for path in targets if path.exists()]
    if existing and not overwrite:
        raise PkiExistsError(existing)
    files = generate_dev_pki(seed if seed is not None else random_seed(), not_before, not_after)
    _prepare_directory(directory)
    for path in targets:
        _write_file(path, files[path.name], 0o600 if path.name in KEY_FILES else 0o644)
    return targets


def ensure_dev_pki(directory: Path, *, seed: str | None = DEFAULT_SEED) -> bool:
    """Create the dev PKI unless `ca-cert.pem` is already there; True when created.

    Stray key or cert files without a CA certificate are not clobbered: that raises
    PkiExistsError, because they may be someone's keys.
    """
    if (directory / CA_CERT).exists():
        return False
    create_dev_pki(directory, seed=seed)
    return True
