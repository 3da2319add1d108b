"""Certificate checks before use: pure functions over PEM bytes that return problems.

Everything here may end up in CI logs, so messages carry public certificate data only
(subjects, SANs, dates, fingerprints) and never the bytes of the input files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from compiler.diagnostics import Diagnostic, Location, Severity


@dataclass(frozen=True)
class CertProblem:
    """A problem with a certificate, before it is placed at the intent line that references it."""

    code: str
    message: str
    hint: str
    severity: Severity = Severity.ERROR

    def to_diagnostic(self, location: Location | None = None) -> Diagnostic:
        return Diagnostic(self.code, self.severity, self.message, location, self.hint)


# One PEM block: a label and everything up to the matching END line (or end of input,
# which is how truncated blocks are caught).
_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)(?:-----END \1-----|\Z)", re.DOTALL
)
_CERT_LABEL = b"CERTIFICATE"
_PARSE_ERRORS = (
    ValueError, x509.InvalidVersion, x509.DuplicateExtension, x509.UnsupportedGeneralNameType,
)


@dataclass(frozen=True)
class _Block:
    """One PEM block of an input file, not yet parsed; `complete`: its END line is there."""

    index: int  # 1-based position among all PEM blocks, for messages
    label: bytes
    raw: bytes
    complete: bool


def _pem_blocks(data: bytes) -> list[_Block]:
    blocks = []
    for index, match in enumerate(_PEM_BLOCK.finditer(data), start=1):
        complete = match.group(0).endswith(b"-----END " + match.group(1) + b"-----")
        blocks.append(_Block(index, match.group(1), match.group(0), complete))
    return blocks


def _invalid_pem(message: str) -> CertProblem:
    return CertProblem(
        "InvalidPEM", message,
        "provide PEM 'CERTIFICATE' blocks, e.g. as written by `openssl x509 -outform PEM`",
    )


def _load_block(block: _Block) -> x509.Certificate | CertProblem:
    if not block.complete:
        return _invalid_pem(f"PEM block #{block.index} has no END line (truncated file?)")
    try:
        cert = x509.load_pem_x509_certificate(block.raw)
        cert.extensions  # noqa: B018 - extensions parse lazily; surface errors here
    except _PARSE_ERRORS:
        return _invalid_pem(f"PEM block #{block.index} is not a valid X.509 certificate")
    return cert


def parse_pem_certificates(data: bytes) -> tuple[list[x509.Certificate], list[CertProblem]]:
    """All CERTIFICATE blocks in `data`, in order; other block types are skipped."""
    certs: list[x509.Certificate] = []
    problems: list[CertProblem] = []
    for block in _pem_blocks(data):
        if block.label != _CERT_LABEL:
            continue
        loaded = _load_block(block)
        if isinstance(loaded, CertProblem):
            problems.append(loaded)
        else:
            certs.append(loaded)
    if not certs and not problems:
        problems.append(_invalid_pem("no PEM certificate block found"))
    return certs, problems


# --- validity ----------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime) -> datetime:
    # A naive `now` is taken as UTC rather than crashing the comparison.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def days_left(not_after: datetime, now: datetime) -> int:
    """Whole days until `not_after` (0 on the last day)."""
    return max(0, (not_after - _aware(now)).days)


def _label(cert: x509.Certificate, what: str) -> str:
    return f"{what} '{cert.subject.rfc4514_string()}'"


def _validity_problems(
    cert: x509.Certificate, label: str, now: datetime, warn_within: timedelta,
) -> list[CertProblem]:
    now = _aware(now)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    renew = "renew or replace the certificate"
    if now > not_after:  # notAfter itself is still inside the validity period
        return [CertProblem("CertificateExpired",
                            f"{label} expired at {_iso(not_after)}", renew)]
    if now < not_before:
        return [CertProblem("CertificateNotYetValid",
                            f"{label} is not valid before {_iso(not_before)}",
                            "check the issuer's clock or wait until the certificate is valid")]
    if not_after - now <= warn_within:
        return [CertProblem("CertificateExpiringSoon",
                            f"{label} expires at {_iso(not_after)} "
                            f"({days_left(not_after, now)} day(s) left)", renew,
                            Severity.WARNING)]
    return []


# --- CA bundles --------------------------------------------------------------------------


_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def _extension(cert: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _not_a_ca_reason(cert: x509.Certificate) -> str | None:
    constraints = _extension(cert, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        return "basicConstraints CA:TRUE is missing"
    usage = _extension(cert, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        return "keyUsage does not allow keyCertSign"
    return None


def _ca_problems(cert: x509.Certificate, label: str) -> list[CertProblem]:
    reason = _not_a_ca_reason(cert)
    if reason is None:
        return []
    return [CertProblem(
        "NotACertificateAuthority", f"{label} is not a certificate authority ({reason})",
        "a CA bundle holds only CA certificates; leaf certificates go into the TLS Secret",
    )]


def _private_key_problems(data: bytes) -> list[CertProblem]:
    return [
        CertProblem(
            "PrivateKeyInBundle",
            f"PEM block #{block.index} of the CA bundle is a private key",
            "remove the key and rotate it: the bundle is published in a ConfigMap",
        )
        for block in _pem_blocks(data)
        if b"PRIVATE KEY" in block.label
    ]


def check_ca_bundle(data: bytes, *, now: datetime, warn_within: timedelta) -> list[CertProblem]:
    """Every certificate parses, is a CA and is within its validity period."""
    certs, problems = parse_pem_certificates(data)
    problems += _private_key_problems(data)
    for index, cert in enumerate(certs, start=1):
        label = _label(cert, f"CA bundle certificate #{index}")
        problems += _ca_problems(cert, label)
        problems += _validity_problems(cert, label, now, warn_within)
    return problems


# --- server certificates -----------------------------------------------------------------


def _normalize(name: str) -> str:
    # DNS names compare case-insensitively; a trailing root dot is the same name.
    return name.lower().rstrip(".")


def _wildcard_matches(pattern: str, hostname: str) -> bool:
    # RFC 6125 6.4.3, restricted like current browsers: only a whole left-most `*`
    # label, standing for exactly one label, and never directly under a TLD.
    base = pattern[2:]
    if "*" in base or "." not in base:
        return False
    label, _, rest = hostname.partition(".")
    return bool(label) and label != "*" and rest == base


def covers_hostname(dns_names: Sequence[str], hostname: str) -> bool:
    """Whether any SAN DNS name covers `hostname`.

    A listener hostname that is itself a wildcard is only covered by the same wildcard.
    """
    host = _normalize(hostname)
    for pattern in map(_normalize, dns_names):
        if pattern == host:
            return True
        if pattern.startswith("*.") and _wildcard_matches(pattern, host):
            return True
    return False


def san_dns_names(cert: x509.Certificate) -> list[str]:
    san = _extension(cert, x509.SubjectAlternativeName)
    return san.get_values_for_type(x509.DNSName) if san is not None else []


def _hostname_problems(cert: x509.Certificate, hostnames: Sequence[str]) -> list[CertProblem]:
    names = san_dns_names(cert)
    shown = ", ".join(names) if names else "none"
    return [
        CertProblem(
            "HostnameNotCovered",
            f"{_label(cert, 'server certificate')} does not cover listener hostname "
            f"'{hostname}' (SAN DNS names: {shown})",
            "add the hostname to subjectAltName; '*.example.com' matches exactly one label "
            "and the common name is not used",
        )
        for hostname in hostnames
        if not covers_hostname(names, hostname)
    ]


def _spki_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_private_key(key_pem: bytes) -> PrivateKeyTypes | None:
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # TypeError: the key is encrypted. The exception text is dropped on purpose.
        return None


def _key_problems(cert: x509.Certificate, key_pem: bytes) -> list[CertProblem]:
    key = _load_private_key(key_pem)
    if key is None:
        return [CertProblem(
            "InvalidPrivateKey",
            "the private key is not an unencrypted PEM private key that can be parsed",
            "provide the key as unencrypted PKCS#8 or traditional PEM",
        )]
    try:
        matches = _spki_der(key.public_key()) == _spki_der(cert.public_key())
    except (ValueError, UnsupportedAlgorithm):
        matches = False  # the certificate's key type cannot even be loaded
    if matches:
        return []
    return [CertProblem(
        "KeyMismatch",
        f"the private key does not belong to {_label(cert, 'server certificate')} "
        f"(fingerprint {fingerprint_sha256(cert)})",
        "pair the certificate with the key it was issued for",
    )]


def check_server_certificate(
    cert_pem: bytes, key_pem: bytes | None, *, hostnames: Sequence[str], now: datetime,
    warn_within: timedelta,
) -> list[CertProblem]:
    """The chain parses and is valid now; the leaf covers every hostname and fits the key."""
    certs, problems = parse_pem_certificates(cert_pem)
    if not certs:
        return problems
    leaf = certs[0]
    for index, cert in enumerate(certs):
        what = "server certificate" if index == 0 else f"chain certificate #{index + 1}"
        problems += _validity_problems(cert, _label(cert, what), now, warn_within)
    problems += _hostname_problems(leaf, hostnames)
    if key_pem is not None:
        problems += _key_problems(leaf, key_pem)
    return problems


def uncovered_hostnames(cert_pem: bytes, hostnames: Sequence[str]) -> list[list[CertProblem]]:
    """Per hostname, the `HostnameNotCovered` problem `check_server_certificate` reports for
    it alone (the chain is parsed once for all of them); nothing when no certificate parses."""
    certs, _ = parse_pem_certificates(cert_pem)
    if not certs:
        return [[] for _ in hostnames]
    return [_hostname_problems(certs[0], [hostname]) for hostname in hostnames]


# --- public description ------------------------------------------------------------------


def fingerprint_sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def _san_values(cert: x509.Certificate) -> dict[str, list[str]]:
    san = _extension(cert, x509.SubjectAlternativeName)
    if san is None:
        return {"dnsNames": [], "uris": [], "ipAddresses": []}
    return {
        "dnsNames": san.get_values_for_type(x509.DNSName),
        "uris": san.get_values_for_type(x509.UniformResourceIdentifier),
        "ipAddresses": [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    }


def describe(cert: x509.Certificate) -> dict[str, str | list[str]]:
    """Public facts about a certificate, for reports and JSON output."""
    facts: dict[str, str | list[str]] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serialNumber": format(cert.serial_number, "x"),
        "notBefore": _iso(cert.not_valid_before_utc),
        "notAfter": _iso(cert.not_valid_after_utc),
        "fingerprintSha256": fingerprint_sha256(cert),
    }
    facts.update(_san_values(cert))
    return facts
