"""The public facts of CA and server certificates, as reviews show them: subject, issuer,
SHA-256 fingerprint, validity. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from .verify import fingerprint_sha256, parse_pem_certificates


@dataclass(frozen=True, slots=True)
class Anchor:
    """The public facts of one CA certificate."""

    fingerprint: str
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime

    @classmethod
    def of(cls, cert: x509.Certificate) -> Anchor:
        return cls(fingerprint_sha256(cert), cert.subject.rfc4514_string(),
                   cert.issuer.rfc4514_string(), cert.not_valid_before_utc,
                   cert.not_valid_after_utc)

    def describe(self) -> str:
        issuer = "self-signed" if self.issuer == self.subject else f"issuer {self.issuer}"
        return (f"'{self.subject}' ({issuer}, sha256 {self.fingerprint[:16]}…, valid "
                f"{self.not_before:%Y-%m-%d} → {self.not_after:%Y-%m-%d})")

    def as_dict(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "subject": self.subject,
                "issuer": self.issuer, "notBefore": f"{self.not_before:%Y-%m-%dT%H:%M:%SZ}",
                "notAfter": f"{self.not_after:%Y-%m-%dT%H:%M:%SZ}"}


def bundle_anchors(pem: bytes | None) -> list[Anchor]:
    if pem is None:
        return []
    certs, _ = parse_pem_certificates(pem)
    return [Anchor.of(c) for c in certs]


