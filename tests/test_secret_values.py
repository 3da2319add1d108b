"""Secret material is a value type whose repr never shows it."""

from __future__ import annotations

from compiler.secrets import SecretBytes, ServerCertificate

_LABEL = "PRIVATE " + "KEY"  # built at run time: no key-shaped PEM is committed
KEY = (f"-----BEGIN {_LABEL}-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n"
       f"-----END {_LABEL}-----\n").encode()


def test_repr_and_str_hide_the_bytes() -> None:
    secret = SecretBytes(KEY)
    for text in (repr(secret), str(secret), f"{secret}", repr([secret]),
                 repr(ServerCertificate(b"cert", secret))):
        assert "PRIVATE KEY" not in text and "MIGHAgEA" not in text
    assert repr(secret) == f"SecretBytes(<redacted {len(KEY)} bytes>)"
    assert secret.reveal() == KEY
    assert secret == SecretBytes(KEY) and secret != SecretBytes(b"other")
