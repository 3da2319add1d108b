"""`mtlsc schemas import`: generate JSON Schemas from Gateway API CRDs."""

from __future__ import annotations

from pathlib import Path

import click

from .common import write_files


@click.group()
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
    from ..k8s.schema_import import SchemaImportError, import_crds

    def run() -> list[Path]:
        written = import_crds(crds, out, version=bundle_version, channel=channel)
        if not written:
            raise SchemaImportError("no CustomResourceDefinition found in the given files")
        return written

    write_files(run, SchemaImportError, "SchemaImport",
                 "pass Gateway API CRD files (for example standard-install.yaml)")
