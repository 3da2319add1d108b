"""Benchmark: an edit written through spare trees against the full staged write of the same edit.

A file map like a fleet's (C clusters x N files of about 3 KB in 40 namespaces; by default
5 x 8,600, what a 2,000-intent fleet's cluster holds) is written into two repositories; then
each round changes 3 files per cluster (two changed, one created, the previous round's created
file deleted) and writes the change into both, interleaved, the order alternating:

- spare: `spare.write.write_changes` (the repository was first written with `keep_spare=True`,
  which gave every cluster a spare; each write leaves the swapped-out tree as the next spare);
  also timed with the hash manifests handed in already loaded (`live=`, what a caller that
  has them saves), and the manifests' load alone;
- full: `write.plan` + `write.apply` of the whole file map, the writer `mtlsc compile` uses
  (plan: an `lstat` per file against the hash manifest; apply: stage hard links, swap, remove
  the old tree, save the manifest); its apply alone is reported too.

Both trees are compared byte for byte at the end. Ratios are spare / full (medians over the
rounds); the target is the write's share of issue 10's edit budget (an edit <= 5 % of a cold
compile): at most 0.1 of the full write. Also reported once: the first write with
`keep_spare=True` of an unchanged tree, which links the spares (a one-off after a cold compile).
Run: `.venv/bin/python bench/spare_write.py [--clusters 5] [--files 8600] [--rounds 7]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from compiler import manifest, write  # noqa: E402
from compiler.emit import HEADER  # noqa: E402
from compiler.spare import write as spare_write  # noqa: E402

TARGET = 0.1
BODY = "".join(f"  line{i}: value {i} of a generated object\n" for i in range(70))


def file_map(clusters: int, files: int) -> dict[str, bytes]:
    return {f"overlays/c{c}/{_name(i)}": (HEADER + f"name: object-{i}\n" + BODY).encode()
            for c in range(clusters) for i in range(files)}


def _name(i: int) -> str:
    where = f"envoy/ns{i % 40}" if i % 2 else f"ns{i % 40}"
    return f"{where}/object-{i}.yaml"


def edit(files: dict[str, bytes], clusters: int, rnd: int
         ) -> tuple[dict[str, bytes], dict[str, dict[str, bytes | None]]]:
    """Round `rnd`'s version of the file map, and the change from the previous round's."""
    out = dict(files)
    changes: dict[str, dict[str, bytes | None]] = {}
    for c in range(clusters):
        unit = f"overlays/c{c}"
        change: dict[str, bytes | None] = {}
        for i in (rnd % 7, 100 + rnd % 5):
            change[_name(i)] = (HEADER + f"name: object-{i} round {rnd}\n" + BODY).encode()
        change[f"ns{rnd % 40}/added-{rnd}.yaml"] = (HEADER + f"added {rnd}\n").encode()
        if rnd:
            change[f"ns{(rnd - 1) % 40}/added-{rnd - 1}.yaml"] = None
        for rel, data in change.items():
            if data is None:
                out.pop(f"{unit}/{rel}", None)
            else:
                out[f"{unit}/{rel}"] = data
        changes[unit] = change
    return out, changes


def timed(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def by_spare(root: Path, units: list[str], changes: dict[str, dict[str, bytes | None]],
             given: bool, times: dict[str, list[float]]) -> None:
    """One delta write (`given`: with the manifests loaded beforehand, timed apart)."""
    live = None
    if given:
        spent, loaded = timed(lambda: {u: manifest.load_lazy(root, u) for u in units})
        times["manifest load"].append(spent)
        live = loaded if isinstance(loaded, dict) else None
    spent, done = timed(lambda: spare_write.write_changes(root, changes, live=live))
    if done is None:
        raise SystemExit("write_changes fell back to a full write")
    times["spare, manifests given" if given else "spare"].append(spent)


def by_full(root: Path, units: list[str], files: dict[str, bytes],
            times: dict[str, list[float]]) -> None:
    start = time.perf_counter()
    plan = write.plan(root, files, units)
    planned = time.perf_counter()
    write.apply(plan)
    times["full"].append(time.perf_counter() - start)
    times["full apply"].append(time.perf_counter() - planned)


def digest_tree(root: Path, units: list[str]) -> str:
    h = hashlib.sha256()
    for unit in units:
        for path in sorted((root / unit).rglob("*")):
            h.update(path.relative_to(root).as_posix().encode())
            if path.is_file():
                h.update(path.read_bytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--files", type=int, default=8600)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    units = [f"overlays/c{c}" for c in range(args.clusters)]
    files = file_map(args.clusters, args.files)
    times: dict[str, list[float]] = {k: [] for k in ("spare", "spare, manifests given",
                                                      "manifest load", "full", "full apply")}
    with tempfile.TemporaryDirectory(prefix="mtlsc-spare-bench-") as tmp:
        fast, full = Path(tmp) / "spare", Path(tmp) / "full"
        for root in (fast, full):
            write.apply(write.plan(root, files, units))
        first, _ = timed(lambda: write.apply(write.plan(fast, files, units), keep_spare=True))
        for rnd in range(1, 2 * args.rounds + 1):
            files, changes = edit(files, args.clusters, rnd)
            for spare_turn in ((True, False) if rnd % 2 else (False, True)):
                if spare_turn:
                    by_spare(fast, units, changes, rnd % 2 == 0, times)
                else:
                    by_full(full, units, files, times)
        same = digest_tree(fast, units) == digest_tree(full, units)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {"spare/full": round(med["spare"] / med["full"], 3),
              "spare/full apply": round(med["spare"] / med["full apply"], 3),
              "spare (manifests given)/full": round(med["spare, manifests given"] / med["full"],
                                                    3)}
    report = {"files": len(files), "clusters": args.clusters, "rounds": args.rounds,
              "changed per cluster": 3, "trees identical": same,
              "median seconds": {k: round(v, 4) for k, v in med.items()},
              "first keep_spare write (links the spares)": round(first, 3),
              "ratios": ratios, "target": {"spare/full": TARGET}}
    print(json.dumps(report, indent=2))
    sys.exit(0 if same and ratios["spare/full"] <= TARGET else 1)


if __name__ == "__main__":
    main()
