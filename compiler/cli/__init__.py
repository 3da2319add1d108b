"""The `mtlsc` command: a thin layer that builds options, calls the library, prints, exits.

Each command group lives in its own module and is imported only when it runs, so `mtlsc
--version` or `mtlsc validate` do not pay for the Envoy, Vault or diff machinery.
Exit codes are listed in docs/cli.md (`compiler.diagnostics.ExitCode`).
"""

from __future__ import annotations

import gc
import importlib
from typing import Any

import click

from .guard import DEBUG_KEY, guarded, leave

# command name -> (module in this package, attribute). `--help` lists them in this order.
COMMANDS: dict[str, tuple[str, str]] = {
    "compile": ("build", "compile"),
    "check": ("build", "check"),
    "validate": ("build", "validate"),
    "explain": ("build", "explain"),
    "posture": ("posture", "posture"),
    "diff": ("diff", "diff"),
    "lock": ("lock", "lock"),
    "schemas": ("schemas", "schemas"),
    "verify": ("envoy", "verify_cmd"),
    "materialize": ("envoy", "materialize_cmd"),
    "demo": ("envoy", "demo_cmd"),
    "dev-pki": ("pki", "dev_pki"),
    "serve": ("serve", "serve"),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use, run inside the guard that
    turns unexpected exceptions into an `InternalError` diagnostic (see `guard`)."""

    def invoke(self, ctx: click.Context) -> Any:
        return guarded(ctx, lambda: super(LazyGroup, self).invoke(ctx))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = COMMANDS.get(cmd_name)
        if where is None:
            return None
        module = importlib.import_module(f"{__name__}.{where[0]}")
        command = getattr(module, where[1])
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mtlsc", message="%(prog)s, version %(version)s")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an internal error.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """mtlsc: compile mTLS intents into Gateway API overlays (GEP-91)."""
    ctx.meta[DEBUG_KEY] = debug
    # A compile builds millions of long-lived objects (located trees, the model) and almost no
    # reference cycles. With CPython's default thresholds a full collection ran every time
    # the heap grew by a quarter: 28 % of loading and resolving a 2,000-intent fleet. Young
    # collections still run (every 50,000 allocations); full ones rarely.
    gc.set_threshold(50_000, 20, 100)


def run() -> None:
    """The `mtlsc` executable (`[project.scripts]`): `main`, ended by `guard.leave`. Tests and
    embedders call `main` itself, which always ends the Python way (`SystemExit`)."""
    try:
        main()
    except SystemExit as done:
        leave(done)


def command(name: str) -> click.Command | None:
    """The command registered under NAME (imports its module)."""
    return main.get_command(click.Context(main), name)
