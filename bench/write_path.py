"""Benchmark: the write stage alone, the staged writer against the per-file writer it replaced.

A file map like a fleet's (C clusters x N files of about 3 KB in a dozen namespaces) is written
by both writers into separate directories, in the same run, interleaved, best of R rounds:

- cold: into an empty directory;
- no change: plan + apply with the tree already up to date (the common CI/pre-commit case;
  the old writer re-reads every file, the new one trusts its hash manifest after `lstat`);
- one file: one file of one cluster changed (the new writer stages that cluster: hard links
  plus one written file, fsync, one renameat2).

The baseline is `compiler/write.py` of git revision BASELINE (the per-file mkstemp + os.replace
writer), loaded from Git. Ratios are new / old; below 1 means faster. Target: a no-change
write takes at most half the old writer's time (it still pays one lstat per file).
Run: `.venv/bin/python bench/write_path.py [--clusters 5] [--files 2000] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from compiler import write  # noqa: E402
from compiler.emit import HEADER  # noqa: E402

BASELINE = "9a1a5c6"  # the last revision with the per-file writer
TARGET = 0.5  # a no-change write at most half the old writer's time


def baseline_writer(rev: str) -> ModuleType:
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:compiler/write.py"],
                            check=True, capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("compiler.write_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "compiler"
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, "write_baseline.py", "exec"), module.__dict__)
    return module


def file_map(clusters: int, files: int, salt: str = "") -> dict[str, bytes]:
    body = "".join(f"  line{i}: value {i} of a generated object\n" for i in range(70))
    return {f"overlays/c{c}/ns{i % 12}/object-{i}.yaml":
            (HEADER + f"name: object-{i}{salt if i == 0 and c == 0 else ''}\n" + body).encode()
            for c in range(clusters) for i in range(files)}


def timed(writer: Callable[[Path, dict[str, bytes]], None], root: Path,
          wanted: dict[str, bytes]) -> float:
    start = time.perf_counter()
    writer(root, wanted)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE)
    args = parser.parse_args()
    old = baseline_writer(args.baseline)
    files = file_map(args.clusters, args.files)
    edited = file_map(args.clusters, args.files, salt="-edited")
    units = [f"overlays/c{c}" for c in range(args.clusters)]

    def old_write(root: Path, wanted: dict[str, bytes]) -> None:
        old.apply(old.plan(root, wanted, ["overlays"]))

    def new_write(root: Path, wanted: dict[str, bytes]) -> None:
        write.apply(write.plan(root, wanted, units, ["overlays"]))

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="mtlsc-write-bench-") as tmp:
        for rnd in range(args.rounds):
            for name, writer in (("old", old_write), ("new", new_write)):
                root = Path(tmp) / f"{name}-{rnd}"
                times = results.setdefault(name, {})
                for case, wanted in (("cold", files), ("no change", files),
                                     ("one file", edited), ("no change again", edited)):
                    spent = timed(writer, root, wanted)
                    times[case] = min(times.get(case, spent), spent)
                shutil.rmtree(root)
    ratios = {case: round(results["new"][case] / results["old"][case], 3)
              for case in results["old"]}
    report = {"files": args.clusters * args.files, "clusters": args.clusters,
              "megabytes": round(sum(len(v) for v in files.values()) / 1e6, 1),
              "rounds": args.rounds, "baseline": args.baseline,
              "seconds": {k: {c: round(t, 3) for c, t in v.items()} for k, v in results.items()},
              "new/old": ratios, "target": {"no change": TARGET}}
    print(json.dumps(report, indent=2))
    sys.exit(0 if ratios["no change"] <= TARGET else 1)


if __name__ == "__main__":
    main()
