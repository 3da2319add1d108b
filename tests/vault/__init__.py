"""A Vault-API-compatible HTTP(S) server for tests (see `tests.vault.server.FakeVault`)."""
