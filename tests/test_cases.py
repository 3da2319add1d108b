"""Golden cases: tests/cases/<name>/ holds intents; `expect.yaml` states the exit code and lists
the diagnostics the case must produce (code, severity, file, line, column) and, for cases that
compile, `expected/<cluster>/…` holds the exact overlay bytes. A `fixture.json` creates what Git
cannot store (FIFOs, links, huge files; see `tests.support.make_fixture`). Adding a case is a
file-only change: write the intents, run `pytest tests/test_cases.py --update-goldens`, review,
commit.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from compiler.diagnostics import exit_code
from compiler.emit import to_yaml
from tests.support import CASES, compile_root, prepare_case

CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _diag_rows(result: Any) -> list[dict[str, Any]]:
    rows = []
    for d in result.diagnostics:
        loc = d.location
        file = loc.file.removeprefix("policies/") if loc else None
        rows.append({"code": d.code, "severity": d.severity.value, "file": file,
                     "line": loc.line if loc else None, "column": loc.col if loc else None})
    return rows


def _outputs(result: Any) -> dict[str, bytes]:
    """Overlay files by path below out/, leaving out clusters the case compiles nothing for."""
    files = {k.removeprefix("out/"): v for k, v in result.files.items()}
    empty = {k.split("/")[0] for k, v in files.items()
             if k.endswith("kustomization.yaml") and b"resources: []" in v}
    return {k: v for k, v in files.items() if k.split("/")[0] not in empty}


def _read_expected(case: Path) -> dict[str, bytes]:
    base = case / "expected"
    if not base.is_dir():
        return {}
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*"))
            if p.is_file()}


def _update(case: Path, code: int, rows: list[dict[str, Any]],
            outputs: dict[str, bytes]) -> None:
    (case / "expect.yaml").write_bytes(to_yaml({"exit": code, "diagnostics": rows},
                                               header=False))
    shutil.rmtree(case / "expected", ignore_errors=True)
    for rel, data in outputs.items():
        dest = case / "expected" / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)


@pytest.mark.parametrize("case", CASE_DIRS, ids=[c.name for c in CASE_DIRS])
def test_case(case: Path, tmp_path: Path, test_pki: Path, update_goldens: bool) -> None:
    root = prepare_case(case, tmp_path, test_pki)
    result = compile_root(root)
    rows, outputs = _diag_rows(result), _outputs(result)
    code = int(exit_code(result.diagnostics))
    if update_goldens:
        _update(case, code, rows, outputs)
    expect = YAML(typ="safe").load((case / "expect.yaml").read_text())
    assert expect.get("exit") == code, f"exit code {code}, expect.yaml says {expect.get('exit')}"
    assert rows == expect["diagnostics"], "\n".join(
        f"{d.location}: {d.severity.value}[{d.code}] {d.message}" for d in result.diagnostics)
    assert outputs == _read_expected(case)
    for message in (d.message + (d.hint or "") for d in result.diagnostics):
        assert "PRIVATE KEY" not in message


INVALID = [c for c in CASE_DIRS if (c / "expect.yaml").is_file() and not (c / "expected").is_dir()]

# Every kind of hostile or broken input (docs/input-limits.md) has at least one case.
HOSTILE_INPUT_CODES = ("YAMLSyntax", "DuplicateKey", "YAMLTag", "YAMLMergeKey", "YAMLComplexKey",
                       "YAMLTooManyNodes", "YAMLTooDeep", "FileTooLarge", "YAMLEncoding",
                       "SpecialFile", "LinkOutsideRepository", "DanglingLink")


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 150, f"only {len(INVALID)} invalid-input cases"


def test_corpus_covers_every_kind_of_hostile_input() -> None:
    seen = {row["code"] for case in INVALID
            for row in YAML(typ="safe").load((case / "expect.yaml").read_text())["diagnostics"]}
    assert not set(HOSTILE_INPUT_CODES) - seen
