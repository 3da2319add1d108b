"""The `mtlsc` command line: exit codes, output formats, what each command writes (or must not).

Most tests run the click command in-process on a temporary copy of the example repository;
one runs the installed console script end to end.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from compiler.cli import main
from compiler.emit import HEADER
from tests.support import CASES, gateway_api_crds, prepare_case

GATEWAY_CRDS = gateway_api_crds() / "v1.5.1/standard/gateways.yaml"

DEMO_GATEWAY = "overlays/demo/agentgateway-system/gateway-mtls.yaml"
DEMO_DEFAULT_GATEWAY = "overlays/demo/agentgateway-system/gateway-mtls-default.yaml"
MTLS_INTENT = "policies/gateways/mtls.yaml"
# The example's two AllowInsecureFallback warnings (docs/cli.md shows the first).
MTLS_WARNING = f"{MTLS_INTENT}:29:13: warning[InsecureFrontendValidationMode]: "
STAGING_WARNING = ("policies/overrides/payments-staging.yaml:16:15: "
                   "warning[InsecureFrontendValidationMode]: ")

# `file:line:col: error[Code]: message` or, for diagnostics without a place, `error[Code]: ...`.
ERROR_LINE = re.compile(r"^(?:\S+:\d+:\d+: )?error\[[A-Za-z]+\]: \S")
GITHUB_LINE = re.compile(r"^::(error|warning) (?:file=[^,:]+,line=\d+,col=\d+,)?title=[A-Za-z]+::")


def wrote(stderr: str) -> tuple[int, int, int, int]:
    """(new, changed, removed, unchanged) from compile's `wrote ...` summary line."""
    found = re.search(r"^wrote (\d+) new, (\d+) changed, removed (\d+), (\d+) unchanged$",
                      stderr, re.MULTILINE)
    assert found, stderr
    new, changed, removed, unchanged = (int(n) for n in found.groups())
    return new, changed, removed, unchanged


def diff_files(diff: str) -> tuple[list[str], list[str], list[str]]:
    """(created, changed, deleted) paths named by the file headers of a unified diff."""
    headers = re.findall(r"^--- (\S+)\n\+\+\+ (\S+)$", diff, re.MULTILINE)
    created = [new.removeprefix("b/") for old, new in headers if old == "/dev/null"]
    deleted = [old.removeprefix("a/") for old, new in headers if new == "/dev/null"]
    changed = [new.removeprefix("b/") for old, new in headers
               if "/dev/null" not in (old, new)]
    return created, changed, deleted


def assert_drift_matches_diff(result: Result) -> tuple[list[str], list[str], list[str]]:
    """The Drift diagnostic counts exactly the files the diff on stdout shows."""
    created, changed, deleted = diff_files(result.stdout)
    assert (f"error[Drift]: overlays are out of date: {len(created)} missing, {len(changed)} "
            f"changed, {len(deleted)} stale") in result.stderr, result.stderr
    return created, changed, deleted


