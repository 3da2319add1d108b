"""No traceback without --debug: the CLI's guard (compiler/cli/guard.py).

An internal error is simulated by making a library function raise: the guard must turn it into
one InternalError diagnostic in every output format, exit 70, and show the traceback only with
`--debug`. Ctrl-C exits 130; a closed output pipe ends quietly with 141.
"""

from __future__ import annotations

import json
import os
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


# Output buffered as usual (a shell may export PYTHONUNBUFFERED): what `leave` must flush.
_BUFFERED = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
_LEAVE = ("import atexit, sys\n"
          "from compiler.cli.guard import allow_quick_exit, leave\n"
          "atexit.register(lambda: print('exit handler ran'))\n"
          "sys.stdout.write('x' * 200000)\n"
          "print()\n"
          "if sys.argv[1] == 'quick':\n"
          "    allow_quick_exit()\n"
          "leave(SystemExit(int(sys.argv[2])))\n")


@pytest.mark.parametrize("mode", ["quick", "python"])
@pytest.mark.parametrize("code", [0, 3])
def test_leave_keeps_the_exit_code_the_output_and_the_exit_handlers(mode: str,
                                                                      code: int) -> None:
    """`guard.leave` (how the `mtlsc` executable ends): a quick exit flushes buffered output,
    runs exit handlers and keeps the code, exactly like the Python way it replaces."""
    done = subprocess.run([sys.executable, "-c", _LEAVE, mode, str(code)], capture_output=True,
                          text=True, timeout=60, check=False, env=_BUFFERED)
    assert done.returncode == code
    assert done.stdout == "x" * 200000 + "\nexit handler ran\n"
    assert done.stderr == ""


def test_quick_exit_into_a_closed_pipe_is_quiet() -> None:
    """Output still buffered when the reader has gone: exit 141 without a second error."""
    script = ("import sys\n"
              "from compiler.cli.guard import allow_quick_exit, leave\n"
              "print('buffered until the exit')\n"
              "allow_quick_exit()\n"
              "leave(SystemExit(0))\n")
    read, write = os.pipe()
    os.close(read)  # nobody will read: the flush at the exit fails
    try:
        done = subprocess.run([sys.executable, "-c", script], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False,
                              env=_BUFFERED)
    finally:
        os.close(write)
    assert done.returncode == 141
    assert done.stderr == ""


def test_the_console_script_ends_through_leave() -> None:
    """pyproject's `mtlsc` entry point is `serve.client.run`, which runs `cli.run` (quick exit
    when allowed) when no server takes the command, and `main` (what tests and embedders
    call) still raises SystemExit."""
    import inspect
    import tomllib

    from compiler.serve import client
    from tests.support import REPO

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["mtlsc"] == "compiler.serve.client:run"
    assert "from ..cli import run as here" in inspect.getsource(client.run)
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
