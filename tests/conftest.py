from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import build_test_pki

# Certificate checks in tests run at a fixed instant so results never depend on the clock.
TEST_NOW = datetime(2027, 1, 1, tzinfo=UTC)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-goldens", action="store_true",
                     help="rewrite tests/cases/*/expected and expect.yaml from current output")


@pytest.fixture(scope="session")
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dev PKI plus deliberately broken certificates, generated at test time (no key is
    ever committed)."""
    directory = tmp_path_factory.mktemp("pki")
    build_test_pki(directory)
    return directory
