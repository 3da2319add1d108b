"""`mtlsc serve`: keep the compiler imported for the commands run in this repository."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from ..diagnostics import ExitCode


@click.command("serve")
@click.option("--root", type=click.Path(file_okay=False, exists=True, path_type=Path),
              default=".", show_default=True, help="Repository root: where the commands run.")
@click.option("--idle-timeout", type=click.FloatRange(min=0), default=3600.0,
              show_default=True, help="Stop after this many seconds without a command (0: "
              "never).")
@click.option("--stop", is_flag=True, help="Stop the server of --root and exit.")
def serve(root: Path, idle_timeout: float, stop: bool) -> None:
    """Serve the mtlsc commands run in --root from one process that keeps the compiler
    imported (docs/scale.md "The server").

    While it runs, `mtlsc` started in --root hands its command to a worker forked from this
    process: same output, files and exit code, without Python's start-up and imports. Runs in
    the foreground until stopped (Ctrl-C, SIGTERM, 'mtlsc serve --stop', --idle-timeout),
    and stops by itself when mtlsc or a library it uses changes on disk.
    """
    from ..serve import server

    os.chdir(root)
    if stop:
        if not server.stop(Path(".")):
            click.echo(f"mtlsc serve: no server answers in {root}", err=True)
            raise SystemExit(ExitCode.INVALID)
        return
    server.warm()
    try:
        instance = server.Server(Path(os.getcwd()), idle_timeout, sys.stderr,
                                 server.watching(sys.stderr))
    except server.ServeError as exc:
        click.echo(f"mtlsc serve: {exc}", err=True)
        raise SystemExit(ExitCode.INVALID) from None
    click.echo(f"mtlsc serve: pid {os.getpid()}, commands run in {instance.root}", err=True)
    raise SystemExit(instance.run())
