"""The schema-clean memo (compiler/schema_memo.py): a warm run skips the intent schema check
only for files that passed it with the same name and content; problems are found every run,
and the output is the same as without the cache."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compiler import load
from compiler.schema_memo import KIND
from tests.fleet_support import compile_fleet, make_fleet, outcome


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Files whose documents went through the intent schema check during the test."""
    seen: list[str] = []
    real = load.check_document

    def counting(root):  # type: ignore[no-untyped-def]
        seen.append(root.loc.file)
        return real(root)

    monkeypatch.setattr(load, "check_document", counting)
    return seen


def test_a_warm_run_checks_no_unchanged_file(fleet: Path, tmp_path: Path,
                                             checked: list[str]) -> None:
    plain = outcome(compile_fleet(fleet))
    files = len(set(checked))
    assert files > 10
    cache = tmp_path / "cache"
    checked.clear()
    assert outcome(compile_fleet(fleet, cache=cache)) == plain
    assert len(set(checked)) == files  # the cold run checks every file
    checked.clear()
    assert outcome(compile_fleet(fleet, cache=cache)) == plain
    assert checked == []
    assert list((cache / KIND).rglob("*"))


def test_an_edited_file_is_checked_again_and_its_problems_always_reported(
        fleet: Path, tmp_path: Path, checked: list[str]) -> None:
    root = tmp_path / "fleet"
    shutil.copytree(fleet, root)
    cache = tmp_path / "cache"
    compile_fleet(root, cache=cache)
    intent = root / "policies" / "gateways" / "team-3" / "gw-3.yaml"
    good = intent.read_text()
    intent.write_text(good.replace("spec:\n", "spec:\n  bogusField: 1\n", 1))
    for _ in range(2):  # a file with a problem is never remembered: reported on every run
        checked.clear()
        broken = compile_fleet(root, cache=cache)
        assert checked == ["policies/gateways/team-3/gw-3.yaml"]
        assert [d.code for d in broken.diagnostics if d.severity.name == "ERROR"] == \
            ["UnknownField"]
        assert outcome(broken) == outcome(compile_fleet(root))
    intent.write_text(good)
    checked.clear()
    assert outcome(compile_fleet(root, cache=cache)) == outcome(compile_fleet(root))


def test_a_read_only_run_writes_no_memo(fleet: Path, tmp_path: Path,
                                        checked: list[str]) -> None:
    cache = tmp_path / "cache"
    expected = outcome(compile_fleet(fleet))
    assert outcome(compile_fleet(fleet, cache=cache, cache_writes=False)) == expected
    assert not (cache / KIND).exists()
