"""Whatever small edits happen between a compile and a `check`, the check with the run record
(replayed or not) shows exactly what the full check shows."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.pki import create_dev_pki
from tests.record_support import both, example, mtlsc

Edit = Callable[[Path, int], None]


def _generated(root: Path) -> list[Path]:
    return sorted(p for p in (root / "overlays").rglob("*") if p.is_file())


def _pick(root: Path, n: int) -> Path:
    files = _generated(root)
    return files[n % len(files)]


def _append(root: Path, n: int) -> None:
    path = _pick(root, n)
    path.write_bytes(path.read_bytes() + b"# edited\n")


def _flip(root: Path, n: int) -> None:  # same size, one byte different
    path = _pick(root, n)
    data = bytearray(path.read_bytes())
    data[-2] = ord("x") if data[-2] != ord("x") else ord("y")
    path.write_bytes(bytes(data))


def _touch(root: Path, n: int) -> None:
    os.utime(_pick(root, n))


def _remove(root: Path, n: int) -> None:
    _pick(root, n).unlink()


def _copy_generated(root: Path, n: int) -> None:
    source = _pick(root, n)
    shutil.copy(source, source.with_name(f"extra-{n}.yaml"))


def _foreign(root: Path, n: int) -> None:
    _pick(root, n).with_name(f"notes-{n}.txt").write_text("not generated\n")


def _policy_comment(root: Path, n: int) -> None:
    files = sorted((root / "policies").rglob("*.yaml"))
    path = files[n % len(files)]
    path.write_text(path.read_text() + "# reviewed\n")


def _rotate_ca(root: Path, n: int) -> None:
    create_dev_pki(root / ".mtlsc" / "dev-pki", seed=f"rotated-{n % 2}", overwrite=True)


def _nothing(root: Path, n: int) -> None:
    del root, n


EDITS: dict[str, Edit] = {f.__name__.strip("_"): f for f in (
    _append, _flip, _touch, _remove, _copy_generated, _foreign, _policy_comment, _rotate_ca,
    _nothing)}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A compiled example at a fixed path (the record is keyed by the repository's path), and
    a pristine copy of it to restore before each example."""
    base = tmp_path_factory.mktemp("record-property")
    root = example(base)
    assert mtlsc(root, "compile").code == 0
    pristine = base / "pristine"
    shutil.copytree(root, pristine, symlinks=True)
    return root, pristine


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.sampled_from(sorted(EDITS)), st.integers(0, 200)),
                      max_size=3))
def test_check_with_the_record_equals_the_full_check(template: tuple[Path, Path],
                                                     edits: list[tuple[str, int]]) -> None:
    root, pristine = template
    shutil.rmtree(root)
    shutil.copytree(pristine, root, symlinks=True)
    for name, n in edits:
        EDITS[name](root, n)
    recorded, full = both(root, "check")
    assert recorded.shown == full.shown
    if not edits or all(name in ("touch", "foreign", "nothing") for name, _ in edits):
        assert recorded.outcome == "hit"
