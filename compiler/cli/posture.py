"""`mtlsc posture`: what each cluster's implementation will enforce, per gateway and port."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..diagnostics import exit_code, has_errors
from ..posture_render import FORMATS, render
from .common import emit, make_context, run_compile, today


@click.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Repository root.")
@click.option("--policies", "policies", default="policies", show_default=True,
              help="Intent directory, relative to --root.")
@click.option("--cluster", "clusters", multiple=True, help="Only these clusters.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on the terminal.")
def posture(root: Path, policies: str, clusters: tuple[str, ...], strict: bool, fmt: str,
            quiet: bool) -> None:
    """Print the effective mTLS posture per cluster, gateway and port (writes nothing)."""
    ctx = make_context(root, policies, "overlays", clusters, strict, "text", quiet)
    result = run_compile(ctx)
    if has_errors(result.diagnostics) or result.model is None:
        emit(result.diagnostics, "text")
        sys.exit(exit_code(result.diagnostics))
    if result.diagnostics:
        emit(result.diagnostics, "text")  # warnings on stderr; stdout carries the posture
    click.echo(render(result.posture, fmt))  # computed once by the pipeline
    waivers = [w for w in result.waivers if w.active(today())]
    if waivers and fmt != "json":
        markdown = fmt == "markdown"
        click.echo("\n## Active guardrail waivers\n" if markdown else "\nactive guardrail waivers:")
        for w in waivers:
            line = f"{w.gateway}: {w.rule} until {w.expires} (owner {w.owner}: {w.reason})"
            click.echo(f"- {line} ({w.location})" if markdown else f"  {line}  # {w.location}")
    sys.exit(exit_code(result.diagnostics))
