"""`MTLSC_CROSSCHECK=1` for delta compiles: before a delta compile writes anything, compile
the whole repository in memory (itself cross-checked from scratch) and compare its files and
diagnostics with what the delta compile is about to leave on disk. A difference is an mtlsc
bug: the run stops with an internal error and writes nothing (docs/scale.md)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..crosscheck import CrosscheckError, differences
from ..diagnostics import Diagnostic

if TYPE_CHECKING:
    from ..cli.options import Context


def compare_with_full(ctx: Context, diagnostics: list[Diagnostic],
                      changes: Mapping[str, Mapping[str, bytes | None]]) -> None:
    from ..cli.common import run_compile
    from ..write import is_owned

    full = run_compile(ctx, lean=True)
    if not full.ok:
        raise CrosscheckError("MTLSC_CROSSCHECK: the full compile fails where the delta "
                              "compile succeeds; this is an mtlsc bug")
    after: dict[str, bytes] = {}
    for unit in full.output_dirs:
        top = ctx.root / unit
        for path in sorted(top.rglob("*")) if top.is_dir() else []:
            if path.is_file() and not path.is_symlink() and is_owned(path):
                after[path.relative_to(ctx.root).as_posix()] = path.read_bytes()
        for rel, data in changes.get(unit, {}).items():
            if data is None:
                after.pop(f"{unit}/{rel}", None)
            else:
                after[f"{unit}/{rel}"] = data
    for name in full.files:
        if not any(name.startswith(unit + "/") for unit in full.output_dirs):
            on_disk = ctx.root / name
            after[name] = on_disk.read_bytes() if os.path.isfile(on_disk) else b""

    class Seen:  # the fields `differences` compares, as the delta compile has them
        pass

    delta = Seen()
    for field in ("model", "pins", "output_dirs", "all_clusters", "posture", "waivers"):
        setattr(delta, field, getattr(full, field))
    delta.diagnostics = diagnostics  # type: ignore[attr-defined]
    found = differences(full, delta, full.files, after)
    if found:
        raise CrosscheckError(f"MTLSC_CROSSCHECK: the delta compile differs from a full "
                              f"compile: {'; '.join(found[:5])}. This is an mtlsc bug; please "
                              "report it, and set MTLSC_NO_DELTA=1 meanwhile")


def compare_failed(ctx: Context, diagnostics: list[Diagnostic]) -> None:
    """A delta compile whose errors stop the compile: the full compile in memory must fail
    with exactly these diagnostics."""
    from ..cli.common import run_compile

    full = run_compile(ctx, lean=True)
    if full.ok or full.diagnostics != diagnostics:
        raise CrosscheckError("MTLSC_CROSSCHECK: the delta compile of an edit with errors "
                              "reports other diagnostics than the full compile. This is an "
                              "mtlsc bug; please report it, and set MTLSC_NO_DELTA=1 "
                              "meanwhile")
