"""`mtlsc lock update`: move mtlsc.lock to the certificate sources' latest versions."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..diagnostics import exit_code
from .common import common_options, emit, make_context, run_compile, write_result


@click.group()
def lock() -> None:
    """Manage mtlsc.lock, the pinned certificate versions."""


@lock.command("update")
@common_options
@click.option("--ref", "refs", multiple=True,
              help="Move only this logical certificate/CA name forward (default: all).")
def lock_update(root: Path, policies: str, overlays: str, clusters: tuple[str, ...],
                strict: bool, fmt: str, quiet: bool, refs: tuple[str, ...]) -> None:
    """Resolve refs to Vault's latest versions, then write mtlsc.lock and the overlays."""
    ctx = make_context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = run_compile(ctx, unpin=refs, writes=True)
    write_result(ctx, result)
    emit(result.diagnostics, fmt, files=sorted(result.files))
    sys.exit(exit_code(result.diagnostics))