def run(*args: str | Path) -> Result:
    """Invoke `mtlsc` in-process; any exception other than SystemExit fails the test."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file below `directory` with its bytes."""
    if not directory.exists():
        return {}
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def stat_snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file below `directory` with its bytes and modification time."""
    return {p.relative_to(directory).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def add_duplicate_per_port(root: Path) -> None:
    """Make the example invalid: a second perPort entry for port 8444 (DuplicatePerPort)."""
    edit(root / MTLS_INTENT, "  routes:\n",
         "    - port: 8444\n      mode: AllowValidOnly\n  routes:\n")








# --- exit codes --------------------------------------------------------------------------------


def test_compile_example_exits_0_and_writes_every_cluster(example: Path) -> None:
    result = run("compile", "--root", example)

    assert result.exit_code == 0, result.output
    overlays = snapshot(example / "overlays")
    assert {rel.split("/")[0] for rel in overlays} == {"demo", "prod-eu", "prod-us", "staging"}
    assert DEMO_GATEWAY.removeprefix("overlays/") in overlays
    assert all(data.startswith(HEADER.encode()) for data in overlays.values())
    assert (example / ".mtlsc/dev-pki/ca-cert.pem").is_file()
    assert wrote(result.stderr) == (len(overlays), 0, 0, 0)
    assert MTLS_WARNING in result.stderr
    assert result.stderr.rstrip().endswith("0 errors, 2 warnings")
    assert result.stdout == ""


def test_second_compile_changes_nothing(compiled: Path) -> None:
    before = stat_snapshot(compiled / "overlays")

    result = run("compile", "--root", compiled)

    assert result.exit_code == 0, result.output
    assert wrote(result.stderr) == (0, 0, 0, len(before))
    assert stat_snapshot(compiled / "overlays") == before


def test_invalid_intent_exits_1_and_writes_nothing(example: Path) -> None:
    add_duplicate_per_port(example)

    result = run("compile", "--root", example)

    assert result.exit_code == 1, result.output
    assert f"{MTLS_INTENT}:" in result.stderr
    assert "error[DuplicatePerPort]" in result.stderr
    assert not (example / "overlays").exists()


def test_invalid_intent_leaves_existing_overlays_unchanged(compiled: Path) -> None:
    before = stat_snapshot(compiled / "overlays")
    add_duplicate_per_port(compiled)

    result = run("compile", "--root", compiled)

    assert result.exit_code == 1, result.output
    assert "error[DuplicatePerPort]" in result.stderr
    assert "wrote" not in result.output
    assert stat_snapshot(compiled / "overlays") == before


@pytest.mark.parametrize("args", [
    ["compile", "--no-such-option"],
    ["explain"],  # missing GATEWAY
    ["dev-pki"],  # missing DIRECTORY
    ["compile", "--format", "xml"],
    ["no-such-command"],
], ids=["unknown-option", "explain-without-gateway", "dev-pki-without-dir", "bad-format",
        "unknown-command"])
def test_usage_errors_exit_2(args: list[str], example: Path) -> None:
    result = run(*args, *(["--root", example] if args[0] == "compile" else []))

    assert result.exit_code == 2, result.output
    assert "Usage:" in result.stderr
    assert not (example / "overlays").exists()


def test_certificate_source_failure_exits_3_and_keeps_overlays(tmp_path: Path,
                                                               test_pki: Path) -> None:
    root = prepare_case(CASES / "cert-missing-ca-file", tmp_path, test_pki)
    missing = root / "pki" / "does-not-exist.pem"  # the case's `missing` CA bundle
    shutil.copy(root / "pki" / "ca-cert.pem", missing)
    first = run("compile", "--root", root)
    assert first.exit_code == 0, first.output
    before = snapshot(root / "out")
    assert "v151/ns/gateway-gw.yaml" in before
    missing.unlink()

    result = run("compile", "--root", root)

    assert result.exit_code == 3, result.output
    assert "error[CertificateFileMissing]" in result.stderr
    assert snapshot(root / "out") == before


# --- output formats ----------------------------------------------------------------------------


def test_json_format_is_one_document_on_stdout(example: Path) -> None:
    result = run("compile", "--root", example, "--format", "json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["summary"] == {"errors": 0, "warnings": 2}
    first = report["diagnostics"][0]
    assert first == {
        "file": MTLS_INTENT, "line": 29, "column": 13,
        "code": "InsecureFrontendValidationMode", "severity": "warning",
        "message": first["message"], "hint": "use AllowValidOnly outside testing",
        "cluster": "demo", "clusters": ["demo"], "related": [],
    }
    assert "port 8444" in first["message"]
    staging = report["diagnostics"][1]
    assert (staging["file"], staging["cluster"]) == ("policies/overrides/payments-staging.yaml",
                                                     "staging")
    # The override's warning names the intent it applies to.
    assert staging["related"] == [{"file": "policies/gateways/payments.yaml", "line": 7,
                                   "column": 9, "message": "GatewayIntent payments-gw/payments"}]
    assert report["files"] == sorted(f"overlays/{rel}"
                                     for rel in snapshot(example / "overlays"))
    assert DEMO_GATEWAY in report["files"]
    # Neither the write summary nor the text report leaks into either stream.
    assert "wrote" not in result.output
    assert "0 errors" not in result.output


def test_json_format_reports_errors_without_location_as_null(example: Path) -> None:
    result = run("compile", "--root", example, "--format", "json", "--cluster", "nope")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["summary"] == {"errors": 1, "warnings": 0}
    assert report["files"] == []
    [diagnostic] = report["diagnostics"]
    assert diagnostic["code"] == "UnknownCluster"
    assert (diagnostic["file"], diagnostic["line"], diagnostic["column"]) == (None, None, None)


def test_github_format_annotations(example: Path) -> None:
    add_duplicate_per_port(example)

    result = run("validate", "--root", example, "--format", "github")

    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines, result.output
    assert all(GITHUB_LINE.match(line) for line in lines), lines
    errors = [line for line in lines if line.startswith("::error ")]
    assert errors
    assert errors[0].startswith(f"::error file={MTLS_INTENT},line=")
    assert ",title=DuplicatePerPort::" in errors[0]
    # The hint follows on a second line of the message: escaped, so one annotation per line.
    assert "%0Ahint: " in errors[0]
    assert "\r" not in result.stdout
    assert "0 errors" not in result.output  # no text summary


def test_github_format_warnings_and_location_free_errors(example: Path) -> None:
    warnings = run("validate", "--root", example, "--format", "github")
    unknown = run("validate", "--root", example, "--format", "github", "--cluster", "nope")

    assert warnings.exit_code == 0, warnings.output
    assert warnings.stdout.splitlines() == [
        f"::warning file={MTLS_INTENT},line=29,col=13,title=InsecureFrontendValidationMode::"
        "port 8444 uses AllowInsecureFallback: clients without a valid certificate are accepted "
        "and authorization is left to the backend%0Acluster: demo"
        "%0Ahint: use AllowValidOnly outside testing",
        "::warning file=policies/overrides/payments-staging.yaml,line=16,col=15,"
        "title=InsecureFrontendValidationMode::port 443 uses AllowInsecureFallback: clients "
        "without a valid certificate are accepted and authorization is left to the backend"
        "%0Acluster: staging%0Arelated: policies/gateways/payments.yaml:7:9: GatewayIntent "
        "payments-gw/payments%0Ahint: use AllowValidOnly outside testing",
    ]
    assert unknown.exit_code == 1
    assert unknown.stdout.splitlines() == [
        "::error title=UnknownCluster::--cluster 'nope' matches no ClusterTarget"
        "%0Ahint: known: demo, prod-eu, prod-us, staging",
    ]


def test_strict_turns_the_example_warnings_into_errors(example: Path) -> None:
    result = run("compile", "--root", example, "--strict")

    assert result.exit_code == 1, result.output
    assert f"{MTLS_INTENT}:29:13: error[InsecureFrontendValidationMode]" in result.stderr
    assert "2 errors, 0 warnings" in result.stderr
    assert not (example / "overlays").exists()


# --- check -------------------------------------------------------------------------------------


def test_check_right_after_compile_exits_0(compiled: Path) -> None:
    result = run("check", "--root", compiled)

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "Drift" not in result.output


def test_check_reports_an_edited_intent_as_drift(compiled: Path) -> None:
    edit(compiled / MTLS_INTENT, "mode: AllowInsecureFallback", "mode: AllowValidOnly")
    before = stat_snapshot(compiled)

    result = run("check", "--root", compiled)

    assert result.exit_code == 4, result.output
    assert f"--- a/{DEMO_GATEWAY}\n+++ b/{DEMO_GATEWAY}\n@@ " in result.stdout
    removed = [line for line in result.stdout.splitlines() if line.startswith("-")]
    assert any("AllowInsecureFallback" in line for line in removed), result.stdout
    created, changed, deleted = assert_drift_matches_diff(result)
    assert DEMO_GATEWAY in changed
    assert created == deleted == []
    assert all(rel.startswith("overlays/demo/") for rel in changed), changed
    assert stat_snapshot(compiled) == before


def test_check_reports_the_output_of_a_deleted_intent_as_stale(compiled: Path) -> None:
    (compiled / "policies/gateways/mtls-default.yaml").unlink()
    before = stat_snapshot(compiled)

    result = run("check", "--root", compiled)

    assert result.exit_code == 4, result.output
    assert f"--- a/{DEMO_DEFAULT_GATEWAY}\n+++ /dev/null\n" in result.stdout
    assert "-- agentgateway-system/gateway-mtls-default.yaml" in result.stdout  # kustomization
    created, changed, deleted = assert_drift_matches_diff(result)
    assert DEMO_DEFAULT_GATEWAY in deleted
    assert "overlays/demo/kustomization.yaml" in changed
    assert created == []
    assert stat_snapshot(compiled) == before


def test_check_without_overlays_reports_every_file_missing(example: Path,
                                                          compiled_template: Path) -> None:
    result = run("check", "--root", example)

    assert result.exit_code == 4, result.output
    assert f"--- /dev/null\n+++ b/{DEMO_GATEWAY}\n" in result.stdout
    created, _, _ = assert_drift_matches_diff(result)
    assert sorted(created) == sorted(f"overlays/{rel}"
                                     for rel in snapshot(compiled_template / "overlays"))
    assert not (example / "overlays").exists()


def test_check_json_with_drift_is_still_one_json_document(compiled: Path) -> None:
    edit(compiled / MTLS_INTENT, "mode: AllowInsecureFallback", "mode: AllowValidOnly")

    result = run("check", "--root", compiled, "--format", "json")

    assert result.exit_code == 4
    codes = [d["code"] for d in json.loads(result.stdout)["diagnostics"]]
    assert "Drift" in codes


def test_check_survives_a_corrupted_generated_file(compiled: Path) -> None:
    with (compiled / "overlays/demo/kustomization.yaml").open("ab") as fh:
        fh.write(b"\xff\xfe")

    result = run("check", "--root", compiled)

    assert result.exit_code == 4
    assert "kustomization.yaml" in result.output


# --- compile: pruning and ownership ------------------------------------------------------------


def test_compile_removes_the_output_of_a_deleted_intent(compiled: Path) -> None:
    (compiled / "policies/gateways/mtls-default.yaml").unlink()
    before = snapshot(compiled / "overlays")
    others = {rel: data for rel, data in before.items() if not rel.startswith("demo/")}

    result = run("compile", "--root", compiled)

    assert result.exit_code == 0, result.output
    gone = before.keys() - snapshot(compiled / "overlays").keys()
    assert DEMO_DEFAULT_GATEWAY.removeprefix("overlays/") in gone
    assert wrote(result.stderr)[:3] == (0, 1, len(gone))  # kustomization.yaml changed
    assert not (compiled / DEMO_DEFAULT_GATEWAY).exists()
    assert (compiled / DEMO_GATEWAY).is_file()
    kustomization = (compiled / "overlays/demo/kustomization.yaml").read_text()
    assert "gateway-mtls-default.yaml" not in kustomization
    assert {rel: data for rel, data in snapshot(compiled / "overlays").items()
            if not rel.startswith("demo/")} == others


def test_compile_prunes_directories_it_empties(compiled: Path) -> None:
    (compiled / MTLS_INTENT).unlink()  # the only gateway with a route into httpbin/

    result = run("compile", "--root", compiled)

    assert result.exit_code == 0, result.output
    assert not (compiled / "overlays/demo/httpbin").exists()
    assert (compiled / "overlays/demo/agentgateway-system").is_dir()


def test_compile_never_touches_hand_written_files(compiled: Path) -> None:
    notes = compiled / "overlays/demo/README.md"
    patch = compiled / "overlays/demo/httpbin/patch.yaml"
    notes.write_text("# hand-written\n")
    patch.write_text("kind: Patch\n")
    (compiled / MTLS_INTENT).unlink()  # its outputs become stale, patch.yaml's directory too

    result = run("compile", "--root", compiled)

    assert result.exit_code == 0, result.output
    assert notes.read_text() == "# hand-written\n"
    assert patch.read_text() == "kind: Patch\n"
    assert not (compiled / "overlays/demo/httpbin/httproute-httpbin-https.yaml").exists()


def test_hand_written_file_in_the_way_blocks_every_write(compiled: Path) -> None:
    (compiled / DEMO_GATEWAY).write_text("# my own gateway\n")
    # Something else that would be written if the compile went ahead:
    edit(compiled / "policies/gateways/mtls-default.yaml", "AllowValidOnly",
         "AllowInsecureFallback")
    before = stat_snapshot(compiled / "overlays")

    result = run("compile", "--root", compiled)

    assert result.exit_code == 1, result.output
    assert f"error[FileInTheWay]: {DEMO_GATEWAY} exists and was not generated by mtlsc" \
        in result.stderr
    assert "wrote" not in result.output
    assert stat_snapshot(compiled / "overlays") == before

    checked = run("check", "--root", compiled)

    assert checked.exit_code == 1, checked.output
    assert f"error[FileInTheWay]: {DEMO_GATEWAY}" in checked.stderr
    assert stat_snapshot(compiled / "overlays") == before


# --- --cluster ---------------------------------------------------------------------------------


def test_cluster_option_compiles_only_that_cluster(example: Path) -> None:
    result = run("compile", "--root", example, "--cluster", "demo")

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (example / "overlays").iterdir()) == ["demo"]
    assert STAGING_WARNING not in result.stderr  # staging was not compiled


def test_cluster_option_keeps_other_clusters_overlays(compiled: Path) -> None:
    (compiled / "policies/gateways/mtls-default.yaml").unlink()
    others = {rel: data for rel, data in snapshot(compiled / "overlays").items()
              if not rel.startswith("demo/")}
    assert others

    checked = run("check", "--root", compiled, "--cluster", "prod-eu")
    result = run("compile", "--root", compiled, "--cluster", "demo")

    assert checked.exit_code == 0, checked.output
    assert result.exit_code == 0, result.output
    assert wrote(result.stderr)[2] >= 1
    assert not (compiled / DEMO_DEFAULT_GATEWAY).exists()
    assert {rel: data for rel, data in snapshot(compiled / "overlays").items()
            if not rel.startswith("demo/")} == others


def test_unknown_cluster_is_an_error(example: Path) -> None:
    result = run("compile", "--root", example, "--cluster", "demo", "--cluster", "nope")

    assert result.exit_code == 1, result.output
    assert "error[UnknownCluster]: --cluster 'nope' matches no ClusterTarget" in result.stderr
    assert "hint: known: demo, prod-eu, prod-us, staging" in result.stderr
    assert not (example / "overlays").exists()


# --- validate ----------------------------------------------------------------------------------


def test_validate_runs_offline(example: Path) -> None:
    result = run("validate", "--root", example)

    assert result.exit_code == 0, result.output
    assert MTLS_WARNING in result.stderr
    assert STAGING_WARNING in result.stderr
    assert not (example / ".mtlsc").exists()
    assert not (example / "overlays").exists()


def test_validate_still_validates_rendered_objects(example: Path) -> None:
    # A path prefix the HTTPRoute CEL rules reject; only rendering and validating finds it.
    edit(example / "policies/gateways/payments.yaml", "      port: 8080\n",
         "      port: 8080\n    pathPrefix: /api//v1\n")

    result = run("validate", "--root", example)

    assert result.exit_code == 1, result.output
    assert "error[CELRuleViolation]" in result.stderr
    assert not (example / ".mtlsc").exists()


def test_validate_files_reports_only_those_files(example: Path) -> None:
    staging = example / "policies/overrides/payments-staging.yaml"

    only_staging = run("validate", "--root", example, staging)
    only_mtls = run("validate", "--root", example, example / MTLS_INTENT)

    assert only_staging.exit_code == 0, only_staging.output
    assert STAGING_WARNING in only_staging.stderr
    assert MTLS_WARNING not in only_staging.stderr
    assert "0 errors, 1 warning" in only_staging.stderr
    assert MTLS_WARNING in only_mtls.stderr
    assert STAGING_WARNING not in only_mtls.stderr


def test_validate_files_decides_the_exit_code_by_those_files(
        example: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    edit(example / "policies/gateways/mtls-default.yaml", "mode: AllowValidOnly", "mode: Bogus")
    monkeypatch.chdir(example)  # paths as a pre-commit hook passes them: relative to the root

    broken = run("validate", "policies/gateways/mtls-default.yaml")
    other = run("validate", "policies/gateways/payments.yaml")

    assert broken.exit_code == 1, broken.output
    assert "policies/gateways/mtls-default.yaml:" in broken.stderr
    assert "error[SchemaViolation]" in broken.stderr
    assert other.exit_code == 0, other.output
    assert "mtls-default" not in other.output


# --- explain -----------------------------------------------------------------------------------


def test_explain_shows_values_with_their_origin(example: Path) -> None:
    result = run("explain", "--root", example, "agentgateway-system/mtls")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("gateway agentgateway-system/mtls on cluster demo "
                          "(Gateway API v1.5.1/standard)\n")
    assert "layers (least to most specific): base\n" in out
    assert ("  clientValidation.perPort[port=8444].mode = 'AllowInsecureFallback'    "
            f"# {MTLS_INTENT}:29:13 [base]\n") in out
    # The tenant ListenerSet's listener shares port 8443 and its validation.
    assert ("  port 8443 [https-8443, tenant-api.api]: AllowValidOnly, CA "
            "agentgateway-system/ca-cert "
            f"<- default\n      mode from {MTLS_INTENT}:25:13 [base]\n") in out
    assert ("  port 8444 [https-8444]: AllowInsecureFallback, CA agentgateway-system/ca-cert "
            f"<- perPort\n      mode from {MTLS_INTENT}:29:13 [base]\n") in out
    assert "mtls-default" not in out
    assert not (example / ".mtlsc").exists()


def test_explain_shows_the_cluster_override_layer(example: Path) -> None:
    result = run("explain", "--root", example, "payments-gw/payments", "--cluster", "prod-us")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "on cluster prod-us " in out
    assert "on cluster prod-eu" not in out and "on cluster staging" not in out
    assert "layers (least to most specific): base < cluster prod-us (payments-prod-us)\n" in out
    assert ("clientValidation.perPort[port=9443].caBundles = ['ca-cert', {'name': 'partner-ca', "
            "'namespace': 'shared-cas'}]    # policies/overrides/payments-prod-us.yaml:17:9 "
            "[cluster prod-us (payments-prod-us)]") in out
    assert "port 9443 [admin]: AllowValidOnly" in out


def test_explain_without_cluster_covers_every_cluster_of_the_gateway(example: Path) -> None:
    result = run("explain", "--root", example, "payments")

    assert result.exit_code == 0, result.output
    clusters = re.findall(r"^gateway payments-gw/payments on cluster (\S+) ", result.stdout,
                          re.MULTILINE)
    assert clusters == ["prod-eu", "prod-us", "staging"]


@pytest.mark.parametrize("args", [["no-such/gateway"],
                                  ["agentgateway-system/mtls", "--cluster", "prod-eu"]],
                         ids=["unknown", "not-on-that-cluster"])
def test_explain_unknown_gateway_exits_1(args: list[str], example: Path) -> None:
    result = run("explain", "--root", example, *args)

    assert result.exit_code == 1, result.output
    assert f"error[UnknownGateway]: no gateway {args[0]!r} is compiled" in result.stderr
    assert result.stdout == ""


# --- schemas import ----------------------------------------------------------------------------


@pytest.mark.skipif(not GATEWAY_CRDS.is_file(), reason="Gateway API reference CRDs not present")
def test_schemas_import_writes_one_schema_per_served_version(tmp_path: Path) -> None:
    out = tmp_path / "schemas"

    result = run("schemas", "import", "--out", out, GATEWAY_CRDS)

    assert result.exit_code == 0, result.output
    base = out / "gateway-api/v1.5.1/standard"
    assert result.stdout.splitlines() == [(base / "gateway.v1.json").as_posix(),
                                          (base / "gateway.v1beta1.json").as_posix()]
    schema = json.loads((base / "gateway.v1.json").read_text())
    assert schema["properties"]["apiVersion"]["const"] == "gateway.networking.k8s.io/v1"
    assert schema["properties"]["kind"]["const"] == "Gateway"


@pytest.mark.skipif(not GATEWAY_CRDS.is_file(), reason="Gateway API reference CRDs not present")
def test_schemas_import_version_and_channel_options(tmp_path: Path) -> None:
    out = tmp_path / "schemas"

    result = run("schemas", "import", "--out", out, "--version", "v9.9.9",
                 "--channel", "experimental", GATEWAY_CRDS)

    assert result.exit_code == 0, result.output
    assert (out / "gateway-api/v9.9.9/experimental/gateway.v1.json").is_file()
    assert not (out / "gateway-api/v1.5.1").exists()


def test_schemas_import_rejects_a_file_without_crds(tmp_path: Path) -> None:
    configmap = tmp_path / "configmap.yaml"
    configmap.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n")

    result = run("schemas", "import", "--out", tmp_path / "schemas", configmap)

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error[SchemaImport]: ")
    assert not (tmp_path / "schemas").exists()


def test_schemas_import_reports_malformed_yaml_with_its_position(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: CustomResourceDefinition\nspec: [1, 2\n")

    result = run("schemas", "import", "--out", tmp_path / "schemas", broken)

    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(f"error[SchemaImport]: {broken}:3:1: ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "schemas").exists()


def test_schemas_import_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = run("schemas", "import", "--out", tmp_path / "schemas", tmp_path / "nope.yaml")

    assert result.exit_code == 2, result.output


# --- dev-pki -----------------------------------------------------------------------------------

PKI_FILES = ["ca-cert.pem", "ca-key.pem", "server-cert.pem", "server-key.pem",
             "client-cert.pem", "client-key.pem"]


def test_dev_pki_writes_the_seed_files(tmp_path: Path) -> None:
    directory = tmp_path / "pki"

    result = run("dev-pki", directory)

    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.splitlines()) == sorted((directory / n).as_posix()
                                                        for n in PKI_FILES)
    assert sorted(p.name for p in directory.iterdir()) == sorted(PKI_FILES)
    for name in PKI_FILES:
        mode = stat.S_IMODE((directory / name).stat().st_mode)
        assert mode == (0o600 if name.endswith("-key.pem") else 0o644), (name, oct(mode))
        pem = (directory / name).read_text()
        assert ("PRIVATE KEY-----" in pem) == name.endswith("-key.pem"), name


def test_dev_pki_default_seed_is_reproducible(tmp_path: Path) -> None:
    assert run("dev-pki", tmp_path / "a").exit_code == 0
    assert run("dev-pki", tmp_path / "b").exit_code == 0
    assert run("dev-pki", "--seed", "other", tmp_path / "c").exit_code == 0

    assert snapshot(tmp_path / "a") == snapshot(tmp_path / "b")
    assert (tmp_path / "a/ca-key.pem").read_bytes() != (tmp_path / "c/ca-key.pem").read_bytes()


def test_dev_pki_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    assert run("dev-pki", "--random", directory).exit_code == 0
    before = snapshot(directory)

    again = run("dev-pki", directory)

    assert again.exit_code == 1, again.output
    assert again.stderr.startswith("error[PkiExists]: ")
    assert "hint: pass --force to overwrite" in again.stderr
    assert snapshot(directory) == before

    forced = run("dev-pki", "--force", directory)

    assert forced.exit_code == 0, forced.output
    after = snapshot(directory)
    assert after.keys() == before.keys()
    assert after["ca-key.pem"] != before["ca-key.pem"]  # random keys replaced by the seed's


def test_dev_pki_seed_and_random_exclude_each_other(tmp_path: Path) -> None:
    result = run("dev-pki", "--seed", "x", "--random", tmp_path / "pki")

    assert result.exit_code == 2, result.output
    assert "--seed and --random exclude each other" in result.stderr
    assert not (tmp_path / "pki").exists()


# --- no traceback for any user error -----------------------------------------------------------


def _expected_errors(case: Path) -> list[dict[str, Any]]:
    expect = YAML(typ="safe").load((case / "expect.yaml").read_text())
    return [d for d in expect["diagnostics"] if d["severity"] == "error"]


INVALID_CASES = sorted(c for c in CASES.iterdir()
                       if c.is_dir() and not c.name.startswith("_")
                       and (c / "expect.yaml").is_file() and _expected_errors(c))


def test_there_are_invalid_cases() -> None:
    assert len(INVALID_CASES) >= 40


@pytest.mark.parametrize("case", INVALID_CASES, ids=[c.name for c in INVALID_CASES])
def test_invalid_case_is_reported_without_traceback(case: Path, tmp_path: Path,
                                                    test_pki: Path) -> None:
    root = prepare_case(case, tmp_path, test_pki)

    result = run("compile", "--root", root)  # an uncaught exception fails here

    assert result.exit_code in (1, 3), result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    error_lines = [line for line in result.stderr.splitlines() if "error[" in line]
    assert error_lines
    assert all(ERROR_LINE.match(line) for line in error_lines), error_lines
    for expected in _expected_errors(case):
        if expected["file"] is not None:
            where = (f"policies/{expected['file']}:{expected['line']}:{expected['column']}: "
                     f"error[{expected['code']}]: ")
            assert any(line.startswith(where) for line in error_lines), (where, error_lines)
    assert not (root / "out").exists()


# --- the installed console script ----------------------------------------------------------------


@pytest.mark.slow
def test_console_script_end_to_end(example: Path) -> None:
    script = Path(sys.executable).parent / "mtlsc"
    if not script.is_file():
        pytest.skip(f"console script not installed at {script}")

    compiled = subprocess.run([script, "compile"], cwd=example, capture_output=True, text=True,
                              timeout=120, check=False)

    assert compiled.returncode == 0, compiled.stderr
    assert (example / DEMO_GATEWAY).read_text().startswith(HEADER)
    assert wrote(compiled.stderr) == (len(snapshot(example / "overlays")), 0, 0, 0)

    checked = subprocess.run([script, "check"], cwd=example, capture_output=True, text=True,
                             timeout=120, check=False)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout == ""


def test_validate_rejects_a_missing_file_as_usage_error(compiled: Path) -> None:
    result = run("validate", "--root", compiled, str(compiled / "policies/nope.yaml"))
    assert result.exit_code == 2


def test_check_json_carries_the_diff_inside_the_document(compiled: Path) -> None:
    edit(compiled / MTLS_INTENT, "mode: AllowInsecureFallback", "mode: AllowValidOnly")
    document = json.loads(run("check", "--root", compiled, "--format", "json").stdout)
    assert "+            mode: AllowValidOnly" in document["diff"]


def test_check_tells_drift_from_invalid_input(compiled: Path) -> None:
    """Exit 4: the intents are fine but overlays/ is stale; exit 1: the intents are wrong
    (whatever the overlays); 0: both fine. Documented in docs/cli.md."""
    assert run("check", "--root", compiled).exit_code == 0
    intent = compiled / MTLS_INTENT
    intent.write_text(intent.read_text().replace("mode: AllowInsecureFallback",
                                                 "mode: AllowValidOnly", 1))
    assert run("check", "--root", compiled).exit_code == 4
    intent.write_text(intent.read_text().replace("mode: AllowValidOnly", "mode: Nope", 1))
    invalid = run("check", "--root", compiled)
    assert invalid.exit_code == 1, invalid.output
    assert "Drift" not in invalid.output
