"""Delta compiles against compiles from scratch, over as many random edit sequences as asked.

    .venv/bin/python bench/delta_fuzz.py --seeds 0-99 --steps 8 [--intents 24] [--guarded]
                                         [--routes] [--served]

For each seed: a copy of a generated fleet (bench/fleet_gen.py) is compiled in full, then
`--steps` random edits (tests/delta_mutations.py) are made one after another; after each, the
real `mtlsc compile` runs (a delta compile where it applies, with `MTLSC_CROSSCHECK=1`) and
what it printed and wrote is compared with a compile of the same files from scratch. Prints
one line per edit and a JSON summary (how many edits, how many applied as delta compiles, the
seeds that differed); exits 1 when any did. A differing seed's repository is kept under
`--work` to look at; `tests/test_delta_fuzz.py` runs two seeds of this in the test suite.
With `--served`, each seed's repository has a `mtlsc serve` running and the edits' compiles
run in it (the compiles from scratch never do).
Not a timing: it takes about 2 s per edit on a 2-core machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.delta_mutations import OPS, ROUTE_OPS, run_sequence
from tests.fleet_support import make_fleet
from tests.record_support import mtlsc
from tests.test_delta_guardrails import with_rules
from tests.test_serve import served_commands, serving


def seeds(text: str) -> list[int]:
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=seeds, default=seeds("0-19"), help="e.g. 0-99")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--intents", type=int, default=24)
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--guarded", action="store_true", help="with the guardrail rules of "
                        "tests/test_delta_guardrails.py")
    parser.add_argument("--routes", action="store_true", help="also add routes to intents "
                        "(new object files: the kustomization listed anew)")
    parser.add_argument("--served", action="store_true", help="compile the edits in a "
                        "`mtlsc serve` running in the repository")
    parser.add_argument("--work", type=Path, default=None, help="where repositories go")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="mtlsc-delta-fuzz-"))
    fleet = make_fleet(work / "fleet", args.intents, args.clusters)
    if args.guarded:
        with_rules(fleet)
    outcomes: Counter[str] = Counter()
    failed: list[int] = []
    for seed in args.seeds:
        root = work / f"seed-{seed}" / "repo"
        shutil.copytree(fleet, root)
        if mtlsc(root, "compile", env={"MTLSC_SPARE_MIN": "1"}).code != 0:
            print(f"seed {seed}: the fleet does not compile", file=sys.stderr)
            return 2
        with serving(root) if args.served else contextlib.nullcontext() as server:
            for step in run_sequence(root, root.parent / "scratch", seed, args.steps,
                                     ROUTE_OPS if args.routes else OPS, args.served):
                outcomes["applied" if step.outcome == "applied" else "full or replayed"] += 1
                print(f"{seed} {step.edit} -> exit {step.code}, "
                      f"{step.outcome or 'replayed or full'}", flush=True)
                for difference in step.differences:
                    print(f"   DIFFERS {difference}", flush=True)
                if step.differences:
                    failed.append(seed)
            if server is not None:
                outcomes["served"] += len(served_commands(server[1]))
        if seed not in failed:
            shutil.rmtree(root.parent)
    edits = outcomes["applied"] + outcomes["full or replayed"]
    print(json.dumps({"edits": edits, **outcomes, "differing_seeds": failed,
                      "kept": str(work) if failed else None}, indent=2))
    if not failed and args.work is None:
        shutil.rmtree(work)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
