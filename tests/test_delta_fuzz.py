"""Delta compiles against compiles from scratch, over random edits (tests/delta_mutations.py).

tests/test_delta.py names the kinds of edit a delta compile must get right; this module draws
edits nobody listed: any value replaced by another the fleet uses under the same key, keys
and list items dropped, repeated, swapped or grafted from another document, another file's
document adopted, a file emptied, broken edits taken back, and (one seed) routes added; that
seed runs twice, once with `mtlsc serve` compiling the edits. After every edit the real
executable compiles (a delta compile where it applies, with `MTLSC_CROSSCHECK=1`) and what
it printed and wrote must equal a compile from scratch. The seeds are fixed, so a failure is
reproduced by its seed; `bench/delta_fuzz.py` runs as many seeds as one likes.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest

from tests.delta_mutations import OPS, ROUTE_OPS, Editor, run_sequence
from tests.fleet_support import make_fleet
from tests.record_support import mtlsc
from tests.test_delta_guardrails import with_rules
from tests.test_serve import served_commands, serving

INTENTS, CLUSTERS, STEPS = 12, 3, 6


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fuzz-fleet"), INTENTS, CLUSTERS)


# Each seed's sequence is known to reach `reached` (the outcome of a step whose edit says
# `edit`): seed 1 edits a CA bundle's namespace, which changes what other gateways see and
# must be refused (with that check taken out of `delta.checks.new_facts`, this test fails);
# seed 8 runs with guardrails, and its delta compiles apply; seed 5 adds a route, a delta
# compile that lists the clusters' files anew; seed 5 again with `mtlsc serve` running in the
# repository, whose workers compile the edits.
@pytest.mark.parametrize(("seed", "guarded", "ops", "edit", "reached", "served"),
                         [(1, False, OPS, "", "changed what other gateways", False),
                          (8, True, OPS, "", "applied", False),
                          (5, False, ROUTE_OPS, "add route", "applied", False),
                          (5, False, ROUTE_OPS, "add route", "applied", True)])
def test_random_edits_compile_as_from_scratch(fleet: Path, tmp_path: Path, seed: int,
                                              guarded: bool, ops: tuple[str, ...], edit: str,
                                              reached: str, served: bool) -> None:
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    if guarded:
        with_rules(root)
    assert mtlsc(root, "compile", env={"MTLSC_SPARE_MIN": "1"}).code == 0
    with serving(root) if served else contextlib.nullcontext() as server:
        steps = run_sequence(root, tmp_path / "scratch", seed, STEPS, ops, served)
        if server is not None:
            assert len(served_commands(server[1])) == len(steps)
    for step in steps:
        assert not step.differences, (f"seed {seed}, {step.edit}"
                                      f" ({step.outcome})\n" + "\n".join(step.differences))
    # the comparisons are not vacuous: delta compiles applied, and the seed still reaches
    # what it was chosen for
    outcomes = [(str(s.edit), s.outcome) for s in steps]
    assert any(outcome == "applied" for _, outcome in outcomes), outcomes
    assert any(edit in made and reached in outcome for made, outcome in outcomes), outcomes


def test_edits_are_reproduced_by_their_seed(fleet: Path, tmp_path: Path) -> None:
    made = []
    for name in ("a", "b"):
        root = tmp_path / name
        shutil.copytree(fleet / "policies", root / "policies")
        editor = Editor(root, 7)
        made.append([(e.path.relative_to(root), e.what, e.path.read_bytes())
                     for e in (editor.edit() for _ in range(5))])
    assert made[0] == made[1]
    assert any(what not in ("nothing", "revert") for _, what, _ in made[0])
