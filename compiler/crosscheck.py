"""A debug switch that proves the incremental paths on real repositories.

With `MTLSC_CROSSCHECK=1` a compile that uses the cache runs twice: first from scratch (no
cache, no record of resolved gateways), then as usual. Any difference in the overlay bytes, the
diagnostics, the resolved model or the lock is a bug in the incremental paths, and the run
stops with an internal error naming the first differences (exit 70) instead of writing
anything. It roughly doubles the time of a compile; it is meant for CI jobs of mtlsc itself
and for reporting a suspected cache bug (docs/scale.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import ClusterSink, Result
    from .render_units import Content

ENV = "MTLSC_CROSSCHECK"
SHOWN = 5


class CrosscheckError(RuntimeError):
    """The incremental compile differs from a compile from scratch (an mtlsc bug)."""


def enabled() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def _files(name: str, fresh: Mapping[str, Content], cached: Mapping[str, Content]
           ) -> list[str]:
    out = [f"{name} {rel}: only from scratch" for rel in sorted(set(fresh) - set(cached))]
    out += [f"{name} {rel}: only incremental" for rel in sorted(set(cached) - set(fresh))]
    out += [f"{name} {rel}: different bytes" for rel in sorted(set(fresh) & set(cached))
            if fresh[rel] != cached[rel]]
    return out


def differences(fresh: object, cached: object, fresh_files: Mapping[str, Content],
                cached_files: Mapping[str, Content]) -> list[str]:
    """What differs between two `pipeline.Result`s (compared field by field) and the files
    each produced."""
    from .cache import canonical  # here: `enabled` is asked by every delta compile

    out = _files("file", fresh_files, cached_files)
    for name in ("diagnostics", "model", "pins", "output_dirs", "all_clusters", "posture",
                 "waivers"):
        a, b = getattr(fresh, name), getattr(cached, name)
        try:
            same = canonical(a) == canonical(b)
        except TypeError:
            same = a == b
        if not same:
            out.append(f"{name} differ")
    return out


def check(fresh: object, cached: object, fresh_files: Mapping[str, Content],
          cached_files: Mapping[str, Content]) -> None:
    found = differences(fresh, cached, fresh_files, cached_files)
    if found:
        more = f" (and {len(found) - SHOWN} more)" if len(found) > SHOWN else ""
        raise CrosscheckError(f"{ENV}: the incremental compile differs from a compile from "
                              f"scratch: {'; '.join(found[:SHOWN])}{more}. This is an mtlsc "
                              "bug; please report it, and run with --no-cache meanwhile")


def run_both(compile_with: Callable[[bool, ClusterSink | None], Result],
             sink: ClusterSink | None) -> Result:
    """`compile_with(memo, sink)` from scratch (memo False), then with the cache; compare.
    The clusters the incremental compile handed to its sink are handed to `sink`, in the
    same order, once both compiles are done and agree."""
    fresh_calls: list[tuple[str, dict[str, Content]]] = []
    cached_calls: list[tuple[str, dict[str, Content]]] = []

    def keep(into: list[tuple[str, dict[str, Content]]]) -> ClusterSink:
        def put(output_dir: str, files: dict[str, Content]) -> None:
            into.append((output_dir, files))
        return put

    fresh = compile_with(False, keep(fresh_calls) if sink is not None else None)
    result = compile_with(True, keep(cached_calls) if sink is not None else None)
    fresh_files = {rel: data for _, files in fresh_calls for rel, data in files.items()}
    cached_files = {rel: data for _, files in cached_calls for rel, data in files.items()}
    check(fresh, result, {**fresh_files, **fresh.files}, {**cached_files, **result.files})
    if sink is not None:
        for output_dir, files in cached_calls:
            sink(output_dir, files)
    return result
