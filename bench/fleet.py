"""Benchmark: a generated fleet of N GatewayIntents x C ClusterTargets (issue 10).

Everything is measured in one run, with the repetitions interleaved (cold, floor, validation,
edit, check, cold, floor, ...) so that load on a shared machine hits every measurement alike.
Reported are medians and their ratios (absolute times are not the point):

- cold: `mtlsc compile` in a subprocess into an empty overlays directory, without a cache;
- floor: what any tool must do at least: libyaml (PyYAML's CSafeLoader) composing every input
  file, plus writing the same output bytes into a fresh directory;
- check-jsonschema: validating only the emitted Gateways against the shipped Gateway schemas
  (one call per Gateway API version/channel);
- edit: change one intent, then `mtlsc compile` with the cache of the previous compile
  (three successive edits per repetition, each timed);
- edit-served: the same, with `mtlsc serve` running in the fleet (started, and its first
  look at the output trees taken, before the timed edits: a server is long-lived);
- check: `mtlsc check` with nothing changed (three per repetition);
- start-up: `mtlsc --version` against `python -c "import click"` (best of 5 each);
- peak RSS of a cold compile: largest single process (getrusage of the children) and the peak
  sum over the process tree (sampled from /proc every 20 ms, so worker pools count in full),
  from one more cold compile that is not timed (sampling takes CPU from the command).

Before each timed step the benchmark syncs the filesystem (`settle`), so that a step does not
pay for writing back what the previous one left dirty.

Run: `.venv/bin/python bench/fleet.py [N] [C] [--repeat R] [--jobs J]`, `--small` for a
smoke run (not a measurement). Prints a JSON report; exit 1 when a target is missed (not with
--small).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fleet_gen import API_VERSIONS, intent_path, write_fleet

BIN = Path(sys.executable).parent
SCHEMAS = Path(__file__).resolve().parent.parent / "schemas" / "gateway-api"
TARGETS = {"cold/floor": 4.0, "cold/check-jsonschema": 0.4, "edit-served/cold": 0.05,
           "check/cold": 0.05, "version/import-click": 2.0, "peak_pss_mb": 1024.0}


def _processes() -> tuple[dict[int, list[int]], dict[int, int]]:
    """Every process's children and resident memory (KiB), from one pass over /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return children, rss


