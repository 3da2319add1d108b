"""The `mtlsc` command: a thin layer that builds options, calls the library, prints, exits.

Exit codes (docs/cli.md): 0 ok, 1 invalid input / policy violation / drift, 2 usage error,
3 a certificate source or the filesystem failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import click

from . import progress, report, write
from .diagnostics import Diagnostic, ExitCode, Location, error, exit_code
from .explain import explain as explain_text
from .k8s.validate import SchemaStore
from .load import read_policy_files
from .lock import LOCK_FILE, LockError, LockKey, Pin, parse_lock
from .pipeline import Options, Result, compile_policies, schema_roots, validate_only
from .secrets.factory import source_factory


@dataclass(frozen=True, slots=True)
class Context:
    root: Path
    policies: Path
    overlays: str
    fmt: str
    strict: bool
    clusters: tuple[str, ...]
    quiet: bool = False


def _emit(diagnostics: Sequence[Diagnostic], fmt: str, **extra: object) -> None:
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


def _io_failure(message: str, hint: str) -> Diagnostic:
    return error("FilesystemError", message, None, hint, source_failure=True)


def _read_lock(ctx: Context) -> tuple[dict[LockKey, Pin], list[Diagnostic]]:
    path = ctx.root / LOCK_FILE
    if not path.is_file():
        return {}, []
    try:
        return parse_lock(path.read_text(encoding="utf-8")), []
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [_io_failure(f"cannot read {LOCK_FILE}: {exc}", "check the file")]
    except LockError as exc:
        return {}, [error("InvalidLockfile", str(exc), Location(LOCK_FILE, 1, 1),
                          f"restore {LOCK_FILE} from Git or delete it and run "
                          "`mtlsc lock update`")]


def _compile(ctx: Context, *, offline: bool = False,
             unpin: tuple[str, ...] | None = None) -> Result:
    try:
        texts = read_policy_files(ctx.policies, ctx.root)
    except (OSError, UnicodeDecodeError) as exc:
        return Result(diagnostics=[_io_failure(f"cannot read policies: {exc}",
                                               "check the --policies directory")])
    if not texts:
        return Result(diagnostics=[error("NoPolicies", f"no *.yaml files under {ctx.policies}",
                                         None, "run from the repository root or pass "
                                         "--policies")])
    store = SchemaStore(schema_roots(ctx.root))
    options = Options(strict=ctx.strict, clusters=ctx.clusters,
                      progress=progress.for_terminal(ctx.quiet))
    if offline:
        return validate_only(texts, store, options)
    lock, problems = _read_lock(ctx)
    if problems:
        return Result(diagnostics=problems)
    return compile_policies(texts, source_factory(ctx.root, lock, unpin), store, options,
                            lock)


def _common(func: click.decorators.FC) -> click.decorators.FC:
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
                     show_default=True, help="Diagnostics format."),
        click.option("--quiet", "-q", is_flag=True, help="No progress bar on the terminal."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _context(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
             fmt: str, quiet: bool = False) -> Context:
    return Context(root, root / policies, overlays, fmt, strict, clusters, quiet)


def _plan(ctx: Context, result: Result) -> write.WritePlan | None:
    """What writing would change; None (with a diagnostic) when unowned files are in the way."""
    prune = (*result.output_dirs, ctx.overlays) if result.all_clusters else result.output_dirs
    try:
        plan = write.plan(ctx.root, result.files, prune)
    except OSError as exc:
        result.diagnostics.append(_io_failure(f"cannot read overlays: {exc}",
                                              "check permissions of the overlay files"))
        return None
    for rel in plan.conflicts:
        result.diagnostics.append(error("FileInTheWay", f"{rel} exists and was not generated "
                                        "by mtlsc; nothing was written", None, "move the file "
                                        "away or set the ClusterTarget's outputDir elsewhere"))
    return None if plan.conflicts else plan


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtlsc")
def main() -> None:
    """mtlsc: compile mTLS intents into Gateway API overlays (GEP-91)."""


@main.command()
@_common
@click.option("--diff", "show_diff", is_flag=True, help="Print the changes being written.")
def compile(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
            fmt: str, quiet: bool, show_diff: bool) -> None:
    """Compile policies/ into overlays/ (writes nothing if there is any error)."""
    ctx = _context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = _compile(ctx)
    diff = _write_result(ctx, result, show_diff=show_diff)
    _emit(result.diagnostics, fmt, files=sorted(result.files),
          **({"diff": diff} if show_diff else {}))
    sys.exit(exit_code(result.diagnostics))


def _show_diff(diff: str, fmt: str) -> None:
    """Diffs go to stdout in text/github formats; JSON carries them inside the document and
    SARIF leaves them out (stdout stays one document)."""
    if fmt in ("text", "github"):
        click.echo(diff, nl=False)


def _write_result(ctx: Context, result: Result, *, show_diff: bool = False) -> str:
    """Write a successful compile to disk (I/O failures become diagnostics); returns the diff
    when asked for."""
    diff = ""
    if not result.ok:
        return diff
    try:
        plan = _plan(ctx, result)
        if plan is not None:
            if show_diff:
                diff = write.unified_diff(plan)
                _show_diff(diff, ctx.fmt)
            write.apply(plan)
            _done(plan, ctx.fmt)
    except OSError as exc:
        result.diagnostics.append(_io_failure(f"cannot write overlays: {exc}",
                                              "check permissions and free space"))
    return diff


def _done(plan: write.WritePlan, fmt: str) -> None:
    if fmt == "text":
        click.echo(f"wrote {len(plan.create)} new, {len(plan.update)} changed, removed "
                   f"{len(plan.delete)}, {len(plan.unchanged)} unchanged", err=True)


@main.command()
@_common
def check(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
          fmt: str, quiet: bool) -> None:
    """Compile in memory and compare with the committed overlays (exit 1 on drift)."""
    ctx = _context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = _compile(ctx)
    plan = _plan(ctx, result) if result.ok else None
    diff = ""
    if plan is not None and plan.changed:
        diff = write.unified_diff(plan)
        _show_diff(diff, fmt)
        result.diagnostics.append(error("Drift", f"overlays are out of date: "
                                        f"{len(plan.create)} missing, {len(plan.update)} "
                                        f"changed, {len(plan.delete)} stale", None,
                                        "run `mtlsc compile` and commit the result"))
    _emit(result.diagnostics, fmt, diff=diff)
    sys.exit(exit_code(result.diagnostics))


@main.command()
@_common
@click.argument("files", nargs=-1,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def validate(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
             fmt: str, quiet: bool, files: tuple[Path, ...]) -> None:
    """Check intents offline (no certificate source): fast enough for pre-commit."""
    ctx = _context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = _compile(ctx, offline=True)
    diagnostics = result.diagnostics
    if files:
        wanted = {_display(f, root) for f in files}
        diagnostics = [d for d in diagnostics if d.location is None or d.location.file in wanted]
    _emit(diagnostics, fmt)
    sys.exit(exit_code(diagnostics))


def _display(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


@main.command()
@_common
@click.argument("gateway")
def explain(root: Path, policies: str, overlays: str, clusters: tuple[str, ...], strict: bool,
            fmt: str, quiet: bool, gateway: str) -> None:
    """Show where each effective value of GATEWAY ([namespace/]name) came from."""
    ctx = _context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = _compile(ctx, offline=True)
    shown = 0
    model = result.model
    for placement in result.placements:
        key = placement.intent.key
        if gateway not in (key, placement.intent.name) or model is None:
            continue
        cluster = next(c for c in model.clusters if c.target.name == placement.target.name)
        gw = next(g for g in cluster.gateways if g.key == key)
        click.echo(explain_text(placement, gw) + "\n")
        shown += 1
    if not shown:
        result.diagnostics.append(error("UnknownGateway", f"no gateway {gateway!r} is compiled "
                                        "for the selected clusters", None,
                                        "use namespace/name as in the GatewayIntent"))
    _emit(result.diagnostics, fmt)
    sys.exit(exit_code(result.diagnostics))


@main.group()
def lock() -> None:
    """Manage mtlsc.lock, the pinned certificate versions."""


@lock.command("update")
@_common
@click.option("--ref", "refs", multiple=True,
              help="Move only this logical certificate/CA name forward (default: all).")
def lock_update(root: Path, policies: str, overlays: str, clusters: tuple[str, ...],
                strict: bool, fmt: str, quiet: bool, refs: tuple[str, ...]) -> None:
    """Resolve refs to Vault's latest versions, then write mtlsc.lock and the overlays."""
    ctx = _context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = _compile(ctx, unpin=refs)
    _write_result(ctx, result)
    _emit(result.diagnostics, fmt, files=sorted(result.files))
    sys.exit(exit_code(result.diagnostics))


