"""The fault proxy itself: each fault is what a client really sees, and counts are exact."""

from __future__ import annotations

import time

import pytest
import requests

from tests.vault.fixtures import Bao, World
from tests.vault.proxy import FaultProxy

pytestmark = pytest.mark.real_vault


def get(vault: Bao, path: str, timeout: float = 5) -> requests.Response:
    return requests.get(f"{vault.url}/v1/{path}", timeout=timeout,
                        headers={"X-Vault-Token": vault.root_token})


def test_requests_are_forwarded_and_counted_per_method_and_path(vault: Bao) -> None:
    assert get(vault, "sys/health").status_code == 200
    assert get(vault, "sys/health").json()["initialized"] is True
    assert requests.post(f"{vault.url}/v1/sys/health", timeout=5).status_code == 405
    assert vault.proxy.count("sys/health", method="GET") == 2
    assert vault.proxy.count("sys/health", method="POST") == 1
    assert vault.proxy.paths() == {"sys/health": 3}


@pytest.mark.parametrize(("kind", "status", "text"), [
    ("sealed", 503, "Vault is sealed"),
    ("standby", 503, "active cluster node not found"),
])
def test_canned_answers(vault: Bao, kind: str, status: int, text: str) -> None:
    vault.proxy.inject(kind, path="sys/health")
    answer = get(vault, "sys/health")
    assert answer.status_code == status and text in answer.json()["errors"][0]
    assert get(vault, "sys/health").status_code == 200  # `times` ran out


def test_broken_answers(vault: Bao) -> None:
    vault.proxy.inject("malformed")
    with pytest.raises(requests.exceptions.JSONDecodeError):
        get(vault, "sys/health").json()
    vault.proxy.inject("truncate")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(vault, "sys/health")
    vault.proxy.inject("drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        get(vault, "sys/health")


def test_stall_outlasts_the_client_timeout(vault: Bao) -> None:
    vault.proxy.inject("stall", seconds=3)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(vault, "sys/health", timeout=0.5)
    assert time.monotonic() - started < 2


def test_refused_until_it_comes_up(openbao: World) -> None:
    with FaultProxy(openbao.url, start_after=1.0) as late:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{late.url}/v1/sys/health", timeout=2)
        late.wait_listening()
        assert requests.get(f"{late.url}/v1/sys/health", timeout=5).status_code == 200