def _tree(root_pid: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _tree_pss_kb(root_pid: int) -> int:
    """Proportional set size of a process and all its descendants, in KiB: pages shared
    after fork are split among the processes sharing them, so the sum is real memory."""
    total = 0
    for pid in _tree(root_pid, _processes()[0]):
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def _tree_rss_kb(root_pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    children, rss = _processes()
    return sum(rss.get(pid, 0) for pid in _tree(root_pid, children))


PEAK_PSS = [0]  # KiB: the largest proportional set size of any run's process tree
LAST_CPU = [0.0]  # CPU seconds (user + system) of the last run's process tree


def _children_cpu() -> float:
    """CPU seconds of every waited-for descendant so far (a command's own children count once
    the command has waited for them, which mtlsc always does)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None,
        ok: tuple[int, ...] = (0,), *, sample: bool = False) -> tuple[float, int]:
    """Seconds taken by one command, and with `sample` the peak RSS (KiB) of its process tree
    (its peak PSS goes to PEAK_PSS). Timed runs do not sample: reading /proc every 20 ms
    takes about a tenth of a CPU from the command measured, and more of a short one's."""
    settle()
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    peak = [0]
    if not sample:
        _, err = proc.communicate()
        elapsed = time.perf_counter() - start
        LAST_CPU[0] = _children_cpu() - cpu
        if proc.returncode not in ok:
            raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{err.decode()[-3000:]}")
        return elapsed, 0

    def sampler_loop() -> None:
        rounds = 0
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            if rounds % 5 == 0:  # smaps_rollup walks page tables: every 100 ms is enough
                PEAK_PSS[0] = max(PEAK_PSS[0], _tree_pss_kb(proc.pid))
            rounds += 1
            time.sleep(0.02)

    sampler = threading.Thread(target=sampler_loop, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    sampler.join()
    LAST_CPU[0] = _children_cpu() - cpu
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    return elapsed, peak[0]


def settle() -> None:
    """Write back what earlier steps left dirty (the floor leaves 130 MB) before a timed step
    starts, so that the step's own `fsync`s and `syncfs` do not pay for it: on ext4
    (data=ordered) an `fsync` commits the journal, which waits for the transaction's dirty
    blocks."""
    os.sync()


def discard(path: Path, trash: Path) -> None:
    """Move `path` out of the way instead of deleting it. On ext4, creating files soon after
    tens of thousands were deleted is several times slower (inode allocation skips recently
    deleted inodes, `recently_deleted()` in fs/ext4/ialloc.c): deleting the previous run's
    overlays right before a cold compile would time the kernel, not mtlsc. The trash is
    deleted once, after every measurement."""
    if path.exists():
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{len(list(trash.iterdir()))}-{path.name}")


def installed_bytecode(log: Callable[[str], None]) -> None:
    """Run mtlsc as an installed mtlsc runs: with its modules compiled to bytecode, as pip
    does when it installs a wheel. An editable install compiles them on first import, unless
    PYTHONDONTWRITEBYTECODE is set (as in some CI and sandbox shells), which would time
    Python compiling mtlsc's sources on every run instead of mtlsc."""
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        log("PYTHONDONTWRITEBYTECODE unset for the measured commands")
    spec = importlib.util.find_spec("compiler")
    if spec is not None and spec.submodule_search_locations:
        package = next(iter(spec.submodule_search_locations))
        subprocess.run([sys.executable, "-m", "compileall", "-q", package], check=True,
                       stdout=subprocess.DEVNULL)


def _env(cache: bool, jobs: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MTLSC_")}
    env["MTLSC_NO_SERVER"] = "1"  # never served, but where `serving` says so
    if not cache:
        env["MTLSC_NO_CACHE"] = "1"
    if jobs is not None:
        env["MTLSC_JOBS"] = str(jobs)
    return env


def floor(root: Path, outputs: dict[str, bytes]) -> float:
    """libyaml compose of every input + writing the same output bytes to a fresh directory."""
    inputs = sorted(p for p in (root / "policies").rglob("*.yaml"))
    target = Path(tempfile.mkdtemp(dir=root, prefix="floor-"))
    settle()
    start = time.perf_counter()
    for path in inputs:
        for _ in yaml.compose_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader):
            pass
    made: set[Path] = set()
    for rel, data in outputs.items():
        dest = target / rel
        if dest.parent not in made:
            dest.parent.mkdir(parents=True, exist_ok=True)
            made.add(dest.parent)
        dest.write_bytes(data)
    elapsed = time.perf_counter() - start
    discard(target, root / ".bench-trash")
    return elapsed


def gateway_groups(root: Path, clusters: int) -> dict[Path, list[str]]:
    """Schema file -> the emitted Gateway files of the clusters using that schema."""
    groups: dict[Path, list[str]] = {}
    for j in range(clusters):
        version, channel = API_VERSIONS[j % len(API_VERSIONS)]
        files = sorted(str(p) for p in (root / "overlays" / f"c{j}").glob("*/gateway-*.yaml"))
        groups.setdefault(SCHEMAS / version / channel / "gateway.v1.json", []).extend(files)
    return groups


def check_jsonschema(root: Path, groups: dict[Path, list[str]]) -> float:
    total = 0.0
    for schema, files in groups.items():
        chunk = 2000  # stay below the argument-length limit
        for at in range(0, len(files), chunk):
            total += run([str(BIN / "check-jsonschema"), "--schemafile", str(schema),
                          *files[at:at + chunk]], root)[0]
    return total


def two_cpu_speedup() -> float:
    """How much faster this machine runs two CPU-bound processes at once than one after the
    other (2.0: two whole CPUs; a shared or throttled VM gives less). The edit and check are
    split across processes, so this bounds what their parallelism can win here."""
    # the loop alone: importing this module (PyYAML, the generator) would be timed too
    code = "total = 0\nfor i in range(4_000_000):\n    total += i * i"

    def spins(n: int) -> float:
        start = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-S", "-c", code]) for _ in range(n)]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - start

    one = min(spins(1) for _ in range(3))
    two = min(spins(2) for _ in range(3))
    return round(2 * one / two, 2)


def startup(root: Path) -> tuple[float, float]:
    mtlsc = [min(run([str(BIN / "mtlsc"), "--version"], root)[0] for _ in range(5))]
    click = [min(run([sys.executable, "-c", "import click"], root)[0] for _ in range(5))]
    return mtlsc[0], click[0]


def read_outputs(root: Path) -> dict[str, bytes]:
    base = root / "overlays"
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in base.rglob("*") if p.is_file()}


def edit(root: Path, label: str) -> None:
    """Change one intent (its listener hostname): one gateway on every cluster changes."""
    path = intent_path(root, 7)
    text = re.sub(r"hostname: gw-7[-a-z0-9]*\.", f"hostname: gw-7-{label}.",
                  path.read_text(encoding="utf-8"))
    path.write_text(text, encoding="utf-8")


# Short commands are timed several times per repetition: a 0.5 s command feels a machine's
# passing noise far more than a 10 s compile, and the median of 9 samples is steadier than
# that of 3. Each edit is a new one (another hostname), compiled on top of the previous.
SHORT = 3
REPEATED = ("edit", "edit-served", "check")


def _answers(path: Path) -> bool:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(os.fspath(path))
        return True
    except OSError:
        return False
    finally:
        conn.close()


@contextmanager
def serving(root: Path, jobs: int | None) -> Iterator[dict[str, str]]:
    """`mtlsc serve` running in `root` (answering on its socket); yields the environment of
    commands it should take (the others run with MTLSC_NO_SERVER=1)."""
    env = _env(True, jobs)
    del env["MTLSC_NO_SERVER"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([str(BIN / "mtlsc"), "serve", "--idle-timeout", "3600"],
                                cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + 300
            while not _answers(root / ".mtlsc" / "serve.sock"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise SystemExit(f"mtlsc serve did not start:\n{log.read().decode()}")
                time.sleep(0.1)
            yield env
        finally:
            proc.terminate()
            proc.wait(timeout=120)
        log.seek(0)
        served = [line for line in log.read().decode().splitlines() if "(pid " in line]
        if not served:
            raise SystemExit("mtlsc serve ran no command: the served edits were not served")


def measure(root: Path, clusters: int, repeat: int, jobs: int | None,
            log: Callable[[str], None]) -> dict[str, object]:
    mtlsc = str(BIN / "mtlsc")
    times: dict[str, list[float]] = {k: [] for k in ("cold", "floor", "check-jsonschema",
                                                     "edit", "edit-served", "check")}
    cpu: dict[str, list[float]] = {k: [] for k in ("cold", "edit", "check")}
    for rep in range(repeat):
        discard(root / "overlays", root / ".bench-trash")
        discard(root / ".mtlsc" / "cache", root / ".bench-trash")
        elapsed, _ = run([mtlsc, "compile", "-q"], root, _env(False, jobs))
        times["cold"].append(elapsed)
        cpu["cold"].append(LAST_CPU[0])
        log(f"rep {rep}: cold {elapsed:.2f}s")
        # The cache for the edit and check runs: one cached compile over the same tree.
        run([mtlsc, "compile", "-q"], root, _env(True, jobs))
        times["floor"].append(floor(root, read_outputs(root)))
        times["check-jsonschema"].append(check_jsonschema(root, gateway_groups(root, clusters)))
        original = intent_path(root, 7).read_text(encoding="utf-8")
        for k in range(SHORT):
            edit(root, f"e{rep}{k}")
            times["edit"].append(run([mtlsc, "compile", "-q"], root, _env(True, jobs))[0])
            cpu["edit"].append(LAST_CPU[0])
        with serving(root, jobs) as env:
            for k in range(SHORT):
                edit(root, f"s{rep}{k}")
                times["edit-served"].append(run([mtlsc, "compile", "-q"], root, env)[0])
        intent_path(root, 7).write_text(original, encoding="utf-8")
        run([mtlsc, "compile", "-q"], root, _env(True, jobs))
        for _ in range(SHORT):
            times["check"].append(run([mtlsc, "check", "-q"], root, _env(True, jobs))[0])
            cpu["check"].append(LAST_CPU[0])
        log(f"rep {rep}: " + ", ".join(
            f"{k} {' '.join(f'{x:.2f}' for x in v[-SHORT if k in REPEATED else -1:])}s"
            for k, v in times.items()))
    version, click = startup(root)
    speedup = two_cpu_speedup()
    # Memory: one more cold compile, sampled, not timed.
    discard(root / "overlays", root / ".bench-trash")
    discard(root / ".mtlsc" / "cache", root / ".bench-trash")
    elapsed, peak_tree = run([mtlsc, "compile", "-q"], root, _env(False, jobs), sample=True)
    log(f"sampled cold compile: {elapsed:.2f}s, tree RSS {peak_tree // 1024} MB")
    shutil.rmtree(root / ".bench-trash", ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return {
        "seconds": {k: round(v, 3) for k, v in med.items()},
        "samples": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "ratios": {
            "cold/floor": round(med["cold"] / med["floor"], 3),
            "cold/check-jsonschema": round(med["cold"] / med["check-jsonschema"], 3),
            "edit/cold": round(med["edit"] / med["cold"], 4),
            "edit-served/cold": round(med["edit-served"] / med["cold"], 4),
            "check/cold": round(med["check"] / med["cold"], 4),
            "version/import-click": round(version / click, 3),
        },
        # not targets: what the commands cost in CPU (all processes), and what a second CPU
        # is worth on this machine (the edit's wall time depends on both)
        "cpu_seconds": {k: round(v, 3) for k, v in med_cpu.items()},
        "cpu_ratios": {"edit/cold": round(med_cpu["edit"] / med_cpu["cold"], 4),
                       "check/cold": round(med_cpu["check"] / med_cpu["cold"], 4)},
        "two_cpu_speedup": speedup,
        # the memory run's cold compile: sampled (slower), but a check on the timed ones (a
        # filesystem slow at creating files slows them far more than the edit, flattering it)
        "sampled_cold_seconds": round(elapsed, 3),
        "peak_rss_mb": round(peak_tree / 1024, 1),
        "peak_pss_mb": round(PEAK_PSS[0] / 1024, 1),
        "largest_process_rss_mb": largest,
        "startup_seconds": {"mtlsc --version": round(version, 4),
                            "import click": round(click, 4)},
    }


def memory(root: Path, jobs: int | None, log: Callable[[str], None]) -> dict[str, object]:
    """One cold compile: seconds, peak RSS of the process tree and of the largest process."""
    elapsed, tree = run([str(BIN / "mtlsc"), "compile", "-q"], root, _env(False, jobs),
                        sample=True)
    log(f"cold {elapsed:.2f}s, tree RSS {tree // 1024} MB")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return {"seconds": {"cold": round(elapsed, 3)}, "ratios": {},
            "peak_rss_mb": round(tree / 1024, 1), "peak_pss_mb": round(PEAK_PSS[0] / 1024, 1),
            "largest_process_rss_mb": largest}


def missed(report: dict[str, object]) -> list[str]:
    ratios = dict(report["ratios"])  # type: ignore[call-overload]
    # memory: the process tree's proportional set size (shared pages counted once); the RSS
    # sum is reported too but counts every page shared after fork once per process
    ratios["peak_pss_mb"] = report["peak_pss_mb"]
    return [f"{k} = {ratios[k]} > {limit}" for k, limit in TARGETS.items()
            if k in ratios and ratios[k] > limit]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("intents", nargs="?", type=int, default=2000)
    parser.add_argument("clusters", nargs="?", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=None, help="MTLSC_JOBS for the compiles")
    parser.add_argument("--keep", type=Path, help="generate the fleet here and keep it")
    parser.add_argument("--small", action="store_true", help="smoke run: 12 x 2, once")
    parser.add_argument("--memory", action="store_true",
                        help="only the cold compile: its time and peak RSS (for 10,000 x 5)")
    args = parser.parse_args()
    if args.small:
        args.intents, args.clusters, args.repeat = 12, 2, 1

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    installed_bytecode(log)
    with tempfile.TemporaryDirectory(prefix="mtlsc-fleet-") as tmp:
        root = args.keep or Path(tmp)
        start = time.perf_counter()
        write_fleet(root, args.intents, args.clusters)
        log(f"generated {args.intents} x {args.clusters} in {time.perf_counter() - start:.1f}s")
        report = memory(root, args.jobs, log) if args.memory else \
            measure(root, args.clusters, args.repeat, args.jobs, log)
    report["fleet"] = {"intents": args.intents, "clusters": args.clusters,
                       "repeat": args.repeat, "cpus": len(os.sched_getaffinity(0))}
    problems = [] if args.small else missed(report)
    report["missed"] = problems
    print(json.dumps(report, indent=2))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
