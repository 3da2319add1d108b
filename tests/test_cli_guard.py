"""No traceback without --debug: the CLI's guard (compiler/cli/guard.py).

An internal error is simulated by making a library function raise: the guard must turn it into
one InternalError diagnostic in every output format, exit 70, and show the traceback only with
`--debug`. Ctrl-C exits 130; a closed output pipe ends quietly with 141.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import compiler.cli.common as cli_common
from compiler.cli import main
from compiler.diagnostics import ExitCode


def _raise(exc: BaseException) -> object:
    def fail(*_args: object, **_kwargs: object) -> object:
        raise exc
    return fail


@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_unexpected_exception_is_one_internal_error(fmt: str, example: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_common, "validate_only", _raise(KeyError("surprise")))
    result = CliRunner().invoke(main, ["validate", "--root", str(example), "--format", fmt])
    assert result.exit_code == ExitCode.INTERNAL == 70
    assert "Traceback" not in result.output
    assert result.output.count("InternalError") >= 1
    if fmt == "json":
        report = json.loads(result.stdout)
        assert [d["code"] for d in report["diagnostics"]] == ["InternalError"]
        assert "--debug" in report["diagnostics"][0]["hint"]


def test_debug_shows_the_exception(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_common, "validate_only", _raise(KeyError("surprise")))
    result = CliRunner().invoke(main, ["--debug", "validate", "--root", str(example)])
    assert isinstance(result.exception, KeyError)
    assert "InternalError" not in result.output


def test_ctrl_c_exits_130(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_common, "validate_only", _raise(KeyboardInterrupt()))
    result = CliRunner().invoke(main, ["validate", "--root", str(example)])
    assert result.exit_code == 130
    assert "Traceback" not in result.output and "interrupted" in result.output


def test_closed_pipe_ends_quietly(example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_common, "validate_only", _raise(BrokenPipeError(32, "Broken pipe")))
    result = CliRunner().invoke(main, ["validate", "--root", str(example)])
    assert result.exit_code == 141
    assert result.output == ""


def test_the_installed_entry_point_has_the_guard(example: Path) -> None:
    """A real process: the console script's `main`, with a library function that fails."""
    script = ("import sys, compiler.cli.common as c\n"
              "def boom(*a, **k): raise RuntimeError('boom')\n"
              "c.validate_only = boom\n"
              "from compiler.cli import main\n"
              "main(['validate', '--root', sys.argv[1]])\n")
    done = subprocess.run([sys.executable, "-c", script, str(example)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 70
    assert "Traceback" not in done.stderr
    assert "error[InternalError]: internal error: RuntimeError: boom" in done.stderr
