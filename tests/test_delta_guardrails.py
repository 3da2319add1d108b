"""Delta compiles in a repository with guardrails (`compiler.delta`, docs/scale.md).

The sub-compile judges the edited gateways and their ports again and keeps every other verdict
of the base, which is sound only while no rule reads other gateways than the one it judges
(`cluster.gateways`) and the base's verdicts on the edited gateways stand in their own
files; the edited intents' waivers are checked and honoured again and can only bring the
record's clock horizon closer. Each case runs the real executable on a generated
fleet with `MTLSC_CROSSCHECK=1` (every delta compile is compared with a full compile in
memory before it writes) and compares what it printed and wrote with a compile from scratch.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest

from bench.fleet_gen import intent_path
from compiler import run_record
from compiler.cache_store import CACHE_DIR, EntryStore
from compiler.delta import base as delta_base
from compiler.diagnostics import Diagnostic, Location, Severity
from compiler.guardrails import Rule, reads_one_gateway
from compiler.k8s.cel import fields_read
from compiler.verdicts import verdict_gateway
from tests.fleet_support import apply_edit, make_fleet
from tests.record_support import mtlsc
from tests.test_delta import CASES, ENV, compile_and_compare, overlays

INTENTS, CLUSTERS = 12, 3

# A port rule the mode edit toggles, a gateway rule the second hostname edit breaks, and a
# cluster rule whose verdict (at the ClusterTarget) no edit of an intent can change.
RULES = """\
apiVersion: mtlsc.dev/v1alpha1
kind: Guardrail
metadata: {name: org}
spec:
  rules:
  - name: no-fallback
    scope: port
    expression: "port.mode != 'AllowInsecureFallback'"
    severity: warning
    message: ports should require a valid client certificate
  - name: no-e1-hosts
    scope: gateway
    selector: {environments: [prod, staging]}
    expression: "!gateway.listeners.exists(l, l.hostname.contains('-e1.')) || cluster.name == 'c9'"
    severity: warning
    message: hostnames ending in -e1 are reserved
  - name: not-c1
    scope: cluster
    expression: "cluster.name != 'c1'"
    severity: warning
    message: c1 is being retired
"""


def with_rules(root: Path, text: str = RULES) -> Path:
    (root / "policies" / "guardrails").mkdir(parents=True, exist_ok=True)
    (root / "policies" / "guardrails" / "org.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_rules(make_fleet(tmp_path_factory.mktemp("guarded-fleet"), INTENTS, CLUSTERS))


def copy_of(fleet: Path, tmp_path: Path, rules: str | None = None) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    if rules is not None:
        with_rules(root, rules)
    base = mtlsc(root, "compile", env=ENV)
    assert base.code == 0, base.stderr
    assert b"GuardrailViolation" in base.stderr  # the fleet does break the rules
    return root


# The edits of `test_delta` whose outcome the sub-compile decides: adding or removing a file,
# editing the ClusterTargets or a certificate are refused by the checks of the base, whatever
# the guardrails (and keep the suite a minute shorter on a slow machine).
REACHING = [(kind, applies) for kind, applies in CASES
            if kind not in ("add", "remove", "cluster", "ca")]


@pytest.mark.parametrize(("kind", "applies"), REACHING)
def test_every_kind_of_edit_with_guardrails_compiles_as_from_scratch(
        fleet: Path, tmp_path: Path, kind: str, applies: bool) -> None:
    """The edits of `test_delta`, in the guarded fleet: the rules change no outcome."""
    root = copy_of(fleet, tmp_path)
    apply_edit(root, kind, 0 if kind == "override-edit" else 3, 1)
    outcome = compile_and_compare(root, tmp_path)
    assert (outcome == "applied") == applies, outcome


def test_mode_edits_with_guardrails_compile_alone_and_as_from_scratch(fleet: Path,
                                                                       tmp_path: Path) -> None:
    root = copy_of(fleet, tmp_path)
    for step in range(3):  # each toggles the mode: `no-fallback` breaks, mends, breaks
        apply_edit(root, "mode", 3, step)
        assert compile_and_compare(root, tmp_path) == "applied", step


def test_a_verdict_the_edit_adds_and_removes_is_reported_exactly(fleet: Path,
                                                                  tmp_path: Path) -> None:
    root = copy_of(fleet, tmp_path)
    original = intent_path(root, 3).read_text(encoding="utf-8")
    shown = b"gateway team-3/gw-3 violates guardrail org/no-e1-hosts"
    apply_edit(root, "hostname", 3, 1)  # gw-3-e1.fleet.example: breaks `no-e1-hosts`
    assert compile_and_compare(root, tmp_path) == "applied"
    assert shown in mtlsc(root, "check", env=ENV).stderr
    intent_path(root, 3).write_text(original, encoding="utf-8")
    assert compile_and_compare(root, tmp_path) == "applied"
    assert shown not in mtlsc(root, "check", env=ENV).stderr


def test_a_rule_reading_every_gateway_means_the_full_compile(fleet: Path,
                                                              tmp_path: Path) -> None:
    rules = RULES + """\
  - name: few-gateways
    scope: cluster
    expression: "cluster.gateways.size() < 5"
    severity: warning
    message: too many gateways on one cluster
