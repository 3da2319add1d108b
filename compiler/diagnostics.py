"""Diagnostics are data: every problem the compiler finds is a value with a place.

One `Diagnostic` type serves every reporter (text, JSON, GitHub annotations, later SARIF).
Stages return diagnostics instead of raising, so a run reports every problem in every file,
not just the first one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


class ExitCode(enum.IntEnum):
    """Documented process exit codes (docs/cli.md)."""

    OK = 0
    INVALID = 1  # invalid input or policy violation
    USAGE = 2  # wrong command-line usage
    SOURCE = 3  # a certificate source or the filesystem failed
    DRIFT = 4  # `check`: valid input, but the committed overlays differ from the compile
    INTERNAL = 70  # a bug in mtlsc: an unexpected exception (cli/guard.py); EX_SOFTWARE


DRIFT_CODE = "Drift"


@dataclass(frozen=True, slots=True, order=True)
class Location:
    """A place in a source file; line and column are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True, order=True)
class Related:
    """Another place that explains a diagnostic, e.g. the override that caused it."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found: its code, severity and message, where it is, and a hint to fix it."""

    code: str
    severity: Severity
    message: str
    location: Location | None = None
    hint: str | None = None
    # Failures of the outside world (certificate source, filesystem) exit 3, not 1.
    source_failure: bool = False
    # The clusters whose compile found this (sorted); empty when it holds for every cluster.
    clusters: tuple[str, ...] = ()
    related: tuple[Related, ...] = ()

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    @property
    def cluster(self) -> str | None:
        """The cluster(s) this diagnostic is about, for reporters: `prod-eu, prod-us`."""
        return ", ".join(self.clusters) or None

    def at(self, location: Location | None) -> Diagnostic:
        return replace(self, location=location)

    def in_clusters(self, *names: str) -> Diagnostic:
        # Spelled out rather than `replace` (several times faster; a compile tags every
        # diagnostic with its cluster): tests/test_diagnostic_context.py checks that this
        # keeps every field.
        return Diagnostic(self.code, self.severity, self.message, self.location, self.hint,
                          self.source_failure, tuple(sorted({*self.clusters, *names})),
                          self.related)

    def with_related(self, *found: Related) -> Diagnostic:
        return Diagnostic(self.code, self.severity, self.message, self.location, self.hint,
                          self.source_failure, self.clusters,
                          tuple(sorted({*self.related, *found})))

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (
            loc.file if loc else "",
            loc.line if loc else 0,
            loc.col if loc else 0,
            self.code,
            self.message,
        )


def error(code: str, message: str, location: Location | None = None,
          hint: str | None = None, *, source_failure: bool = False) -> Diagnostic:
    return Diagnostic(code, Severity.ERROR, message, location, hint, source_failure)


def warning(code: str, message: str, location: Location | None = None,
            hint: str | None = None) -> Diagnostic:
    return Diagnostic(code, Severity.WARNING, message, location, hint)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


def escalate(diagnostics: Iterable[Diagnostic], strict: bool) -> list[Diagnostic]:
    """Under --strict every warning becomes an error."""
    if not strict:
        return list(diagnostics)
    return [replace(d, severity=Severity.ERROR) for d in diagnostics]


def exit_code(diagnostics: Iterable[Diagnostic]) -> ExitCode:
    errors = [d for d in diagnostics if d.is_error]
    if not errors:
        return ExitCode.OK
    if any(d.source_failure for d in errors):
        return ExitCode.SOURCE
    if all(d.code == DRIFT_CODE for d in errors):
        return ExitCode.DRIFT  # only drift: tell it apart from invalid input
    return ExitCode.INVALID


def for_cluster(diagnostics: Iterable[Diagnostic], name: str) -> list[Diagnostic]:
    """Tag every diagnostic of one cluster's compile with the cluster's name."""
    return [d.in_clusters(name) for d in diagnostics]


MergeKey = tuple[tuple[str, int, int, str, str], Severity, str | None]


def merge_key(d: Diagnostic) -> MergeKey:
    """What `sorted_diagnostics` merges diagnostics by (the same finding)."""
    return (d.sort_key(), d.severity, d.hint)


def sorted_diagnostics(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Sorted, one per problem: the same finding in several clusters becomes one diagnostic
    naming them all (and every related location any of them had)."""
    unique: dict[MergeKey, Diagnostic] = {}
    for d in diagnostics:
        key = merge_key(d)
        first = unique.setdefault(key, d)
        if first is not d:
            unique[key] = first.in_clusters(*d.clusters).with_related(*d.related)
    return [unique[k] for k in sorted(unique, key=lambda k: (k[0], k[1].value, k[2] or ""))]


# The stages after which a compile with errors stops (`pipeline._compile`): reading the
# policy files, the checks before resolving, resolving (with the checks of references);
# everything after them (fetching, certificates, guardrails, rendering) is the last stage.
LOAD_STAGE, CHECK_STAGE, RESOLVE_STAGE, LAST_STAGE = 1, 2, 3, 9
Span = tuple[int, int]  # the first and the last stage a merged diagnostic has parts from


def stage_spans(diagnostics: Sequence[Diagnostic], marks: Sequence[int]) -> dict[MergeKey, Span]:
    """Per merged diagnostic (`merge_key`) of `diagnostics` in the order a compile made them:
    the stages its parts come from. `marks[n]` is where stage n + 1's diagnostics end (a
    compile that stopped has fewer marks; after the last mark: `LAST_STAGE`). A compile that
    stops after stage k reports, of these, exactly the ones whose span ends at k or before
    (those starting after k it never made; one spanning k it made only in part)."""
    spans: dict[MergeKey, Span] = {}
    bounds = list(marks)
    for i, d in enumerate(diagnostics):
        stage = next((n + 1 for n, end in enumerate(bounds) if i < end), LAST_STAGE)
        key = merge_key(d)
        first, last = spans.get(key, (stage, stage))
        spans[key] = (min(first, stage), max(last, stage))
    return spans
