"""What every `mtlsc` command shares: options, compiling from disk, printing, writing.

Exit codes (docs/cli.md): 0 ok, 1 invalid input / policy violation, 2 usage error,
3 a certificate source or the filesystem failed, 4 drift (`check`), 70 an internal error (a bug;
see `guard`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import click

from .. import journal, manifest, progress, write
from ..cache import CACHE_DIR
from ..confine import Boundaries
from ..diagnostics import (
    Diagnostic,
    ExitCode,
    Location,
    error,
    escalate,
    sorted_diagnostics,
    warning,
)
from ..k8s.validate import SchemaStore
from ..load import read_policy_files
from ..lock import LOCK_FILE, LockError, LockKey, Pin, parse_lock
from ..manifest import Written
from ..pipeline import (
    PARALLEL_MIN,
    STREAM_MIN,
    ClusterSink,
    Options,
    Result,
    compile_policies,
    validate_only,
)
from ..render_units import Content
from ..schema_roots import schema_roots
from ..secrets import CertificateSource
from ..secrets.factory import reusing, source_factory
from ..secrets.offline import committed_ca_bundles, offline_summary
from .options import (
    Context,
    clock,
    common_options,
    emit,
    make_context,
    offline_option,
    print_diff,
)
from .options import report_written as report_counts

if TYPE_CHECKING:
    from ..delta.facts import Collector
    from ..fanout import Stager
    from ..load import SourceConfig
    from ..run_inputs import Inputs
    from ..stream_write import StreamingWrite

__all__ = ["Context", "common_options", "emit", "make_context", "offline_option", "print_diff"]
Opened = Mapping[str, tuple["SourceConfig", CertificateSource]]


class Observer(Protocol):
    """Watches a `compile_and_write` (the run record, `cli/memo.py`)."""

    def files(self, files: Mapping[str, bytes | Written]) -> None:
        """Compiled files (root-relative paths), as each cluster is done."""

    def compiled(self, result: Result) -> None:
        """The compile's result, before writing adds anything to it."""

    @property
    def facts(self) -> Collector | None:
        """Gathers what the next delta compile needs (`compiler.delta.facts`)."""


def io_failure(message: str, hint: str) -> Diagnostic:
    return error("FilesystemError", message, None, hint, source_failure=True)


def read_lock(ctx: Context, inputs: Inputs | None = None
              ) -> tuple[dict[LockKey, Pin], list[Diagnostic]]:
    """The lock's pins (from `inputs` when the lock was read already)."""
    path = ctx.root / LOCK_FILE
    if (inputs.lock is None) if inputs is not None else not path.is_file():
        return {}, []
    try:
        data = inputs.lock if inputs is not None and inputs.lock is not None \
            else path.read_bytes()
        return parse_lock(data.decode("utf-8")), []
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [io_failure(f"cannot read {LOCK_FILE}: {exc}", "check the file")]
    except LockError as exc:
        return {}, [error("InvalidLockfile", str(exc), Location(LOCK_FILE, 1, 1),
                          f"restore {LOCK_FILE} from Git or delete it and run "
                          "`mtlsc lock update`")]


def run_compile(ctx: Context, *, offline: bool = False,
                unpin: tuple[str, ...] | None = None, vault_offline: bool = False,
                writes: bool = False, sink: ClusterSink | None = None,
                inputs: Inputs | None = None, opened: Opened | None = None,
                lean: bool = False, stager: Stager | None = None,
                facts: Collector | None = None) -> Result:
    """Compile the repository. `offline`: validate only, no certificate source. `vault_offline`:
    Vault sources served from mtlsc.lock and the committed overlays (`--offline`). A command
    that `writes` first cleans up whatever an interrupted write left
    (docs/output.md#crash-safety) and fills the render cache; other commands only read it.
    `inputs` (policy texts and lock) and `opened` (certificate sources already opened, by
    name, with their configuration) come from a run-record lookup that missed: the compile
    uses what the lookup read, and logs in to Vault only once. `lean`: the result has no
    located trees, placements or posture (`Options.lean`)."""
    if writes:
        problem = recover(ctx)
        if problem is not None:
            return Result(diagnostics=[problem])
    try:
        texts = inputs.texts if inputs is not None and inputs.texts is not None \
            else read_policy_files(ctx.policies, ctx.root)
    except (OSError, UnicodeDecodeError) as exc:
        return Result(diagnostics=[io_failure(f"cannot read policies: {exc}",
                                               "check the --policies directory")])
    if not texts and not texts.problems:
        return Result(diagnostics=[error("NoPolicies", f"no *.yaml files under {ctx.policies}",
                                         None, "run from the repository root or pass "
                                         "--policies")])
    store = SchemaStore(schema_roots(ctx.root))
    bounds = Boundaries(root=ctx.root, policies=display(ctx.policies, ctx.root),
                        read_outside=ctx.read_outside)
    options = Options(strict=ctx.strict, clusters=ctx.clusters,
                      progress=progress.for_terminal(ctx.quiet), boundaries=bounds,
                      cache=ctx.root / CACHE_DIR if ctx.cache else None,
                      cache_writes=writes, jobs=ctx.jobs, stream_min=_stream_min(),
                      parallel_min=_parallel_min(), now=ctx.now, lean=lean, facts=facts)
    if offline:
        return validate_only(texts, store, options)
    lock, problems = read_lock(ctx, inputs)
    if problems:
        return Result(diagnostics=problems)
    cas = committed_ca_bundles(ctx.root / ctx.overlays) if vault_offline else None
    factory = source_factory(ctx.root, lock, unpin, offline=cas, read_outside=ctx.read_outside)
    result = compile_policies(texts, reusing(factory, opened or {}), store, options, lock,
                              sink=sink, stager=stager)
    return with_offline_summary(result, ctx.strict) if vault_offline else result


