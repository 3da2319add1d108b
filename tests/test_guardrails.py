"""Guardrails: the shipped examples, selectors, waivers and their expiry, offline skipping,
located violations, and enforcement by validate/compile/check/diff in every report format."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.cli import main
from compiler.diagnostics import Location
from compiler.guardrails.rules import check_expression
from compiler.k8s.validate import SchemaStore
from compiler.load import read_policy_files
from compiler.pipeline import Options, compile_policies, schema_roots
from compiler.secrets.factory import source_factory
from tests.support import REPO

EXAMPLES = REPO / "docs" / "examples" / "guardrails.yaml"
STAGING = "policies/overrides/payments-staging.yaml"
PAYMENTS = "policies/gateways/payments.yaml"
PROD = "policies/clusters/prod.yaml"
RULE = "policies/guardrails/prod.yaml"


def run(*args: object) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args])


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def diagnostics(result: Result) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(result.stdout)["diagnostics"]
    return found


def violations(result: Result) -> list[dict[str, Any]]:
    return [d for d in diagnostics(result) if d["code"] == "GuardrailViolation"]


def fallback_in_prod(root: Path) -> None:
    """The staging override (AllowInsecureFallback on payments port 443) now targets prod."""
    edit(root / STAGING, "environment: staging", "environment: prod")


def add_rules(root: Path, text: str, name: str = "extra") -> None:
    (root / "policies" / "guardrails" / f"{name}.yaml").write_text(
        "apiVersion: mtlsc.dev/v1alpha1\nkind: Guardrail\nmetadata:\n"
        f"  name: {name}\nspec:\n  rules:\n{text}")


def rule(name: str, expression: str, scope: str = "port", selector: str = "",
         severity: str = "error") -> str:
    sel = f"    selector: {selector}\n" if selector else ""
    return (f"  - name: {name}\n    scope: {scope}\n{sel}    expression: \"{expression}\"\n"
            f"    severity: {severity}\n    message: {name} failed\n")


def waive(root: Path, rule_name: str, expires: str) -> None:
    edit(root / PAYMENTS, "  environments: [prod, staging]\n",
         "  environments: [prod, staging]\n  guardrailWaivers:\n"
         f"  - rule: {rule_name}\n    reason: partner onboarding\n    owner: team-payments\n"
         f"    expires: {expires}\n")


def compile_at(root: Path, now: datetime, *, offline: bool = False) -> list[Any]:
    texts = read_policy_files(root / "policies", root)
    store = SchemaStore(schema_roots(REPO))
    result = compile_policies(texts, None if offline else source_factory(root), store,
                              Options(now=now))
    return result.diagnostics


# --- the example repository and its prod guardrail ------------------------------------------


def test_the_example_satisfies_its_prod_guardrail(example: Path) -> None:
    assert (example / RULE).is_file()
    result = run("validate", "--root", example, "--format", "json")
    assert result.exit_code == 0, result.output
    assert violations(result) == []


def test_violation_is_located_at_the_override_and_names_the_rule(example: Path) -> None:
    fallback_in_prod(example)
    result = run("validate", "--root", example, "--format", "json")
    assert result.exit_code == 1
    [found] = violations(result)
    assert (found["file"], found["line"], found["severity"]) == (STAGING, 16, "error")
    assert found["clusters"] == ["prod-eu", "prod-us"]
    assert "production/no-insecure-fallback-in-prod" in found["message"]
    assert "port 443" in found["message"] and "payments-gw/payments" in found["message"]
    [related] = found["related"]
    assert (related["file"], related["line"]) == (RULE, 9)
    assert "spec.guardrailWaivers" in found["hint"]


@pytest.mark.parametrize("command", ["validate", "compile", "check"])
def test_every_command_enforces(command: str, compiled: Path) -> None:
    fallback_in_prod(compiled)
    before = sorted(p.read_bytes() for p in (compiled / "overlays").rglob("*") if p.is_file())
    result = run(command, "--root", compiled, "--format", "json")
    assert result.exit_code == 1, result.output
    assert len(violations(result)) == 1
    after = sorted(p.read_bytes() for p in (compiled / "overlays").rglob("*") if p.is_file())
    assert after == before  # compile writes nothing when a guardrail fails


def test_diff_enforces(compiled: Path) -> None:
    git = ["git", "-C", str(compiled), "-c", "user.name=t", "-c", "user.email=t@t"]
    (compiled / ".gitignore").write_text(".mtlsc/\n")
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
    assert run("diff", "--root", compiled, "--base", "HEAD").exit_code == 0
    fallback_in_prod(compiled)
    result = run("diff", "--root", compiled, "--base", "HEAD")
    assert result.exit_code == 1
    assert "GuardrailViolation" in result.output
    assert "production/no-insecure-fallback-in-prod" in result.output


def test_warning_severity_passes_unless_strict(example: Path) -> None:
    edit(example / RULE, "severity: error", "severity: warning")
    fallback_in_prod(example)
    result = run("validate", "--root", example, "--format", "json")
    assert result.exit_code == 0
    assert [d["severity"] for d in violations(result)] == ["warning"]
    assert run("validate", "--root", example, "--strict").exit_code == 1


def test_sarif_and_github_output(example: Path) -> None:
    fallback_in_prod(example)
    sarif = run("validate", "--root", example, "--format", "sarif")
    assert sarif.exit_code == 1
    log = json.loads(sarif.stdout)
    run_ = log["runs"][0]
    ids = {r["id"] for r in run_["tool"]["driver"]["rules"]}
    assert "GuardrailViolation" in ids
    [res] = [r for r in run_["results"] if r["ruleId"] == "GuardrailViolation"]
    assert res["level"] == "error"
    where = res["locations"][0]["physicalLocation"]
    assert where["artifactLocation"]["uri"] == STAGING
    assert where["region"]["startLine"] == 16
    related = res["relatedLocations"][0]["physicalLocation"]
    assert related["artifactLocation"]["uri"] == RULE
    github = run("validate", "--root", example, "--format", "github")
    [line] = [x for x in github.stdout.splitlines() if "title=GuardrailViolation" in x]
    assert line.startswith(f"::error file={STAGING},line=16,col=15,")
    assert "production/no-insecure-fallback-in-prod" in line and "prod-eu, prod-us" in line
    assert f"related: {RULE}%3A9" in line or f"related: {RULE}:9" in line


# --- selectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("selector", "expected"), [
    ("", ["demo", "prod-eu", "prod-us", "staging"]),
    ("{clusters: [prod-us, demo]}", ["demo", "prod-us"]),
    ("{environments: [prod]}", ["prod-eu", "prod-us"]),
    ("{clusterLabels: {exposure: internet}}", ["prod-eu"]),
    ("{clusterLabels: {exposure: internet, tier: gold}}", []),
])
def test_cluster_selectors(example: Path, selector: str, expected: list[str]) -> None:
    edit(example / PROD, "  environment: prod\n", "  environment: prod\n  labels:\n"
         "    exposure: internet\n")  # the first target in the file: prod-eu
    add_rules(example, rule("never", "false", "cluster", selector))
    result = run("validate", "--root", example, "--format", "json")
    found = violations(result)
    assert sorted(c for d in found for c in d["clusters"]) == expected
    assert all(d["file"].startswith("policies/clusters/") for d in found)


@pytest.mark.parametrize(("selector", "expected"), [
    ("{namespaces: [payments-gw]}", {"payments-gw/payments"}),
    ("{gateways: [mtls]}", {"agentgateway-system/mtls"}),
    ("{gateways: [agentgateway-system/mtls-default]}", {"agentgateway-system/mtls-default"}),
    ("{gatewayClasses: [agentgateway]}", {"agentgateway-system/mtls",
                                          "agentgateway-system/mtls-default"}),
    ("{implementations: [envoy-gateway]}", {"payments-gw/payments"}),
    ("{implementations: [istio]}", set()),
])
def test_gateway_selectors(example: Path, selector: str, expected: set[str]) -> None:
    add_rules(example, rule("never", "false", "gateway", selector))
    result = run("validate", "--root", example, "--format", "json")
    found = {d["message"].split()[1] for d in violations(result)}
    assert found == expected


# --- waivers ------------------------------------------------------------------------------------


def test_active_waiver_waives_and_is_listed(example: Path) -> None:
    fallback_in_prod(example)
    waive(example, "no-insecure-fallback-in-prod", "2999-12-31")
    result = run("validate", "--root", example, "--format", "json")
    assert result.exit_code == 0, result.output
    assert violations(result) == []
    posture = run("posture", "--root", example, "-q")
    assert "active guardrail waivers:" in posture.stdout
    assert ("payments-gw/payments: no-insecure-fallback-in-prod until 2999-12-31 "
            "(owner team-payments: partner onboarding)") in posture.stdout
    markdown = run("posture", "--root", example, "-q", "--format", "markdown").stdout
    assert "## Active guardrail waivers\n\n- payments-gw/payments: no-insecure-fallback-in-prod" \
        in markdown
    assert "waiver" not in run("posture", "--root", example, "-q", "--format", "json").stdout
    explain = run("explain", "--root", example, "payments-gw/payments")
    assert "guardrail waiver: no-insecure-fallback-in-prod until 2999-12-31" in explain.stdout
    other = run("explain", "--root", example, "agentgateway-system/mtls")
    assert "guardrail waiver" not in other.stdout


def test_waiver_expiry_follows_the_clock(example: Path) -> None:
    fallback_in_prod(example)
    waive(example, "no-insecure-fallback-in-prod", "2027-03-31")
    day = datetime(2027, 3, 31, 23, 59, tzinfo=UTC)
    assert [d.code for d in compile_at(example, day, offline=True) if d.is_error] == []
    late = compile_at(example, day + timedelta(minutes=2), offline=True)
    [expired] = [d for d in late if d.is_error]
    assert expired.code == "ExpiredGuardrailWaiver"
    assert expired.location is not None
    assert (expired.location.file, expired.location.line) == (PAYMENTS, 16)
    assert "2027-03-31" in expired.message and "team-payments" in expired.message


def test_expired_waiver_fails_the_cli(example: Path) -> None:
    waive(example, "no-insecure-fallback-in-prod", "2020-01-01")
    result = run("validate", "--root", example, "--format", "json")
    assert result.exit_code == 1
    assert [d["code"] for d in diagnostics(result) if d["severity"] == "error"] == [
        "ExpiredGuardrailWaiver"]
    assert "active guardrail waivers" not in run("posture", "--root", example, "-q").stdout


def test_waiver_of_an_unknown_rule(example: Path) -> None:
    waive(example, "no-insecure-fallback-in-prd", "2999-01-01")
    result = run("validate", "--root", example, "--format", "json")
    [found] = [d for d in diagnostics(result) if d["severity"] == "error"]
    assert found["code"] == "UnknownGuardrailRule"
    assert (found["file"], found["line"]) == (PAYMENTS, 13)
    assert "no-insecure-fallback-in-prod" in found["hint"]


def test_a_waiver_covers_only_its_gateway(example: Path) -> None:
    waive(example, "everything-validates", "2999-01-01")
    add_rules(example, rule("everything-validates", "port.mode == 'AllowValidOnly'"))
    result = run("validate", "--root", example, "--format", "json")
    assert {d["message"].split()[1] for d in violations(result)} == {"agentgateway-system/mtls"}


# --- certificate data: enforced by compile, skipped by validate ---------------------------------


def _ca_not_after(root: Path) -> datetime:
    pem = (root / ".mtlsc" / "dev-pki" / "ca-cert.pem").read_bytes()
    return x509.load_pem_x509_certificate(pem).not_valid_after_utc


def test_certificate_rules_run_when_certificates_are_fetched(compiled: Path) -> None:
    add_rules(compiled, rule("fresh", "port.anchors.all(a, a.daysLeft >= 21)"))
    expiry = _ca_not_after(compiled)
    assert [d for d in compile_at(compiled, expiry - timedelta(days=60))
            if d.code == "GuardrailViolation"] == []
    near = compile_at(compiled, expiry - timedelta(days=20))
    assert {d.code for d in near if d.code == "GuardrailViolation"} == {"GuardrailViolation"}
    assert [d for d in compile_at(compiled, expiry - timedelta(days=20), offline=True)
            if d.code == "GuardrailViolation"] == []  # validate: no certificates, skipped


# --- the shipped examples ------------------------------------------------------------------------


def _with_examples(root: Path) -> None:
    shutil.copy(EXAMPLES, root / "policies" / "guardrails" / "org.yaml")


def _rules_hit(found: list[Any]) -> set[str]:
    return {d.message.split("violates guardrail ")[1].split(":")[0]
            for d in found if d.code == "GuardrailViolation"}


def test_examples_type_check_and_document_every_rule() -> None:
    docs = (REPO / "docs" / "guardrails.md").read_text()
    text = EXAMPLES.read_text()
    for name in ("no-insecure-fallback-in-production", "internet-facing-ports-validate-clients",
                 "trust-anchors-from-approved-mounts", "nothing-expires-within-21-days"):
        assert f"- name: {name}" in text
    assert "examples/guardrails.yaml" in docs


def test_example_rules_on_the_example(compiled: Path) -> None:
    _with_examples(compiled)
    now = _ca_not_after(compiled) - timedelta(days=200)
    # The example's prod clusters read their CAs from a local directory, not Vault PKI.
    assert _rules_hit(compile_at(compiled, now)) == {
        "org-baseline/trust-anchors-from-approved-mounts"}
    edit(compiled / "policies/guardrails/org.yaml", "a.sourceKind == 'pki'",
         "a.sourcePath.startsWith('.mtlsc/dev-pki/') || a.sourceKind == 'pki'")
    assert _rules_hit(compile_at(compiled, now)) == set()


def test_example_no_fallback_in_production(compiled: Path) -> None:
    _with_examples(compiled)
    fallback_in_prod(compiled)
    hit = _rules_hit(compile_at(compiled, _ca_not_after(compiled) - timedelta(days=200)))
    assert "org-baseline/no-insecure-fallback-in-production" in hit


def test_example_internet_facing_validates_clients(compiled: Path) -> None:
    _with_examples(compiled)
    now = _ca_not_after(compiled) - timedelta(days=200)
    edit(compiled / PROD, "  name: staging\nspec:\n",
         "  name: staging\nspec:\n  labels: {exposure: internet}\n")
    found = [d for d in compile_at(compiled, now)
             if "internet-facing-ports-validate-clients" in d.message]
    assert [(d.clusters, d.location.file if d.location else None) for d in found] == [
        (("staging",), STAGING)]


def test_example_nothing_expires_within_21_days(compiled: Path) -> None:
    _with_examples(compiled)
    expiry = _ca_not_after(compiled)
    hit = _rules_hit(compile_at(compiled, expiry - timedelta(days=20)))
    assert "org-baseline/nothing-expires-within-21-days" in hit
    assert "org-baseline/nothing-expires-within-21-days" not in _rules_hit(
        compile_at(compiled, expiry - timedelta(days=22)))


# --- static checks of expressions ----------------------------------------------------------------

WHERE = Location("g.yaml", 3, 17)


@pytest.mark.parametrize(("scope", "expression", "words"), [
    ("port", "request.port == 443", "undeclared reference to 'request'"),
    ("gateway", "port.number == 443", "undeclared reference to 'port'"),
    ("cluster", "gateway.name == 'x'", "undeclared reference to 'gateway'"),
    ("port", "port.mdoe == 'AllowValidOnly'", "no such key: mdoe"),
    ("port", "port.anchors.all(a, a.notafter != '')", "no such key: notafter"),
    ("port", "port.number > 'a'", "no such overload: _>_(int, string)"),
    ("port", "port.number", "returns int, not bool"),
    ("gateway", "gateway.listeners.map(l, l.port)", "returns list, not bool"),
    ("port", "port.number ==", "does not compile"),
])
def test_invalid_expressions_are_located(scope: str, expression: str, words: str) -> None:
    program, problems = check_expression(expression, scope, WHERE)
    assert program is None
    [problem] = problems
    assert problem.code == "InvalidGuardrailRule" and problem.location == WHERE
    assert words in problem.message, problem.message
    assert problem.hint


@pytest.mark.parametrize(("scope", "expression"), [
    ("port", "port.mode == 'AllowValidOnly' || gateway.__namespace__ == 'dev'"),
    ("gateway", "gateway.key.startsWith('payments-gw/')"),
    ("port", "'tier' in cluster.labels && cluster.labels['tier'] == 'web'"),
    ("gateway", "gateway.certificates.all(c, c.daysLeft >= 21 && c.issuer != '')"),
    ("cluster", "cluster.gateways.all(g, g.ports.all(p, p.caUsed))"),
    ("port", "port.restrictions.exists(r, r.kind == 'subjectAltName' && 'a' in r.values)"),
])
def test_valid_expressions_type_check(scope: str, expression: str) -> None:
    program, problems = check_expression(expression, scope, WHERE)
    assert problems == [] and program is not None


# --- determinism ---------------------------------------------------------------------------------


def _example_rules() -> list[str]:
    text = EXAMPLES.read_text()
    _, rules = text.split("  rules:\n", 1)
    return ["    - name:" + part for part in rules.split("    - name:")[1:]]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(4)), split=st.booleans())
def test_verdicts_do_not_depend_on_rule_or_file_order(compiled_template: Path,
                                                       order: list[int], split: bool) -> None:
    texts = dict(read_policy_files(compiled_template / "policies", compiled_template))
    texts[STAGING] = texts[STAGING].replace("environment: staging", "environment: prod")
    header = ("apiVersion: mtlsc.dev/v1alpha1\nkind: Guardrail\nmetadata:\n  name: {}\n"
              "spec:\n  rules:\n")
    rules = _example_rules()
    chosen = [rules[i] for i in order]
    texts.pop("policies/guardrails/prod.yaml")
    if split:  # one rule per file, files named against the order
        for n, body in enumerate(chosen):  # each rule keeps its Guardrail name
            texts[f"policies/guardrails/g{3 - n}.yaml"] = header.format(f"org-{order[n]}") + body
    else:
        texts["policies/guardrails/org.yaml"] = header.format("org-baseline") + "".join(chosen)
    store = SchemaStore(schema_roots(REPO))
    now = datetime(2030, 1, 1, tzinfo=UTC)
    result = compile_policies(texts, source_factory(compiled_template), store, Options(now=now))
    found = [(d.code, d.message, d.location, d.clusters) for d in result.diagnostics
             if d.code.startswith("Guardrail")]
    hit = {m.split("violates guardrail ")[1].split(":")[0].split("/")[1] for _, m, _, _ in found}
    assert hit == {"trust-anchors-from-approved-mounts", "no-insecure-fallback-in-production"}
    assert found == _BASELINE.setdefault(split, found)


_BASELINE: dict[bool, object] = {}


def test_each_server_certificate_is_parsed_once_per_cluster(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """Listeners share a handful of server certificates: the view reads each one's leaf
    once per cluster, not once per listener (which made a 10,000-gateway view 10 s)."""
    from compiler.guardrails import view
    from tests.fleet_support import compile_fleet, make_fleet

    root = make_fleet(tmp_path / "fleet", 12, 2)
    (root / "policies" / "guardrails").mkdir()
    add_rules(root, rule("certs", "gateway.certificates.all(c, c.daysLeft > 0)", "gateway",
                         severity="warning"))
    parsed: list[bytes | None] = []
    real = view.bundle_anchors

    def counted(pem: bytes | None) -> list[Any]:
        parsed.append(pem)
        return real(pem)
    monkeypatch.setattr(view, "bundle_anchors", counted)
    result = compile_fleet(root)
    assert result.model is not None
    listeners = sum(1 for c in result.model.clusters for gw in c.gateways
                    for lst in gw.listeners if lst.certificate is not None)
    distinct = len(set(parsed))
    assert listeners > 2 * distinct  # the fleet does share certificates
    assert len(parsed) <= distinct * len(result.model.clusters)
    assert not [d for d in result.diagnostics if d.code.startswith("Guardrail")]
