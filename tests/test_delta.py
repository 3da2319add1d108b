"""Delta compiles (`compiler.delta`): `mtlsc compile` after an edit of a few intents compiles
only those and carries everything else over. Whatever the edit, the overlays, the printed
diagnostics and the exit code equal a compile from scratch, and the delta applies exactly
when the edit cannot reach anything it does not recompute. The real executable runs against
a generated fleet (bench/fleet_gen.py) with `MTLSC_CROSSCHECK=1`, which also compares each
delta compile with a full compile in memory before it writes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.fleet_gen import intent_path
from tests.fleet_support import apply_edit, make_fleet
from tests.record_support import Run, mtlsc

INTENTS, CLUSTERS = 12, 3
# Spare trees for small output directories too (docs/output.md#spare-trees).
ENV = {"MTLSC_SPARE_MIN": "1", "MTLSC_CROSSCHECK": "1"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("delta-fleet"), INTENTS, CLUSTERS)


def overlays(root: Path) -> dict[str, bytes]:
    top = root / "overlays"
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(top.rglob("*")) if p.is_file()}


def delta_of(root: Path) -> str:
    log = root.parent / f"{root.name}-record-log.json"
    return str(json.loads(log.read_text()).get("delta", ""))


def shown(run: Run) -> tuple[int, bytes, list[bytes]]:
    """What a user sees, but the `wrote ...` line (a write from scratch writes everything)."""
    lines = [line for line in run.stderr.splitlines() if not line.startswith(b"wrote ")]
    return run.code, run.stdout, lines


def from_scratch(root: Path, scratch: Path) -> tuple[Run, dict[str, bytes]]:
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for name in ("policies", "pki"):
        shutil.copytree(root / name, scratch / name)
    done = mtlsc(scratch, "compile", "--no-cache", env={"MTLSC_NO_DELTA": "1"})
    return done, overlays(scratch)


def copy_of(fleet: Path, tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    assert mtlsc(root, "compile", env=ENV).code == 0  # the base: a full, recorded compile
    return root


def compile_and_compare(root: Path, tmp_path: Path) -> str:
    done = mtlsc(root, "compile", env=ENV)
    scratch, files = from_scratch(root, tmp_path / "scratch")
    assert shown(done) == shown(scratch)
    if done.code == 0:
        assert overlays(root) == files
    return delta_of(root)


# (edit, whether a delta compile applies): hostnames, modes, an existing override's patch
# and a new route change nothing other gateways see, and an edit with errors stops the
# compile where the full compile stops; the rest falls back to the full compile.
CASES = [("hostname", True), ("mode", True), ("override-edit", True), ("add", False),
         ("remove", False), ("override", False), ("cluster", False), ("ca", False),
         ("break", True), ("unknown-bundle", True), ("route", True), ("bundle", False),
         ("rename", False)]


@pytest.mark.parametrize(("kind", "applies"), CASES)
def test_an_edit_compiles_as_from_scratch(fleet: Path, tmp_path: Path, kind: str,
                                          applies: bool) -> None:
    root = copy_of(fleet, tmp_path)
    i = 0 if kind == "override-edit" else 3  # gw-0 has an override file of its own
    apply_edit(root, kind, i, 1)
    outcome = compile_and_compare(root, tmp_path)
    assert (outcome == "applied") == applies, outcome


def test_successive_edits_and_a_revert_stay_delta_compiles(fleet: Path,
                                                           tmp_path: Path) -> None:
    root = copy_of(fleet, tmp_path)
    original = intent_path(root, 5).read_text(encoding="utf-8")
    for step, kind in enumerate(("hostname", "mode", "mode")):
        apply_edit(root, kind, 5, step)
        assert compile_and_compare(root, tmp_path) == "applied", kind
    intent_path(root, 5).write_text(original, encoding="utf-8")
    assert compile_and_compare(root, tmp_path) == "applied"
    # what the delta compile recorded is replayed by a no-change check and compile
    check = mtlsc(root, "check", env=ENV)
    assert (check.code, check.outcome) == (0, "hit")
    again = mtlsc(root, "compile", env=ENV)
    assert (again.code, again.outcome) == (0, "hit")


def test_routes_added_and_taken_away_list_the_cluster_files_anew(fleet: Path,
                                                                  tmp_path: Path) -> None:
    """A new route is one more object file on every cluster, and a route taken away one
    less: the delta compile writes or removes it and lists the files in each cluster's
    kustomization anew, as a compile from scratch does; so does going back to the base."""
    root = copy_of(fleet, tmp_path)
    intent = intent_path(root, 3)
    original = intent.read_text(encoding="utf-8")
    apply_edit(root, "route", 3, 1)
    one = intent.read_text(encoding="utf-8")
    assert compile_and_compare(root, tmp_path) == "applied"
    apply_edit(root, "route", 3, 2)
    assert compile_and_compare(root, tmp_path) == "applied"
    assert any(p.name == "httproute-extra-2.yaml" for p in (root / "overlays").rglob("*"))
    intent.write_text(one, encoding="utf-8")  # the second route taken away again
    assert compile_and_compare(root, tmp_path) == "applied"
    assert not any(p.name == "httproute-extra-2.yaml" for p in (root / "overlays").rglob("*"))
    intent.write_text(original, encoding="utf-8")
    assert compile_and_compare(root, tmp_path) == "applied"
    check = mtlsc(root, "check", env=ENV)
    assert (check.code, check.outcome) == (0, "hit")


def test_a_route_another_gateway_emits_is_compiled_in_full(fleet: Path,
                                                           tmp_path: Path) -> None:
    """An object file another gateway already emits (here a route of the same name in the
    same namespace: two gateways emitting different objects, an error) is not a new file of
    the cluster: the full compile reports it."""
    root = copy_of(fleet, tmp_path)

    def add_route(i: int) -> None:
        path = intent_path(root, i)
        text = path.read_text(encoding="utf-8")
        if "  routes:\n" not in text:
            text += "  routes:\n"
        path.write_text(text + f"  - name: shared-route\n    namespace: {namespace}\n"
                        f"    hostnames: [gw-{i}.fleet.example]\n    pathPrefix: /shared\n"
                        "    backends:\n    - {service: shared, port: 8080}\n",
                        encoding="utf-8")

    body = intent_path(root, 3).read_text(encoding="utf-8")
    namespace = body.split("namespace: ", 1)[1].split("\n", 1)[0]  # the intent's own
    add_route(4)  # another gateway's route in that namespace: compiled in full
    assert compile_and_compare(root, tmp_path) != "applied"
    add_route(3)
    assert "another gateway" in compile_and_compare(root, tmp_path)


def test_a_kustomization_entry_that_does_not_give_its_bytes_is_ignored(fleet: Path,
                                                                      tmp_path: Path) -> None:
    """The kustomization a delta compile lists anew comes from an entry that must emit the
    recorded bytes again: a changed entry (well-formed, wrong) means the full compile."""
    from compiler.cache_store import CACHE_DIR, EntryStore
    from compiler.delta import kustomization

    root = copy_of(fleet, tmp_path)
    store = EntryStore(root / CACHE_DIR)
    keys = sorted(p.name for p in (root / CACHE_DIR / kustomization.KIND).rglob("*")
                  if p.is_file())
    assert keys
    for key in keys:
        value = store.get(kustomization.KIND, key)
        value["resources"] = value["resources"][1:]  # one file fewer: other bytes
        store.put(kustomization.KIND, key, value)
    apply_edit(root, "route", 3, 1)
    assert compile_and_compare(root, tmp_path).startswith("the base has no kustomization")


def test_edits_with_errors_after_delta_compiles_report_what_the_full_compile_does(
        fleet: Path, tmp_path: Path) -> None:
    """The record of a delta compile that changed the diagnostics (a mode edit adds or drops
    a warning) keeps their stages too: an edit with errors after it stops where the full
    compile does, writes nothing, and taking the error back is a delta compile again."""
    root = copy_of(fleet, tmp_path)
    apply_edit(root, "mode", 5, 0)
    assert compile_and_compare(root, tmp_path) == "applied"
    written = overlays(root)
    for kind in ("unknown-bundle", "break"):
        before = intent_path(root, 3).read_text(encoding="utf-8")
        apply_edit(root, kind, 3, 1)
        assert compile_and_compare(root, tmp_path) == "applied", kind
        assert overlays(root) == written
        intent_path(root, 3).write_text(before, encoding="utf-8")
    apply_edit(root, "hostname", 3, 2)
    assert compile_and_compare(root, tmp_path) == "applied"


@pytest.mark.parametrize("kind", ["mode", "hostname"])
def test_a_check_after_a_delta_compile_replays_its_diagnostics(fleet: Path, tmp_path: Path,
                                                               kind: str) -> None:
    """The record a delta compile leaves holds its own diagnostics: new ones when the edit
    changed them (a mode edit adds or removes a warning), the base's text when it did not;
    a no-change `check` replays them as a compile from scratch prints them."""
    root = copy_of(fleet, tmp_path)
    apply_edit(root, kind, 5, 0)
    assert compile_and_compare(root, tmp_path) == "applied"
    check = mtlsc(root, "check", env=ENV)
    assert check.outcome == "hit"
    scratch, _ = from_scratch(root, tmp_path / "scratch")
    assert shown(check) == shown(scratch)


def test_edits_of_two_intents_at_once(fleet: Path, tmp_path: Path) -> None:
    root = copy_of(fleet, tmp_path)
    apply_edit(root, "hostname", 2, 1)
    apply_edit(root, "mode", 7, 1)
    assert compile_and_compare(root, tmp_path) == "applied"


@pytest.mark.parametrize("kind", ["hostname", "route"])
def test_the_json_report_of_a_delta_compile_lists_every_file(fleet: Path, tmp_path: Path,
                                                            kind: str) -> None:
    root = copy_of(fleet, tmp_path)
    apply_edit(root, kind, 4, 1)
    done = mtlsc(root, "compile", "--format", "json", env=ENV)
    assert delta_of(root) == "applied"
    scratch, _ = from_scratch(root, tmp_path / "scratch")
    full = mtlsc(tmp_path / "scratch", "compile", "--format", "json",
                 env={"MTLSC_NO_DELTA": "1"})
    assert json.loads(done.stdout) == json.loads(full.stdout)
    assert scratch.code == 0


def test_an_overlay_edited_by_hand_is_repaired_by_the_full_compile(fleet: Path,
                                                                  tmp_path: Path) -> None:
    root = copy_of(fleet, tmp_path)
    victim = next(p for p in sorted((root / "overlays").rglob("gateway-*.yaml")))
    with victim.open("ab") as fh:  # in place: the inode the spare shares is changed too
        fh.write(b"# edited by hand\n")
    apply_edit(root, "hostname", 3, 1)
    assert compile_and_compare(root, tmp_path) != "applied"


def test_without_a_base_or_with_deltas_off_the_full_compile_runs(fleet: Path,
                                                                 tmp_path: Path) -> None:
    root = copy_of(fleet, tmp_path)
    apply_edit(root, "hostname", 3, 1)
    done = mtlsc(root, "compile", env={**ENV, "MTLSC_NO_DELTA": "1"})
    assert done.code == 0 and delta_of(root) == ""
    shutil.rmtree(root / ".mtlsc" / "cache" / "delta")
    apply_edit(root, "mode", 3, 2)
    assert compile_and_compare(root, tmp_path) == "no delta base"


def test_an_overlays_tree_made_anew_gets_fresh_spares(fleet: Path, tmp_path: Path) -> None:
    """After `rm -rf overlays` and a compile without the cache, the base no longer describes
    the tree and the spares are of the old one: the next edit is compiled in full, which
    records a new base and replaces the stale spares, so the edit after it is a delta."""
    root = copy_of(fleet, tmp_path)
    shutil.rmtree(root / "overlays")
    assert mtlsc(root, "compile", "--no-cache", env=ENV).code == 0
    apply_edit(root, "hostname", 3, 1)
    assert compile_and_compare(root, tmp_path) == "an output directory is not exactly as " \
        "recorded"
    apply_edit(root, "mode", 3, 2)
    assert compile_and_compare(root, tmp_path) == "applied"


def test_stale_spares_are_replaced_by_a_compile_that_writes_nothing(fleet: Path,
                                                                     tmp_path: Path) -> None:
    """bench/fleet.py's sequence: a new overlays tree and cache, a cold compile, then a
    compile with the cache that has nothing to write: it must replace the spares of the old
    tree (left in .mtlsc/write), or every later edit would be compiled in full."""
    root = copy_of(fleet, tmp_path)
    shutil.rmtree(root / "overlays")
    shutil.rmtree(root / ".mtlsc" / "cache")
    assert mtlsc(root, "compile", "--no-cache", env=ENV).code == 0
    assert mtlsc(root, "compile", env=ENV).code == 0
    apply_edit(root, "hostname", 3, 1)
    assert compile_and_compare(root, tmp_path) == "applied"
