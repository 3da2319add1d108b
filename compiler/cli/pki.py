"""`mtlsc dev-pki`: the seed's demo CA, server and client certificates."""

from __future__ import annotations

from pathlib import Path

import click

from .common import write_files


@click.command("dev-pki")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--seed", default=None, help="Seed for reproducible keys (default: the public "
              "demo seed; keys derived from it are NOT secret).")
@click.option("--random", "use_random", is_flag=True, help="Random keys: a private dev CA.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def dev_pki(directory: Path, seed: str | None, use_random: bool, force: bool) -> None:
    """Create the seed's demo PKI (CA, server and client certificates) in DIRECTORY."""
    from ..pki import DEFAULT_SEED, PkiExistsError, create_dev_pki

    if use_random and seed:
        raise click.UsageError("--seed and --random exclude each other")
    chosen = None if use_random else (seed or DEFAULT_SEED)
    write_files(lambda: create_dev_pki(directory, seed=chosen, overwrite=force),
                 PkiExistsError, "PkiExists", "pass --force to overwrite")