@main.group()
def schemas() -> None:
    """Manage Gateway API JSON schemas."""


@schemas.command("import")
@click.argument("crds", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default="schemas",
              show_default=True, help="Schema root to write into.")
@click.option("--version", "bundle_version", help="Override the CRDs' bundle-version.")
@click.option("--channel", type=click.Choice(["standard", "experimental"]),
              help="Override the CRDs' channel.")
def schemas_import(crds: tuple[Path, ...], out: Path, bundle_version: str | None,
                   channel: str | None) -> None:
    """Turn Gateway API CRD files into JSON Schemas under OUT/gateway-api/<version>/<channel>/."""
    from .k8s.schema_import import SchemaImportError, import_crds

    def run() -> list[Path]:
        written = import_crds(crds, out, version=bundle_version, channel=channel)
        if not written:
            raise SchemaImportError("no CustomResourceDefinition found in the given files")
        return written

    _write_files(run, SchemaImportError, "SchemaImport",
                 "pass Gateway API CRD files (for example standard-install.yaml)")


def _write_files(action: Callable[[], list[Path]], user_error: type[Exception], code: str,
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


@main.command("dev-pki")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=None, help="Seed for reproducible keys (default: the public "
              "demo seed; keys derived from it are NOT secret).")
@click.option("--random", "use_random", is_flag=True, help="Random keys: a private dev CA.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def dev_pki(directory: Path, seed: str | None, use_random: bool, force: bool) -> None:
    """Create the seed's demo PKI (CA, server and client certificates) in DIRECTORY."""
    from .pki import DEFAULT_SEED, PkiExistsError, create_dev_pki

    if use_random and seed:
        raise click.UsageError("--seed and --random exclude each other")
    chosen = None if use_random else (seed or DEFAULT_SEED)
    _write_files(lambda: create_dev_pki(directory, seed=chosen, overwrite=force),
                 PkiExistsError, "PkiExists", "pass --force to overwrite")


# Commands around the Envoy output live in their own module; importing it registers them.
from . import cli_diff, cli_envoy  # noqa: E402, F401
