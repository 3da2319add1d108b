"""`mtlsc diff --base REF`: the compiled overlays at a Git ref versus the working tree."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from .. import gitref
from ..diagnostics import ExitCode, error, exit_code
from ..diff import DiffReport, as_json, as_markdown, as_text, file_changes
from ..k8s.validate import SchemaStore
from ..lock import LOCK_FILE, LockError, parse_lock
from ..pipeline import Options, Result, compile_policies, schema_roots
from ..posture import compare, compute_posture
from ..risk import Severity, Side, security_notes, worst
from ..secrets.factory import source_factory
from .common import Context, emit, run_compile

FORMATS = ("text", "json", "markdown")


def _compile_base(ctx: Context, commit: str) -> Result:
    """Compile the intents (and lock) as they are at `commit`, with today's sources."""
    policies_rel = ctx.policies.relative_to(ctx.root).as_posix()
    files = gitref.read_tree(ctx.root, commit, [policies_rel, LOCK_FILE])
    texts = {path: data for path, data in files.items()
             if path.startswith(policies_rel + "/") and path.endswith((".yaml", ".yml"))}
    lock = parse_lock(files[LOCK_FILE].decode()) if LOCK_FILE in files else {}
    store = SchemaStore(schema_roots(ctx.root))
    return compile_policies(texts, source_factory(ctx.root, lock), store,
                            Options(clusters=ctx.clusters), lock)


def _window(result: Result) -> timedelta:
    model = result.model
    windows = [c.target.expiry_warning for c in model.clusters] if model else []
    return max(windows, default=timedelta(days=30))


def build_report(ctx: Context, base_ref: str, head: Result, *, show_ca_bodies: bool,
                 now: datetime) -> DiffReport:
    commit = gitref.resolve(ctx.root, base_ref)
    try:
        base = _compile_base(ctx, commit)
    except LockError:
        base = Result(diagnostics=[error("InvalidLockfile", "the base's lockfile is invalid")])
    report = DiffReport(base_ref, commit, base_failed=not base.ok)
    base_files = base.files if base.ok else {}
    report.changes = file_changes(base_files, head.files, [base.model, head.model],
                                  show_ca_bodies=show_ca_bodies)
    assert head.model is not None and head.materials is not None
    base_side = Side(base.model, base.materials) if base.ok and base.model and \
        base.materials else None
    report.notes = security_notes(base_side, Side(head.model, head.materials), now=now,
                                  window=_window(head))
    report.diagnostics = head.diagnostics
    before = compute_posture(base.model.clusters, base.materials) \
        if base.ok and base.model else ()
    report.posture = list(compare(before, compute_posture(head.model.clusters, head.materials)))
    return report


def _render(report: DiffReport, fmt: str, limit: int | None) -> str:
    if fmt == "json":
        return as_json(report)
    if fmt == "markdown":
        return as_markdown(report, limit)
    return as_text(report)


@click.command("diff")
@click.option("--base", "base_ref", required=True,
              help="Git ref to compare with (branch, tag, commit, e.g. origin/main).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Repository root.")
@click.option("--policies", default="policies", show_default=True)
@click.option("--overlays", default="overlays", show_default=True)
@click.option("--cluster", "clusters", multiple=True, help="Only these clusters.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the full, untruncated report (same format) to this file.")
@click.option("--show-ca-bodies", is_flag=True,
              help="Show CA certificate bodies in diffs (default: their fingerprints).")
@click.option("--fail-on", type=click.Choice([s.label for s in Severity if s]),
              help="Exit 1 when a security note reaches this severity.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on the terminal.")
def diff(base_ref: str, root: Path, policies: str, overlays: str, clusters: tuple[str, ...],
         fmt: str, output: Path | None, show_ca_bodies: bool, fail_on: str | None,
         quiet: bool) -> None:
    """Compile the intents at --base and in the working tree; show what changes and what got
    riskier, per cluster and gateway."""
    ctx = Context(root, root / policies, overlays, "text", False, clusters, quiet)
    head = run_compile(ctx)
    if not head.ok:
        emit(head.diagnostics, "text")
        sys.exit(exit_code(head.diagnostics))
    try:
        report = build_report(ctx, base_ref, head, show_ca_bodies=show_ca_bodies,
                              now=datetime.now(UTC))
    except gitref.GitError as exc:
        click.echo(f"error[GitRef]: cannot read {base_ref!r}: {exc}\n    hint: run inside "
                   "the Git repository and fetch the base (fetch-depth: 0 in CI)", err=True)
        sys.exit(ExitCode.USAGE)
    text = _render(report, fmt, limit=65_536 if fmt == "markdown" else None)
    click.echo(text, nl=not text.endswith("\n"))
    if output is not None:
        output.write_text(_render(report, fmt, limit=None), encoding="utf-8")
    threshold = next((s for s in Severity if s.label == fail_on), None)
    worst_note = worst(report.notes)
    failed = threshold is not None and worst_note is not None and worst_note >= threshold
    sys.exit(ExitCode.INVALID if failed else ExitCode.OK)


__all__ = ["build_report", "diff"]
