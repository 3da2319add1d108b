"""`--format sarif`: one SARIF 2.1.0 log, valid against the SARIF 2.1.0 JSON schema.

The schema is not vendored. It is read from Microsoft's SARIF SDK as published on npm
(`@microsoft/sarif-multitool-linux`, which ships `sarif-2.1.0.json` next to the SARIF
Multitool), fetched once per session with `npm pack` (npm caches the tarball) and pinned by
version and SHA-256. Set MTLSC_SARIF_SCHEMA to a local copy of the schema to run offline; without
npm or network the schema tests skip and say why. The same tarball's Multitool, when it runs
here, checks the logs with the SDK's own validator, including GitHub's ingestion rules.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from compiler import report, sarif
from compiler.cli import main
from compiler.diagnostics import Diagnostic, Location, error, warning
from tests.support import CASES, REPO, compile_root, prepare_case

SDK_PACKAGE = "@microsoft/sarif-multitool-linux@5.7.0"
SDK_SCHEMA = "package/sarif-2.1.0.json"
SDK_SCHEMA_SHA256 = "1c49a0f2b60444c71bb14878e21e0d882198eff4c539861b133093ad89ed798c"
SDK_MULTITOOL = "package/Sarif.Multitool"

CASE_DIRS = sorted(p for p in CASES.iterdir()
                   if p.is_dir() and not p.name.startswith("_") and (p / "expect.yaml").is_file())
MTLS_INTENT = "policies/gateways/mtls.yaml"


# --- getting the schema --------------------------------------------------------------------------


def _npm_pack(destination: Path) -> Path:
    """Download (or take from npm's cache) the SARIF SDK tarball; skip when that is impossible."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"SARIF schema unavailable: npm is not on PATH to fetch {SDK_PACKAGE} "
                    "(or set MTLSC_SARIF_SCHEMA to a copy of sarif-schema-2.1.0.json)")
    try:
        done = subprocess.run([npm, "pack", SDK_PACKAGE, "--prefer-offline", "--silent",
                               "--pack-destination", str(destination)], capture_output=True,
                              text=True, timeout=600, check=False)
    except subprocess.TimeoutExpired:
        pytest.skip(f"SARIF schema unavailable: `npm pack {SDK_PACKAGE}` timed out")
    tarballs = sorted(destination.glob("*.tgz"))
    if done.returncode != 0 or not tarballs:
        pytest.skip(f"SARIF schema unavailable: `npm pack {SDK_PACKAGE}` failed (no registry "
                    f"access?): {done.stderr.strip()[-300:]}")
    return tarballs[0]


@pytest.fixture(scope="session")
def sarif_sdk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The schema (and, when the tarball had to be fetched anyway, the Multitool) on disk."""
    local = os.environ.get("MTLSC_SARIF_SCHEMA")
    if local:
        return {"schema": Path(local)}
    work = tmp_path_factory.mktemp("sarif-sdk")
    tarball = _npm_pack(work)
    out: dict[str, Path] = {}
    with tarfile.open(tarball) as tar:
        for member, name in ((SDK_SCHEMA, "schema"), (SDK_MULTITOOL, "multitool")):
            source = tar.extractfile(member)
            assert source is not None, f"{member} missing from {tarball.name}"
            target = work / Path(member).name
            target.write_bytes(source.read())
            out[name] = target
    digest = hashlib.sha256(out["schema"].read_bytes()).hexdigest()
    assert digest == SDK_SCHEMA_SHA256, f"{SDK_PACKAGE} serves a different schema ({digest})"
    out["multitool"].chmod(0o755)
    tarball.unlink()
    return out


@pytest.fixture(scope="session")
def sarif_validator(sarif_sdk: dict[str, Path]) -> jsonschema.protocols.Validator:
    schema = json.loads(sarif_sdk["schema"].read_text(encoding="utf-8"))
    assert "2.1.0" in schema["title"]
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def assert_valid(validator: jsonschema.protocols.Validator, log: Any) -> None:
    problems = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(log)]
    assert problems == [], "\n".join(problems)


# --- helpers -------------------------------------------------------------------------------------


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def strings(value: Any) -> list[str]:
    """Every string anywhere in a JSON value."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *strings(v))]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


