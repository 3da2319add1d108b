from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.support import REPO, build_test_pki
from tests.vault.fixtures import openbao, openbao_tls, pems, seeded, vault  # noqa: F401

# A `mtlsc serve` the developer runs in the repository must not take the tests' commands
# (a worker has every module imported, which tests of what a command imports would see);
# tests/test_serve.py starts its own servers and lets them.
os.environ.setdefault("MTLSC_NO_SERVER", "1")

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


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A fresh copy of the example repository: policies only, no dev PKI, no overlays."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "policies", root / "policies")
    return root


@pytest.fixture(scope="session")
def compiled_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example after one successful `mtlsc compile` (copied by `compiled`, never edited)."""
    from click.testing import CliRunner

    from compiler.cli import main

    root = tmp_path_factory.mktemp("compiled") / "repo"
    shutil.copytree(REPO / "policies", root / "policies")
    result = CliRunner().invoke(main, ["compile", "--root", str(root)])
    assert result.exit_code == 0, result.output
    return root


@pytest.fixture
def compiled(compiled_template: Path, tmp_path: Path) -> Path:
    """A copy of the example after a successful `mtlsc compile` (dev PKI and overlays present)."""
    root = tmp_path / "repo"
    shutil.copytree(compiled_template, root)
    return root