"""
    root = copy_of(fleet, tmp_path, rules)
    apply_edit(root, "hostname", 3, 0)
    assert compile_and_compare(root, tmp_path) == "a guardrail rule reads every gateway of " \
        "a cluster"


def recorded_horizon(root: Path) -> str | None:
    """The clock horizon of the newest run record (the delta head's)."""
    store = EntryStore(root / CACHE_DIR, writable=False)
    found = delta_base.load(store, delta_base.head_key(root, root / "policies", "overlays"))
    assert found is not None
    raw = store.get(run_record.KIND, found.record)
    assert isinstance(raw, dict)
    until = raw["validUntil"]
    return None if until is None else str(until)


def set_horizon(root: Path, until: str) -> None:
    store = EntryStore(root / CACHE_DIR)
    found = delta_base.load(store, delta_base.head_key(root, root / "policies", "overlays"))
    assert found is not None
    raw = store.get(run_record.KIND, found.record)
    store.put(run_record.KIND, found.record, {**raw, "validUntil": until})
    assert recorded_horizon(root) == until


def waive(root: Path, i: int, rule: str, expires: str) -> None:
    intent = intent_path(root, i)
    intent.write_text(intent.read_text(encoding="utf-8") + (
        f"  guardrailWaivers:\n  - {{rule: {rule}, reason: migration, owner: team-{i}, "
        f"expires: '{expires}'}}\n"), encoding="utf-8")


def test_waivers_in_an_edited_intent_waive_its_verdicts_and_bound_the_record(
        fleet: Path, tmp_path: Path) -> None:
    root = copy_of(fleet, tmp_path)
    apply_edit(root, "mode", 3, 0)
    assert compile_and_compare(root, tmp_path) == "applied"
    fallback = b"gateway team-3/gw-3 port"
    assert fallback in mtlsc(root, "check", env=ENV).stderr
    expires = datetime.now(UTC).date() + timedelta(days=1)  # a midnight passing is harmless
    lapse = datetime.combine(expires + timedelta(days=1), time(), UTC)
    # The fleet's certificates expire at midnight, so its horizon (guardrails read `daysLeft`)
    # is the next midnight, as the waiver's lapse: put the base's a week later to see the
    # lapse take its place.
    set_horizon(root, (lapse + timedelta(days=7)).isoformat())
    waive(root, 3, "no-fallback", expires.isoformat())  # lapses at the midnight after
    assert compile_and_compare(root, tmp_path) == "applied"
    assert fallback not in mtlsc(root, "check", env=ENV).stderr
    assert recorded_horizon(root) == lapse.isoformat()


# An error in a waiver stops the compile (after resolving, or after reading the files for one
# the schema rejects): the delta compile reports what the full compile does, and writes nothing.
@pytest.mark.parametrize(("rule", "expires"), [
    ("no-such-rule", "2999-01-01"),  # UnknownGuardrailRule
    ("no-fallback", "2001-01-01"),  # ExpiredGuardrailWaiver
    ("no-fallback", "someday"),  # the schema's date pattern
])
def test_a_bad_waiver_in_an_edited_intent_fails_as_the_full_compile_does(
        fleet: Path, tmp_path: Path, rule: str, expires: str) -> None:
    root = copy_of(fleet, tmp_path)
    before = overlays(root)
    waive(root, 3, rule, expires)
    assert compile_and_compare(root, tmp_path) == "applied"
    assert overlays(root) == before


def test_an_edit_that_breaks_an_error_rule_fails_as_the_full_compile_does(
        fleet: Path, tmp_path: Path) -> None:
    warning = "    severity: warning\n    message: hostnames ending in -e1 are reserved"
    assert warning in RULES
    root = copy_of(fleet, tmp_path, RULES.replace(warning, warning.replace("warning", "error")))
    apply_edit(root, "hostname", 3, 1)
    assert compile_and_compare(root, tmp_path) == "the edit has errors"


def test_a_verdict_located_outside_the_edited_files_means_the_full_compile(
        fleet: Path, tmp_path: Path) -> None:
    """An override of intent 3 in the file of the ClusterTargets: the file is no one intent's,
    so a verdict located there on gateway 3 would outlive an edit of intent 3 that changes it."""
    root = tmp_path / "repo"
    shutil.copytree(fleet, root)
    targets = root / "policies" / "clusters.yaml"
    targets.write_text(targets.read_text(encoding="utf-8") + (
        "---\napiVersion: mtlsc.dev/v1alpha1\nkind: GatewayOverride\n"
        "metadata: {name: in-targets}\nspec:\n  gateway: {name: gw-3, namespace: team-3}\n"
        "  cluster: c1\n  patch:\n    clientValidation:\n"
        "      default: {mode: AllowInsecureFallback}\n"), encoding="utf-8")
    base = mtlsc(root, "compile", env=ENV)
    assert base.code == 0 and b"policies/clusters.yaml" in base.stderr, base.stderr
    apply_edit(root, "hostname", 3, 0)
    assert compile_and_compare(root, tmp_path) == \
        "a guardrail verdict on an edited gateway stands outside its files"


# ---------------------------------------------------------------------------- the checks


@pytest.mark.parametrize(("expression", "fields"), [
    ("cluster.name == 'a' && gateway.name != ''", {"name"}),
    ("has(cluster.labels.tier) && cluster.labels.tier == 'x'", {"labels"}),
    ("cluster.gateways.size() < 3", {"gateways"}),
    ("port.number > 0", set()),
    ("cluster['gateways'].size() > 0", None),
    ("[cluster].all(c, c.name != '')", None),
    ("cluster == cluster", None),
])
def test_fields_read_is_none_for_any_use_but_a_field(expression: str,
                                                      fields: set[str] | None) -> None:
    found = fields_read(expression, "cluster")
    assert (None if found is None else set(found)) == fields


def _rule(expression: str) -> Rule:
    return cast(Rule, SimpleNamespace(source=expression))  # all `reads_one_gateway` reads


def test_only_rules_that_never_read_other_gateways_are_local() -> None:
    assert reads_one_gateway(_rule("cluster.environment == 'prod' && port.mode != ''"))
    for other in ("cluster.gateways.exists(g, g.name == gateway.name)",
                  "cluster['gate' + 'ways'].size() > 1", "cluster != null", "((("):
        assert not reads_one_gateway(_rule(other)), other


def test_verdict_gateway_reads_the_subject_of_a_violation() -> None:
    where = Location("policies/x.yaml", 3, 1)

    def violation(message: str, code: str = "GuardrailViolation") -> Diagnostic:
        return Diagnostic(code, Severity.WARNING, message, where, "")
    assert verdict_gateway(violation("gateway ns/gw violates guardrail org/r: m")) == "ns/gw"
    assert verdict_gateway(violation("gateway ns/gw port 443 violates guardrail org/r: m")) \
        == "ns/gw"
    assert verdict_gateway(violation("cluster violates guardrail org/r: m")) is None
    assert verdict_gateway(violation("gateway ns/gw ...", "GuardrailEvaluationError")) is None