def places(log: dict[str, Any]) -> list[dict[str, Any]]:
    """Results and notifications as rows shaped like a case's expect.yaml."""
    run_ = log["runs"][0]
    rows = []
    for result in run_["results"]:
        physical = result["locations"][0]["physicalLocation"]
        assert physical["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
        rows.append({"code": result["ruleId"], "severity": result["level"],
                     "file": physical["artifactLocation"]["uri"].removeprefix("policies/"),
                     "line": physical["region"]["startLine"],
                     "column": physical["region"]["startColumn"]})
    for invocation in run_["invocations"]:
        for note in invocation.get("toolExecutionNotifications", []):
            rows.append({"code": note["associatedRule"]["id"], "severity": note["level"],
                         "file": None, "line": None, "column": None})
    return rows








# --- golden cases --------------------------------------------------------------------------------


def test_duplicate_per_port_snapshot(tmp_path: Path, test_pki: Path) -> None:
    case = CASES / "gep91-duplicate-per-port"
    root = prepare_case(case, tmp_path, test_pki)
    text = sarif.to_sarif(compile_root(root).diagnostics)
    log = json.loads(text)

    assert log["version"] == "2.1.0"
    (run_,) = log["runs"]
    assert run_["tool"]["driver"]["name"] == "mtlsc"
    assert run_["tool"]["driver"]["version"] == metadata.version("mtlsc")
    assert [r["id"] for r in run_["tool"]["driver"]["rules"]] == ["DuplicatePerPort"]
    (result,) = run_["results"]
    assert result["ruleId"] == "DuplicatePerPort"
    assert result["ruleIndex"] == 0
    assert result["level"] == "error"
    assert result["locations"] == [{"physicalLocation": {
        "artifactLocation": {"uri": "policies/intent.yaml", "uriBaseId": "%SRCROOT%"},
        "region": {"startLine": 25, "startColumn": 7}}}]
    expect = YAML(typ="safe").load((case / "expect.yaml").read_text())["diagnostics"]
    assert places(log) == expect
    assert str(tmp_path) not in text
    assert not any(s.startswith(("/", "file:")) for s in strings(log))


@pytest.mark.parametrize("case", CASE_DIRS, ids=[c.name for c in CASE_DIRS])
def test_every_case_gives_the_expected_places(case: Path, tmp_path: Path,
                                              test_pki: Path) -> None:
    root = prepare_case(case, tmp_path, test_pki)
    text = sarif.to_sarif(compile_root(root).diagnostics)
    log = json.loads(text)

    expect = YAML(typ="safe").load((case / "expect.yaml").read_text())["diagnostics"]
    located = [row for row in expect if row["file"] is not None]
    unlocated = [row for row in expect if row["file"] is None]
    assert places(log) == located + unlocated
    assert str(tmp_path) not in text
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == sorted({row["code"] for row in expect})
    for result in log["runs"][0]["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


@pytest.mark.parametrize("case", CASE_DIRS, ids=[c.name for c in CASE_DIRS])
def test_every_case_is_valid_sarif(case: Path, tmp_path: Path, test_pki: Path,
                                   sarif_validator: jsonschema.protocols.Validator) -> None:
    root = prepare_case(case, tmp_path, test_pki)
    assert_valid(sarif_validator, json.loads(sarif.to_sarif(compile_root(root).diagnostics)))


def test_the_same_diagnostics_give_the_same_bytes(tmp_path: Path, test_pki: Path) -> None:
    case = CASES / "gep91-duplicate-per-port"
    first = sarif.to_sarif(compile_root(prepare_case(case, tmp_path / "a", test_pki)).diagnostics)
    second = sarif.to_sarif(compile_root(prepare_case(case, tmp_path / "b",
                                                       test_pki)).diagnostics)
    assert first == second
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:", first)  # no timestamps


# --- the report itself ---------------------------------------------------------------------------


def test_message_carries_the_hint_and_levels_follow_strict() -> None:
    strict = [error("InsecureFrontendValidationMode", "port 8444 is insecure",
                    Location("policies/a.yaml", 3, 5), "use AllowValidOnly")]
    log = json.loads(sarif.to_sarif(strict))
    (result,) = log["runs"][0]["results"]
    assert result["message"]["text"] == "port 8444 is insecure\nhint: use AllowValidOnly"
    assert result["level"] == "error"  # --strict made it an error
    (rule,) = log["runs"][0]["tool"]["driver"]["rules"]
    assert rule["defaultConfiguration"] == {"level": "warning"}  # its documented severity
    assert rule["helpUri"].endswith("/docs/cli.md#diagnostic-codes")
    assert rule["shortDescription"]["text"]
    assert rule["help"]["text"].startswith("Use AllowValidOnly outside testing.")


UNLOCATED = [
    warning("CertificateExpiringSoon", "ca expires in 3 days", Location("p/x.yml", 1, 1)),
    error("VaultUnavailable", "vault is sealed", None, "unseal it", source_failure=True),
    error("Drift", "overlays are out of date", None),
]
ODD_PATHS = [
    error("YAMLSyntax", "bad", Location("policies/my gateways/a#1.yaml", 2, 1)),
    error("YAMLSyntax", "bad", Location("/elsewhere/b.yaml", 1, 1)),
]


def test_diagnostics_without_a_place_are_notifications_not_results() -> None:
    log = json.loads(sarif.to_sarif(UNLOCATED))

    (run_,) = log["runs"]
    assert [r["ruleId"] for r in run_["results"]] == ["CertificateExpiringSoon"]
    assert all(r["locations"] for r in run_["results"])  # code scanning needs one each
    (invocation,) = run_["invocations"]
    assert invocation["executionSuccessful"] is False  # exit 3: a source failed
    assert invocation["exitCode"] == 3
    notes = invocation["toolExecutionNotifications"]
    assert [(n["associatedRule"]["id"], n["level"]) for n in notes] == [
        ("VaultUnavailable", "error"), ("Drift", "error")]
    assert notes[0]["message"]["text"] == "vault is sealed\nhint: unseal it"
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == ["CertificateExpiringSoon", "Drift", "VaultUnavailable"]
    assert all(rules[n["associatedRule"]["index"]]["id"] == n["associatedRule"]["id"]
               for n in notes)


def test_no_diagnostics_is_an_empty_successful_run() -> None:
    log = json.loads(sarif.to_sarif([]))
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["tool"]["driver"]["rules"] == []
    assert log["runs"][0]["invocations"] == [{"executionSuccessful": True, "exitCode": 0}]


def test_uris_are_encoded_and_outside_paths_are_not_based_on_srcroot() -> None:
    log = json.loads(sarif.to_sarif(ODD_PATHS))
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"]
            for r in log["runs"][0]["results"]]
    assert uris == [{"uri": "policies/my%20gateways/a%231.yaml", "uriBaseId": "%SRCROOT%"},
                    {"uri": "file:///elsewhere/b.yaml"}]


@pytest.mark.parametrize("diagnostics", [[], UNLOCATED, ODD_PATHS],
                         ids=["empty", "unlocated", "odd-paths"])
def test_edge_case_logs_are_valid_sarif(diagnostics: list[Diagnostic],
                                        sarif_validator: jsonschema.protocols.Validator) -> None:
    assert_valid(sarif_validator, json.loads(sarif.to_sarif(diagnostics)))


def test_an_undocumented_code_still_gets_a_rule() -> None:
    log = json.loads(sarif.to_sarif([warning("BrandNewTLSCheck", "x", Location("a", 1, 1))]))
    (rule,) = log["runs"][0]["tool"]["driver"]["rules"]
    assert rule["shortDescription"] == {"text": "Brand new TLS check"}
    assert rule["defaultConfiguration"] == {"level": "warning"}


def _documented_codes() -> dict[str, str]:
    """code → severity column of docs/cli.md's "Diagnostic codes" tables."""
    text = (REPO / "docs/cli.md").read_text(encoding="utf-8").split("## Diagnostic codes", 1)[1]
    codes: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        for code in re.findall(r"`([A-Za-z]+)`", cells[0]):
            codes.setdefault(code, cells[1].split()[0])
    return codes


def test_every_documented_code_has_a_rule_with_its_documented_severity() -> None:
    documented = _documented_codes()
    assert len(documented) > 70
    missing = sorted(set(documented) - set(sarif.RULES))
    assert missing == [], f"add these codes to compiler/report.py RULES: {missing}"
    undocumented = sorted(set(sarif.RULES) - set(documented))
    assert undocumented == [], f"document these codes in docs/cli.md: {undocumented}"
    assert {code: level.value for code, (level, _, _) in sarif.RULES.items()} == documented


# --- the command line ----------------------------------------------------------------------------


def test_sarif_is_a_format_choice() -> None:
    assert "sarif" in report.FORMATS
    result = run("validate", "--help")
    assert "sarif" in result.stdout


def test_validate_sarif_on_the_example(example: Path) -> None:
    result = run("validate", "--root", example, "--format", "sarif")

    assert result.exit_code == 0, result.output
    log = json.loads(result.stdout)
    located = {(r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                r["locations"][0]["physicalLocation"]["region"]["startLine"])
               for r in log["runs"][0]["results"]}
    assert ("InsecureFrontendValidationMode", MTLS_INTENT, 29) in located
    assert result.stderr.rstrip().endswith("0 errors, 2 warnings")  # the human summary
    assert str(example) not in result.stdout


def test_validate_sarif_with_an_error_exits_1(example: Path) -> None:
    text = (example / MTLS_INTENT).read_text()
    (example / MTLS_INTENT).write_text(text.replace(
        "  routes:\n", "    - port: 8444\n      mode: AllowValidOnly\n  routes:\n", 1))

    result = run("validate", "--root", example, "--format", "sarif", example / MTLS_INTENT)

    assert result.exit_code == 1
    log = json.loads(result.stdout)
    assert "DuplicatePerPort" in {r["ruleId"] for r in log["runs"][0]["results"]}
    assert log["runs"][0]["invocations"][0]["exitCode"] == 1


def drift(root: Path) -> None:
    intent = root / MTLS_INTENT
    intent.write_text(intent.read_text().replace("mode: AllowInsecureFallback",
                                                 "mode: AllowValidOnly", 1))


def test_check_sarif_with_drift_is_exactly_one_document(compiled: Path) -> None:
    drift(compiled)

    result = run("check", "--root", compiled, "--format", "sarif")

    assert result.exit_code == 4, result.output
    log, end = json.JSONDecoder().raw_decode(result.stdout)
    assert result.stdout[end:] == "\n"  # nothing but the document, not the diff
    assert "+++ b/" not in result.stdout
    notes = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["associatedRule"]["id"] for n in notes] == ["Drift"]
    assert log["runs"][0]["invocations"][0]["exitCode"] == 4  # drift, not invalid input
    assert "error[Drift]: overlays are out of date" in result.stderr