def with_offline_summary(result: Result, strict: bool) -> Result:
    """Add what an offline run took on trust from the lock (one warning per Vault source)."""
    summary = offline_summary(result.pins, {source for source, _, _ in result.pins})
    result.diagnostics = sorted_diagnostics([*result.diagnostics, *escalate(summary, strict)])
    if not result.ok:
        result.files = {}
    return result


def today() -> date:
    """The day guardrail waivers are checked against (the pipeline's clock: UTC now)."""
    return clock().date()


def _parents(dirs: Sequence[str]) -> list[str]:
    return sorted({d.rpartition("/")[0] for d in dirs})


def recover(ctx: Context) -> Diagnostic | None:
    """Finish off an interrupted write before anything else; None when all is well."""
    try:
        if journal.pending(ctx.root) is None and not journal.leftovers(ctx.root,
                                                                       [ctx.overlays]):
            return None
        with journal.exclusive(ctx.root):
            removed = journal.recover(ctx.root, [ctx.overlays])
    except OSError as exc:
        message, hint = write.describe(exc)
        return io_failure(f"cannot clean up after an interrupted write: {message}", hint)
    if removed and ctx.fmt == "text":
        click.echo(f"recovered from an interrupted write: removed {', '.join(removed)}",
                   err=True)
    return None


def interrupted(ctx: Context, result: Result) -> Diagnostic | None:
    """`check` never passes while an interrupted write's leftovers are on disk."""
    found = journal.leftovers(ctx.root, [*_parents(result.output_dirs), ctx.overlays])
    if journal.pending(ctx.root) is None and not found:
        return None
    return error("InterruptedWrite", "an interrupted `mtlsc compile` left "
                 + (", ".join(found) or "its journal (.mtlsc/write/journal.json)"), None,
                 "run `mtlsc compile`: it cleans up first, then writes the overlays")


def plan_write(ctx: Context, result: Result) -> write.WritePlan | None:
    """What writing would change; None (with a diagnostic) when unowned files are in the way."""
    prune = (ctx.overlays,) if result.all_clusters else ()
    try:
        plan = write.plan(ctx.root, result.files, result.output_dirs, prune)
    except OSError as exc:
        message, hint = write.describe(exc)
        result.diagnostics.append(io_failure(f"cannot read overlays: {message}", hint))
        return None
    _report_conflicts(result, plan)
    return None if plan.conflicts else plan


def _report_conflicts(result: Result, plan: write.WritePlan) -> None:
    for rel in plan.conflicts:
        what = "is not a directory" if rel in result.output_dirs else "was not generated by mtlsc"
        result.diagnostics.append(error("FileInTheWay", f"{rel} exists and {what}; nothing "
                                        "was written", None, "move it away or set the "
                                        "ClusterTarget's outputDir elsewhere"))


def _report_written(ctx: Context, result: Result, plan: write.WritePlan,
                    leftovers: list[str]) -> None:
    report_written(plan, ctx.fmt)
    if leftovers:
        result.diagnostics.append(warning(
            "IncompleteCleanup", "the overlays were written, but these old copies "
            "could not be removed: " + "; ".join(leftovers), None,
            "the next `mtlsc compile` removes them; fix the cause shown"))


def _write_failed(result: Result, exc: OSError) -> None:
    message, hint = write.describe(exc)
    outcome = "" if isinstance(exc, write.PartialWriteError) else "; nothing was changed"
    result.diagnostics.append(io_failure(f"cannot write overlays: {message}{outcome}", hint))


