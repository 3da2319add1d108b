"""Secret material is a value type whose repr never shows it."""

from __future__ import annotations

from compiler.secrets import SecretBytes, ServerCertificate

KEY = b"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"


def test_repr_and_str_hide_the_bytes() -> None:
    secret = SecretBytes(KEY)
    for text in (repr(secret), str(secret), f"{secret}", repr([secret]),
                 repr(ServerCertificate(b"cert", secret))):
        assert "PRIVATE KEY" not in text and "MIGHAgEA" not in text
    assert repr(secret) == f"SecretBytes(<redacted {len(KEY)} bytes>)"
    assert secret.reveal() == KEY
    assert secret == SecretBytes(KEY) and secret != SecretBytes(b"other")