def test_check_sarif_without_drift(compiled: Path) -> None:
    result = run("check", "--root", compiled, "--format", "sarif")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"][0]["invocations"][0]["exitCode"] == 0


def test_command_line_logs_are_valid_sarif(
        compiled: Path, sarif_validator: jsonschema.protocols.Validator) -> None:
    assert_valid(sarif_validator, json.loads(run("validate", "--root", compiled, "--format",
                                                 "sarif").stdout))
    drift(compiled)
    assert_valid(sarif_validator, json.loads(run("check", "--root", compiled, "--format",
                                                 "sarif").stdout))


def test_compile_sarif_with_diff_keeps_stdout_one_document(example: Path) -> None:
    result = run("compile", "--root", example, "--format", "sarif", "--diff")

    assert result.exit_code == 0, result.output
    json.loads(result.stdout)
    assert "+++ b/" not in result.stdout
    assert (example / "overlays/demo/kustomization.yaml").is_file()


# --- the SARIF SDK's own validator ---------------------------------------------------------------


def test_sarif_sdk_multitool_accepts_the_logs(compiled: Path, tmp_path: Path, test_pki: Path,
                                              sarif_sdk: dict[str, Path]) -> None:
    """`Sarif.Multitool validate` with the SARIF, GitHub (Gh) and GitHub Advanced Security
    (Ghas) rule sets finds no error or warning in a log with drift and one with located
    errors."""
    multitool = sarif_sdk.get("multitool")
    if multitool is None:
        pytest.skip("MTLSC_SARIF_SCHEMA is set: the SARIF Multitool was not fetched")
    drift(compiled)
    logs = {"drift.sarif": run("check", "--root", compiled, "--format", "sarif").stdout}
    case = prepare_case(CASES / "gep91-duplicate-per-port", tmp_path, test_pki)
    logs["case.sarif"] = sarif.to_sarif(compile_root(case).diagnostics)
    for name, text in logs.items():
        (tmp_path / name).write_text(text)
        out = tmp_path / f"{name}.validation.sarif"
        try:
            done = subprocess.run(
                [str(multitool), "validate", str(tmp_path / name), "--output", str(out),
                 "--rule-kind", "Sarif;Gh;Ghas", "--level", "Error;Warning", "--log",
                 "ForceOverwrite"], capture_output=True, text=True, timeout=300, check=False,
                env={**os.environ, "DOTNET_CLI_TELEMETRY_OPTOUT": "1"})
        except OSError as exc:
            pytest.skip(f"the SARIF Multitool does not run here: {exc}")
        if not out.is_file():
            pytest.skip(f"the SARIF Multitool does not run here: {done.stdout[-300:]}"
                        f"{done.stderr[-300:]}")
        findings = [(r["ruleId"], r["message"].get("arguments"))
                    for r in json.loads(out.read_text(encoding="utf-8-sig"))["runs"][0]
                    .get("results", [])]
        assert findings == [], (name, findings)
