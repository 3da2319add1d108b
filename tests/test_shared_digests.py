"""`manifest.shared_digests`: one cluster's files are digested once for the run record, the
write plan and the manifest — and a digest is never given for another object."""

from __future__ import annotations

import hashlib

import pytest

from compiler import manifest

_SHA256 = hashlib.sha256  # the real one (the fixture counts calls through the module)


def _hex(data: bytes) -> str:
    return _SHA256(data).hexdigest()


@pytest.fixture
def computed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = _SHA256

    def counting(data: bytes = b""):  # type: ignore[no-untyped-def]
        seen.append(bytes(data))
        return real(data)

    monkeypatch.setattr(manifest.hashlib, "sha256", counting)
    return seen


def test_inside_the_block_each_object_is_digested_once(computed: list[bytes]) -> None:
    one, other = b"x" * 100, bytes(b"y" * 100)
    with manifest.shared_digests():
        for _ in range(3):
            assert manifest.digest(one) == _hex(one)
        assert manifest.digest(other) == _hex(other)
        with manifest.shared_digests():  # nested: the same memo
            assert manifest.digest(one) == _hex(one)
    assert computed == [one, other]
    manifest.digest(one)
    manifest.digest(one)
    assert computed == [one, other, one, one]  # outside: no memo


def test_equal_or_reused_objects_get_their_own_digest() -> None:
    with manifest.shared_digests():
        for index in range(200):  # short-lived objects: ids are reused by CPython
            data = f"file {index}".encode()
            assert manifest.digest(data) == _hex(data)
