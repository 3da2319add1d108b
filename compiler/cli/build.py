"""`mtlsc compile`, `check`, `validate` and `explain`: the compiler on a repository.

`compile` and `check` first try the run record (`memo.replay`), so this module imports the
compiler (`common`, the pipeline, the schemas) only inside the commands, when a run compiles.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..diagnostics import error, exit_code
from . import memo
from .options import common_options, emit, make_context, offline_option, print_diff


@click.command()
@common_options
@click.option("--diff", "show_diff", is_flag=True, help="Print the changes being written.")
def compile(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
            fmt: str, quiet: bool, show_diff: bool) -> None:
    """Compile policies/ into overlays/ (writes nothing if there is any error)."""
    ctx = make_context(root, policies, overlays, clusters, strict, fmt, quiet)
    attempt = memo.replay(ctx, "compile", show_diff=show_diff)  # exits when replayed
    from .common import compile_and_write

    recorder = memo.Recorder(ctx, attempt) if attempt is not None else None
    result, diff, files = compile_and_write(ctx, show_diff=show_diff, observer=recorder,
                                            **memo.reuse(attempt))
    if recorder is not None:
        recorder.save(result)
    emit(result.diagnostics, fmt, files=files, **({"diff": diff} if show_diff else {}))
    sys.exit(exit_code(result.diagnostics))


@click.command()
@common_options
@offline_option
def check(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
          fmt: str, quiet: bool, offline: bool) -> None:
    """Compile in memory and compare with the committed overlays (exit 4 on drift, 1 on
    invalid input)."""
    ctx = make_context(root, policies, overlays, clusters, strict, fmt, quiet)
    attempt = None if offline else memo.replay(ctx, "check")  # exits when replayed
    from .. import write
    from .common import interrupted, plan_write, run_compile

    result = run_compile(ctx, vault_offline=offline, lean=True, **memo.reuse(attempt))
    plan = plan_write(ctx, result) if result.ok else None
    stopped = interrupted(ctx, result)
    if stopped is not None:
        result.diagnostics.append(stopped)
    diff = ""
    if plan is not None and plan.changed:
        diff = write.unified_diff(plan)
        print_diff(diff, fmt)
        result.diagnostics.append(error("Drift", f"overlays are out of date: "
                                        f"{len(plan.create)} missing, {len(plan.update)} "
                                        f"changed, {len(plan.delete)} stale", None,
                                        "run `mtlsc compile` and commit the result"))
    emit(result.diagnostics, fmt, diff=diff)
    sys.exit(exit_code(result.diagnostics))


@click.command()
@common_options
@click.argument("files", nargs=-1,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
             fmt: str, quiet: bool, files: tuple[Path, ...]) -> None:
    """Check intents offline (no certificate source): fast enough for pre-commit."""
    from .common import display, run_compile

    ctx = make_context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = run_compile(ctx, offline=True)
    diagnostics = result.diagnostics
    if files:
        wanted = {display(f, root) for f in files}
        diagnostics = [d for d in diagnostics if d.location is None or d.location.file in wanted]
    emit(diagnostics, fmt)
    sys.exit(exit_code(diagnostics))


@click.command()
@common_options
@click.argument("gateway")
def explain(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
            fmt: str, quiet: bool, gateway: str) -> None:
    """Show where each effective value of GATEWAY ([namespace/]name) came from."""
    from ..explain import explain as explain_text
    from ..guardrails import waivers_of
    from .common import run_compile, today

    ctx = make_context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = run_compile(ctx, offline=True)
    shown = 0
    model = result.model
    for placement in result.placements:
        key = placement.intent.key
        if gateway not in (key, placement.intent.name) or model is None:
            continue
        cluster = next(c for c in model.clusters if c.target.name == placement.target.name)
        gw = next(g for g in cluster.gateways if g.key == key)
        click.echo(explain_text(placement, gw))
        for w in waivers_of(key, result.waivers, today()):
            click.echo(f"guardrail waiver: {w.rule} until {w.expires} (owner {w.owner}: "
                       f"{w.reason})    # {w.location}")
        click.echo()
        shown += 1
    if not shown:
        result.diagnostics.append(error("UnknownGateway", f"no gateway {gateway!r} is compiled "
                                        "for the selected clusters", None,
                                        "use namespace/name as in the GatewayIntent"))
    emit(result.diagnostics, fmt)
    sys.exit(exit_code(result.diagnostics))
