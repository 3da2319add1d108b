"""`mtlsc diff --base REF`: the compiled overlays at a Git ref versus the working tree."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from .. import gitref
from ..anchor_history import anchors_added_at
from ..diagnostics import ExitCode, error, exit_code
from ..diff import DiffReport, as_github, as_json, as_markdown, as_text, file_changes
from ..k8s.validate import SchemaStore
from ..lock import LOCK_FILE, LockError, parse_lock
from ..model import Model
from ..pipeline import Options, Result, compile_policies
from ..posture import compare
from ..risk import Severity, Side, ordered, security_notes, worst
from ..rotation import anchor_changes, parse_duration, rotation_notes
from ..schema_roots import schema_roots
from ..secrets.factory import source_factory
from ..secrets.offline import ca_bundles_in
from .common import Context, emit, offline_option, run_compile

FORMATS = ("text", "json", "markdown", "github")


class Duration(click.ParamType):  # type: ignore[type-arg, unused-ignore]
    name = "duration"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> timedelta:
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _compile_base(ctx: Context, commit: str, *, offline: bool = False) -> Result:
    """Compile the intents (and lock) as they are at `commit`, with today's sources (offline:
    Vault sources served from that commit's lock and overlays)."""
    policies_rel = ctx.policies.relative_to(ctx.root).as_posix()
    files = gitref.read_tree(ctx.root, commit, [policies_rel, LOCK_FILE])
    texts = {path: data for path, data in files.items()
             if path.startswith(policies_rel + "/") and path.endswith((".yaml", ".yml"))}
    lock = parse_lock(files[LOCK_FILE].decode()) if LOCK_FILE in files else {}
    cas = ca_bundles_in(gitref.read_tree(ctx.root, commit, [ctx.overlays])) if offline else None
    store = SchemaStore(schema_roots(ctx.root))
    return compile_policies(texts, source_factory(ctx.root, lock, offline=cas), store,
                            Options(clusters=ctx.clusters), lock)


def _overlaps(model: Model, override: timedelta | None) -> dict[str, timedelta]:
    """Each cluster's rotation overlap: --rotation-overlap, else the ClusterTarget's."""
    found = {c.target.name: override if override is not None else c.target.rotation_overlap
             for c in model.clusters}
    return {name: span for name, span in found.items() if span}


def _added_at(ctx: Context, commit: str, base: Model, overlaps: dict[str, timedelta],
              now: datetime) -> dict[tuple[str, str], datetime]:
    if not overlaps:
        return {}
    dirs = {c.target.output_dir: c.target.name for c in base.clusters}
    return anchors_added_at(ctx.root, commit, dirs, now - max(overlaps.values()))


def build_report(ctx: Context, base_ref: str, head: Result, *, show_ca_bodies: bool,
                 now: datetime, rotation_overlap: timedelta | None = None,
                 offline: bool = False) -> DiffReport:
    commit = gitref.resolve(ctx.root, base_ref)
    try:
        base = _compile_base(ctx, commit, offline=offline)
    except LockError:
        base = Result(diagnostics=[error("InvalidLockfile", "the base's lockfile is invalid")])
    report = DiffReport(base_ref, commit, base_failed=not base.ok)
    base_files = base.files if base.ok else {}
    report.changes = file_changes(base_files, head.files, [base.model, head.model],
                                  show_ca_bodies=show_ca_bodies)
    assert head.model is not None and head.materials is not None
    base_side = Side(base.model, base.materials) if base.ok and base.model and \
        base.materials else None
    head_side = Side(head.model, head.materials)
    notes = security_notes(base_side, head_side, now=now)
    if base_side is not None:
        overlaps = _overlaps(head.model, rotation_overlap)
        added = _added_at(ctx, commit, base_side.model, overlaps, now)
        notes += rotation_notes(base_side, head_side, now=now, added_at=added,
                                overlap=overlaps)
    report.notes = ordered(notes)
    report.anchors = anchor_changes(base_side, head_side)
    report.diagnostics = head.diagnostics
    before = base.posture if base.ok else ()  # both computed once by the pipeline
    report.posture = list(compare(before, head.posture))
    return report


def _render(report: DiffReport, fmt: str, limit: int | None) -> str:
    if fmt == "json":
        return as_json(report)
    if fmt == "markdown":
        return as_markdown(report, limit)
    if fmt == "github":
        return as_github(report)
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
@click.option("--exit-code", "use_exit_code", is_flag=True,
              help="Exit like `flux diff`: 0 no change, 1 changes, >1 errors.")
@click.option("--rotation-overlap", type=Duration(), default=None,
              help="Flag removing a CA less than this (e.g. 7d) after the port's trust anchors "
                   "changed; default: each ClusterTarget's certificateChecks.rotationOverlapDays.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on the terminal.")
@offline_option
def diff(base_ref: str, root: Path, policies: str, overlays: str, clusters: tuple[str, ...],
         fmt: str, output: Path | None, show_ca_bodies: bool, fail_on: str | None,
         use_exit_code: bool, rotation_overlap: timedelta | None, quiet: bool,
         offline: bool) -> None:
    """Compile the intents at --base and in the working tree; show what changes and what got
    riskier, per cluster and gateway."""
    ctx = Context(root, root / policies, overlays, "text", False, clusters, quiet)
    head = run_compile(ctx, vault_offline=offline)
    if not head.ok:
        emit(head.diagnostics, "github" if fmt == "github" else "text")
        code = exit_code(head.diagnostics)
        # --exit-code keeps 1 for "changes": invalid input is an error, > 1.
        sys.exit(ExitCode.USAGE if use_exit_code and code is ExitCode.INVALID else code)
    try:
        report = build_report(ctx, base_ref, head, show_ca_bodies=show_ca_bodies,
                              now=datetime.now(UTC), rotation_overlap=rotation_overlap,
                              offline=offline)
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
    if use_exit_code:
        sys.exit(1 if report.changes or failed else ExitCode.OK)
    sys.exit(ExitCode.INVALID if failed else ExitCode.OK)


__all__ = ["build_report", "diff"]
