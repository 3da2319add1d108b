"""The last line of defence: no Python traceback reaches a user without `--debug`.

Every command runs inside `guarded`: an exception nobody expected becomes one `InternalError`
diagnostic, in the output format the command was asked for, with a bug-report hint, and exit code
70 (`ExitCode.INTERNAL`, sysexits' EX_SOFTWARE). Ctrl-C exits 130 with one line; a closed output
pipe (`mtlsc check | head`) ends quietly with exit 141, like a tool killed by SIGPIPE. Kept free
of heavy imports: it runs for every command, `--version` included.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

FORMAT_KEY = "mtlsc.format"
DEBUG_KEY = "mtlsc.debug"
BUG_HINT = ("this is a bug in mtlsc, not in your policies: please report it with the command you "
            "ran and the output of the same command with --debug (mtlsc --debug COMMAND ...)")
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

# Set by a command that has finished all it does in this process and left no thread or child
# process behind (a replayed run, a delta compile): see `leave`.
_QUICK = [False]


def remember_format(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    """Option callback: note the diagnostics format where the guard can find it."""
    ctx.meta[FORMAT_KEY] = value
    return value


def guarded(ctx: click.Context, invoke: Callable[[], Any]) -> Any:
    try:
        return invoke()
    except (click.exceptions.Exit, click.ClickException, click.Abort):
        raise
    except KeyboardInterrupt:
        click.echo("mtlsc: interrupted", err=True)
        ctx.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _silence_stdout()
        ctx.exit(EXIT_BROKEN_PIPE)
    except Exception as exc:
        if ctx.meta.get(DEBUG_KEY):
            raise
        _report(ctx, exc)


def _silence_stdout() -> None:
    # Python flushes stdout at exit; into a closed pipe that prints a second error. Point the
    # descriptor at /dev/null so that flush succeeds silently.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # not a real file (tests, embedded use)
        pass


def _report(ctx: click.Context, exc: Exception) -> NoReturn:
    from ..diagnostics import ExitCode, error

    message = f"internal error: {type(exc).__name__}: {exc}"
    diagnostic = error("InternalError", message[:500], None, BUG_HINT)
    fmt = ctx.meta.get(FORMAT_KEY, "text")
    try:
        from .common import emit

        emit([diagnostic], fmt if fmt in ("text", "json", "github", "sarif") else "text")
    except Exception:  # the reporter itself failed: plain text is all that is left
        click.echo(f"error[InternalError] {message[:500]}\n  hint: {BUG_HINT}", err=True)
    ctx.exit(ExitCode.INTERNAL)


def allow_quick_exit() -> None:
    """The command is done and has left nothing running: `leave` may skip tearing the
    interpreter down (freeing every object of a large heap one by one: 20-30 ms of a 0.5 s
    delta compile)."""
    _QUICK[0] = True


def leave(done: SystemExit) -> NoReturn:
    """How the `mtlsc` executable ends (`cli.run`): as Python would, or, when the command
    allowed it, with exit handlers run and the output flushed, then `os._exit`."""
    code = done.code
    if not _QUICK[0] or not isinstance(code, int):
        raise done
    import atexit

    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        code = EXIT_BROKEN_PIPE
    except (OSError, ValueError):
        pass
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(code)
