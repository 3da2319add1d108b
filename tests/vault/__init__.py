"""Test support for the Vault source: a real OpenBao (`openbao.py`), a fault-injecting proxy in
front of it (`proxy.py`), fixtures (`fixtures.py`) and a small policy repository (`repo.py`)."""
