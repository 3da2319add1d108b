"""What the compiling commands share and can have without importing the compiler: the common
options, the run's context and clock, and printing diagnostics.

Kept light on purpose (click, `report` and `diagnostics` only): `mtlsc check` and `compile`
answer from the run record (`compiler.run_record`) before the pipeline, the schemas or the
loader are imported at all; `common` holds the rest and re-exports these names.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import click

from .. import report
from ..diagnostics import Diagnostic
from .guard import remember_format

# Tests only: an ISO 8601 instant that replaces the clock of a whole run (certificate expiry,
# guardrail waivers, the run record's horizon), so subprocess tests can cross a horizon.
CLOCK_ENV = "MTLSC_TEST_NOW"


def clock() -> datetime:
    """The instant a run checks certificates and waivers against: UTC now."""
    fixed = os.environ.get(CLOCK_ENV)
    if fixed:
        try:
            moment = datetime.fromisoformat(fixed)
        except ValueError:
            raise click.UsageError(f"{CLOCK_ENV}={fixed!r} is not an ISO 8601 instant; it "
                                   "fixes the clock for mtlsc's own tests: unset it") from None
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if not _WARNED:
            _WARNED.append(moment)
            click.echo(f"mtlsc: warning: {CLOCK_ENV} is set: certificates and waivers are "
                       f"judged at {moment.isoformat()}, not now (a clock for mtlsc's own "
                       "tests; unset it)", err=True)
        return moment
    return datetime.now(UTC)


_WARNED: list[datetime] = []  # the fixed clock is announced once per process


@dataclass(frozen=True, slots=True)
class Context:
    """One command's run as the CLI sets it up: the repository, policies and overlays, the
    common options and the run's one clock reading."""

    root: Path
    policies: Path
    overlays: str
    fmt: str
    strict: bool
    clusters: tuple[str, ...]
    quiet: bool = False
    read_outside: tuple[Path, ...] = ()  # --allow-read-outside
    cache: bool = True  # --no-cache / MTLSC_NO_CACHE turn the render cache off
    jobs: int = 1  # --jobs / MTLSC_JOBS; default: the CPUs this process may use
    now: datetime = field(default_factory=clock)  # one clock reading for the whole run


def emit(diagnostics: Sequence[Diagnostic], fmt: str, **extra: object) -> None:
    if fmt == "json":
        click.echo(report.render(diagnostics, fmt, **extra))
        return
    if fmt == "sarif":  # one document on stdout; the human report goes to the CI log
        click.echo(report.render(diagnostics, fmt))
        body = report.text(diagnostics)
        if body:
            click.echo(body, err=True)
        click.echo(report.summary(diagnostics), err=True)
        return
    body = report.render(diagnostics, fmt)
    if body:
        click.echo(body, err=fmt == "text")
    if fmt == "text":
        click.echo(report.summary(diagnostics), err=True)


def print_diff(diff: str, fmt: str) -> None:
    """Diffs go to stdout in text/github formats; JSON carries them inside the document and
    SARIF leaves them out (stdout stays one document)."""
    if fmt in ("text", "github"):
        click.echo(diff, nl=False)


def report_written(counts: tuple[int, int, int, int], fmt: str) -> None:
    """`wrote N new, N changed, removed N, N unchanged` (text format, on stderr)."""
    if fmt == "text":
        click.echo(f"wrote {counts[0]} new, {counts[1]} changed, removed {counts[2]}, "
                   f"{counts[3]} unchanged", err=True)


def offline_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option("--offline", is_flag=True, envvar="MTLSC_OFFLINE",
                        help="Do not contact Vault: use mtlsc.lock and the committed overlays "
                        "(CA bodies verified against the lock) and report what could not be "
                        "checked. Also MTLSC_OFFLINE=true.")(func)


def common_options(func: click.decorators.FC) -> click.decorators.FC:
    options = [
        click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=".",
                     show_default=True, help="Repository root."),
        click.option("--policies", "policies", default="policies", show_default=True,
                     help="Intent directory, relative to --root."),
        click.option("--overlays", "overlays", default="overlays", show_default=True,
                     help="Overlay directory, relative to --root."),
        click.option("--cluster", "clusters", multiple=True, help="Only these clusters."),
        click.option("--strict", is_flag=True, help="Treat warnings as errors."),
        click.option("--format", "fmt", type=click.Choice(report.FORMATS), default="text",
                     show_default=True, help="Diagnostics format.", callback=remember_format),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar on the terminal."),
        click.option("--no-cache", "no_cache", is_flag=True, envvar="MTLSC_NO_CACHE",
                     expose_value=False, callback=_remember,
                     help="Do not read or write the render cache in .mtlsc/cache/ "
                     "[env: MTLSC_NO_CACHE]."),
        click.option("--jobs", "-j", "jobs", type=click.IntRange(min=1), envvar="MTLSC_JOBS",
                     expose_value=False, callback=_remember,
                     help="Worker processes for large compiles [default: the CPUs available; "
                     "env: MTLSC_JOBS]."),
        click.option("--allow-read-outside", "read_outside", multiple=True, expose_value=False,
                     type=click.Path(file_okay=False, path_type=Path), callback=_remember,
                     help="Let local certificate sources read files below this directory "
                          "outside the repository (repeatable; never for writing)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _remember(ctx: click.Context, param: click.Parameter, value: object) -> object:
    """Options every command takes but only `run_compile` reads: kept in the click context."""
    ctx.meta[f"mtlsc.{param.name}"] = value
    return value


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_context(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
             fmt: str, quiet: bool = False) -> Context:
    click_ctx = click.get_current_context(silent=True)
    meta = click_ctx.meta if click_ctx is not None else {}
    allowed = meta.get("mtlsc.read_outside") or ()
    jobs = meta.get("mtlsc.jobs")
    return Context(root, root / policies, overlays, fmt, strict, clusters, quiet, tuple(allowed),
                   cache=not meta.get("mtlsc.no_cache", False),
                   jobs=jobs if isinstance(jobs, int) else _cpus())


