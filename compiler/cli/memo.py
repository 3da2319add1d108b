"""The run record (`compiler.run_record`) seen from `check` and `compile`: replay a recorded
run and exit, or hand what the lookup read to the full compile, and record a compile.

Imported before the compiler itself: a replayed run never imports the pipeline.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import run_inputs, run_record
from ..diagnostics import Diagnostic, exit_code
from ..manifest import Written
from .guard import allow_quick_exit
from .options import Context, emit, print_diff, report_written

if TYPE_CHECKING:
    from ..delta.early import Early
    from ..pipeline import Result
    from .common import Opened

# Tests only: a file that receives, at exit, whether the run record was replayed (or why not)
# and which modules the process imported (tests/test_run_record_cli.py).
LOG_ENV = "MTLSC_TEST_RECORD_LOG"


@dataclass(slots=True)
class Attempt:
    """A lookup that missed: what it read, for the full run to reuse."""

    inputs: run_inputs.Inputs
    opened: Opened


def settings(ctx: Context) -> run_inputs.Settings:
    return run_inputs.Settings(ctx.root, ctx.policies, ctx.overlays, ctx.strict, ctx.clusters,
                               ctx.read_outside)


def replay(ctx: Context, command: str, *, show_diff: bool = False) -> Attempt | None:
    """On a hit, print exactly what the full `command` prints and exit; otherwise what the
    full run can reuse (None: the record is off, `--no-cache`, or the inputs are unreadable)."""
    if not ctx.cache:
        return None
    wanted = settings(ctx)
    started = _start_early(ctx) if command == "compile" and not show_diff else None
    try:
        return _replay(ctx, command, wanted, show_diff, started)
    finally:
        if started is not None:
            started.close()


def _start_early(ctx: Context) -> Early | None:
    """For a delta compile: a child scanning the output tree and one importing the
    compiler, started now (`compiler.delta.early`; stopped when not needed)."""
    from ..delta.early import start
    from ..delta.run import enabled

    return start(ctx.root, ctx.overlays) if enabled() else None


def _replay(ctx: Context, command: str, wanted: run_inputs.Settings, show_diff: bool,
            started: Early | None) -> Attempt | None:
    inputs = run_inputs.lookup_inputs(wanted)
    if inputs is None:
        return None
    found = run_record.lookup(inputs, wanted, ctx.now, names=command != "check",
                              scanned=started.scan.fingerprints if started else None)
    _OUTCOME[0] = found.why or "hit"
    if os.environ.get(LOG_ENV):
        atexit.register(_log, os.environ[LOG_ENV])
    opened = dict(found.reread.opened) if found.reread is not None else {}
    if found.diagnostics is None and started is not None:
        _delta(ctx, inputs, wanted, started)  # exits when the edit was compiled alone
    if found.diagnostics is None:
        # The full run reads every policy file (the lookup trusted the memo's digests) and
        # keys the record by exactly what it read; a compile records the files for the memo.
        full = run_inputs.read_inputs(wanted, memo=command == "compile")
        return Attempt(full, opened) if full is not None else None
    diagnostics = found.diagnostics
    if command == "check":
        emit(diagnostics, ctx.fmt, diff="")
    else:
        if show_diff:
            print_diff("", ctx.fmt)
        report_written((0, 0, 0, len(found.files)), ctx.fmt)
        emit(diagnostics, ctx.fmt, files=found.files, **({"diff": ""} if show_diff else {}))
    allow_quick_exit()  # `replay` stops the children the delta compile started, if any
    sys.exit(exit_code(diagnostics))


def reuse(attempt: Attempt | None) -> dict[str, Any]:
    """`run_compile` keyword arguments: what a missed lookup already read and opened."""
    return {} if attempt is None else {"inputs": attempt.inputs, "opened": attempt.opened}


class Recorder:
    """Watches a compile (`common.Observer`) and records it when it succeeded and writing
    added nothing to its diagnostics."""

    def __init__(self, ctx: Context, attempt: Attempt) -> None:
        self.ctx = ctx
        self.attempt = attempt
        self.outputs = run_record.Outputs()
        self.diagnostics: list[Diagnostic] | None = None
        from ..delta.facts import Collector  # a full compile follows: the pipeline is loaded

        self.facts: Collector | None = Collector()

    def files(self, files: Mapping[str, bytes | Written]) -> None:
        self.outputs.add(files)

    def compiled(self, result: Result) -> None:
        self.diagnostics = list(result.diagnostics)

    def save(self, result: Result) -> None:
        if self.diagnostics is None or list(result.diagnostics) != self.diagnostics:
            return  # writing reported something (or never compiled): nothing to replay
        if run_record.save(self.attempt.inputs, settings(self.ctx), result, self.diagnostics,
                           self.ctx.now, self.outputs) and self.facts is not None:
            from ..delta.record import save_base

            save_base(self.ctx, self.attempt.inputs, result, self.facts)


# what the lookup found ("hit" or why not) and the delta compile ("applied", why not, or ""),
# for `_log`
_OUTCOME = ["not looked up", ""]


def _delta(ctx: Context, inputs: run_inputs.Inputs, wanted: run_inputs.Settings,
           started: Early) -> None:
    """Compile only the edited intents when that is sound (`compiler.delta.run`); on success
    print what the full compile prints and exit, else return having written nothing."""
    from ..delta.run import Miss, attempt

    try:
        done = attempt(ctx, inputs, wanted, started)
    except Miss as why:
        _OUTCOME[1] = str(why)
        return
    _OUTCOME[1] = "applied"
    if not done.failed:
        report_written(done.counts, ctx.fmt)
    emit(done.diagnostics, ctx.fmt, files=done.files() if ctx.fmt == "json" else [])
    allow_quick_exit()  # its children are stopped (`attempt`); it started no thread
    sys.exit(exit_code(done.diagnostics))


def _log(path: str) -> None:
    from ..delta.live_scan import preset_used

    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"outcome": _OUTCOME[0], "delta": _OUTCOME[1],
                   "modules": sorted(sys.modules),
                   "scan": "server" if preset_used() else "own"}, fh)