def write_result(ctx: Context, result: Result, *, show_diff: bool = False) -> str:
    """Write a successful compile to disk (I/O failures become diagnostics); returns the diff
    when asked for."""
    diff = ""
    if not result.ok:
        return diff
    try:
        plan = plan_write(ctx, result)
        if plan is not None:
            if show_diff:
                diff = write.unified_diff(plan)
                print_diff(diff, ctx.fmt)
            # with the cache on, the swapped-out trees stay as spares for delta compiles
            _report_written(ctx, result, plan, write.apply(plan, keep_spare=ctx.cache))
    except OSError as exc:
        _write_failed(result, exc)
    return diff


def _stream_min() -> int:
    """Compiles of at least this many gateway x cluster units are written while they compile
    (`MTLSC_STREAM_MIN`; tests lower it to exercise streaming on small fleets)."""
    value = os.environ.get("MTLSC_STREAM_MIN", "")
    return int(value) if value.isdigit() else STREAM_MIN


def _parallel_min() -> int:
    """Compiles of at least this many gateways render in worker processes
    (`MTLSC_PARALLEL_MIN`; tests lower it to exercise the workers on small fleets)."""
    value = os.environ.get("MTLSC_PARALLEL_MIN", "")
    return int(value) if value.isdigit() else PARALLEL_MIN


def compile_and_write(ctx: Context, *, show_diff: bool = False, inputs: Inputs | None = None,
                      opened: Opened | None = None, observer: Observer | None = None,
                      ) -> tuple[Result, str, list[str]]:
    """`mtlsc compile`: compile, then write (I/O failures become diagnostics). A large compile
    is written while it compiles: each cluster is staged as soon as it is done, while the
    workers render the next (`stream_write.StreamingWrite`); the swap still happens only when the
    whole compile succeeded. Returns the result, the diff when asked for (`--diff` writes the
    classic way: it needs every old and new file at once) and the names of the files.
    `inputs` and `opened`: see `run_compile`; an `observer` sees the compile's files and
    result (before writing)."""
    if show_diff:
        result = run_compile(ctx, writes=True, inputs=inputs, opened=opened, lean=True,
                             facts=observer.facts if observer is not None else None)
        _observe(observer, result)
        return result, write_result(ctx, result, show_diff=True), sorted(result.files)
    from ..stream_write import StreamingWrite  # the writing half; `check` never imports it

    writer = StreamingWrite(ctx.root)

    def sink(directory: str, files: dict[str, Content]) -> None:
        with manifest.shared_digests():  # the record, the plan and the manifest: one digest
            if observer is not None:
                observer.files(files)
            writer.add(directory, files)

    try:
        result = run_compile(ctx, writes=True, sink=sink, inputs=inputs, opened=opened,
                             lean=True, stager=writer,
                             facts=observer.facts if observer is not None else None)
        _observe(observer, result)
        if not writer.started:
            write_result(ctx, result)
            return result, "", sorted(result.files)
        if result.ok:
            _finish_streamed(ctx, result, writer)
        return result, "", sorted([*result.files, *writer.names]) if result.ok else []
    finally:
        writer.abort()  # nothing left to do after a finished write


def _observe(observer: Observer | None, result: Result) -> None:
    if observer is not None:
        observer.files(result.files)
        observer.compiled(result)


def _finish_streamed(ctx: Context, result: Result, writer: StreamingWrite) -> None:
    prune = (ctx.overlays,) if result.all_clusters else ()
    try:
        plan, leftovers = writer.finish(dict(result.files), prune, keep_spare=ctx.cache)
    except OSError as exc:
        _write_failed(result, exc)
        return
    _report_conflicts(result, plan)
    if not plan.conflicts:
        _report_written(ctx, result, plan, leftovers)


def report_written(plan: write.WritePlan, fmt: str) -> None:
    report_counts((len(plan.create), len(plan.update), len(plan.delete), len(plan.unchanged)),
                  fmt)


def display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def write_files(action: Callable[[], list[Path]], user_error: type[Exception], code: str,
                 hint: str) -> None:
    """Run a file-writing command: print what it wrote, or one error line and exit."""
    try:
        written = action()
    except user_error as exc:  # before OSError: PkiExistsError is a FileExistsError
        click.echo(f"error[{code}]: {exc}\n    hint: {hint}", err=True)
        sys.exit(ExitCode.INVALID)
    except OSError as exc:
        click.echo(f"error[FilesystemError]: {exc}", err=True)
        sys.exit(ExitCode.SOURCE)
    for path in written:
        click.echo(path.as_posix())
