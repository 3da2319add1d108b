"""Golden cases: tests/cases/<name>/ holds intents; `expect.yaml` lists the diagnostics the
case must produce (code, severity, file, line, column) and, for cases that compile,
`expected/<cluster>/…` holds the exact overlay bytes. Adding a case is a file-only change:
write the intents, run `pytest tests/test_cases.py --update-goldens`, review, commit.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

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


def _update(case: Path, rows: list[dict[str, Any]], outputs: dict[str, bytes]) -> None:
    (case / "expect.yaml").write_bytes(to_yaml({"diagnostics": rows}, header=False))
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
    if update_goldens:
        _update(case, rows, outputs)
    expect = YAML(typ="safe").load((case / "expect.yaml").read_text())
    assert rows == expect["diagnostics"], "\n".join(
        f"{d.location}: {d.severity.value}[{d.code}] {d.message}" for d in result.diagnostics)
    assert outputs == _read_expected(case)
    for message in (d.message + (d.hint or "") for d in result.diagnostics):
        assert "PRIVATE KEY" not in message


def test_corpus_is_large_enough() -> None:
    invalid = [c for c in CASE_DIRS
               if (c / "expect.yaml").is_file() and not (c / "expected").is_dir()]
    assert len(invalid) >= 40, f"only {len(invalid)} invalid-input cases"
