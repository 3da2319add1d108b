"""`mtlsc diff --base REF` in a temporary Git repository made by the tests: the expected files
and security notes in every format, Markdown snapshots (with truncation), no secret material."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from compiler.cli import main
from compiler.diff import DiffReport, FileChange, as_markdown
from compiler.pki import generate_dev_pki
from compiler.risk import Note, Severity
from tests.support import REPO

DATA = Path(__file__).parent / "data"
GIT_ENV = {"GIT_AUTHOR_NAME": "mtlsc tests", "GIT_AUTHOR_EMAIL": "tests@mtlsc.dev",
           "GIT_COMMITTER_NAME": "mtlsc tests", "GIT_COMMITTER_EMAIL": "tests@mtlsc.dev",
           "GIT_AUTHOR_DATE": "2026-11-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-11-01T00:00:00Z"}
MTLS = "policies/gateways/mtls.yaml"
DEFAULT = "policies/gateways/mtls-default.yaml"
SOURCE = "policies/sources/dev-pki.yaml"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env={**os.environ, **GIT_ENV}).stdout


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Commit 1: the example. Commit 2: mtls's default becomes AllowInsecureFallback.
    Working tree: mtls-default trusts one more CA, and the server certificate rotates."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "policies", root / "policies")
    pki = root / ".mtlsc" / "dev-pki"
    pki.mkdir(parents=True)
    extra = generate_dev_pki(seed="another-ca")
    (pki / "extra-ca.pem").write_bytes(extra["ca-cert.pem"])
    (pki / "rotated-cert.pem").write_bytes(extra["server-cert.pem"])
    (pki / "rotated-key.pem").write_bytes(extra["server-key.pem"])
    (root / ".gitignore").write_text(".mtlsc/\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "example")
    edit(root / MTLS, "      mode: AllowValidOnly", "      mode: AllowInsecureFallback")
    git(root, "commit", "-q", "-am", "mtls: insecure fallback on the default")
    edit(root / SOURCE, "      partner-ca:", "      extra-ca:\n        file: extra-ca.pem\n"
                                            "      partner-ca:")
    edit(root / DEFAULT, "caBundles: [ca-cert]", "caBundles: [ca-cert, extra-ca]")
    edit(root / SOURCE, "certificate: server-cert.pem\n        privateKey: server-key.pem",
         "certificate: rotated-cert.pem\n        privateKey: rotated-key.pem")
    return root


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["diff", "--root", str(root), *args])


def test_diff_against_head_reports_exact_files_and_notes(repo: Path) -> None:
    result = run(repo, "--base", "HEAD", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [(f["path"], f["status"]) for f in doc["files"]] == [
        ("overlays/demo/agentgateway-system/configmap-extra-ca.yaml", "added"),
        ("overlays/demo/agentgateway-system/gateway-mtls-default.yaml", "modified"),
        ("overlays/demo/envoy/agentgateway-system/mtls-default.yaml", "modified"),
        ("overlays/demo/kustomization.yaml", "modified"),
    ]
    codes = sorted((n["code"], n["gateway"], n["port"]) for n in doc["notes"]
                   if n["cluster"] == "demo")
    assert codes == [  # mtls: its two listeners and the tenant ListenerSet's one
        ("ServerCertificateRotated", "agentgateway-system/mtls", None),
        ("ServerCertificateRotated", "agentgateway-system/mtls", None),
        ("ServerCertificateRotated", "agentgateway-system/mtls", None),
        ("ServerCertificateRotated", "agentgateway-system/mtls-default", None),
        ("ServerCertificateRotated", "agentgateway-system/mtls-default", None),
        ("TrustAnchorAdded", "agentgateway-system/mtls-default", 8443),
        ("TrustAnchorAdded", "agentgateway-system/mtls-default", 8444),
    ]
    assert doc["clusters"] == {"demo": {"agentgateway-system/mtls-default": "modified"}}
    # The rotated server certificate is in no overlay file, but every listener using it is
    # named: payments has three HTTPS listeners on each of prod-eu, prod-us and staging.
    elsewhere = [n for n in doc["notes"] if n["cluster"] != "demo"]
    assert len(elsewhere) == 9
    assert {n["code"] for n in elsewhere} == {"ServerCertificateRotated"}
    assert all("→" in n["message"] and "sha256 " in n["message"] and "valid " in n["message"]
               for n in elsewhere)


def test_diff_against_the_first_commit_also_sees_the_fallback(repo: Path) -> None:
    result = run(repo, "--base", "HEAD~1", "--format", "text")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("[high]")]
    assert lines == [
        "[high] demo agentgateway-system/mtls: port 8443: AllowValidOnly → "
        "AllowInsecureFallback: clients without a valid certificate are now accepted",
        "[high] demo agentgateway-system/mtls-default: port 8443: CA certificate added to the "
        "trust anchors: " + lines[1].split("trust anchors: ")[1],
        "[high] demo agentgateway-system/mtls-default: port 8444: CA certificate added to the "
        "trust anchors: " + lines[2].split("trust anchors: ")[1],
    ]
    assert "+          mode: AllowInsecureFallback" in result.stdout
    assert run(repo, "--base", "HEAD~1", "--fail-on", "high").exit_code == 1
    assert run(repo, "--base", "HEAD", "--fail-on", "high").exit_code == 1
    assert run(repo, "--base", "HEAD", "--fail-on", "high", "--cluster", "prod-eu"
               ).exit_code == 0


def test_no_certificate_body_or_key_in_any_format(repo: Path, tmp_path: Path) -> None:
    for fmt in ("text", "json", "markdown"):
        full = tmp_path / f"full.{fmt}"
        result = run(repo, "--base", "HEAD~1", "--format", fmt, "--output", str(full))
        for text in (result.stdout, full.read_text()):
            assert "BEGIN CERTIFICATE" not in text and "PRIVATE KEY" not in text
            assert "sha256:" in text
    shown = run(repo, "--base", "HEAD", "--show-ca-bodies")
    assert "BEGIN CERTIFICATE" in shown.stdout and "PRIVATE KEY" not in shown.stdout


def test_markdown_snapshot(repo: Path, update_goldens: bool) -> None:
    result = run(repo, "--base", "HEAD~1", "--format", "markdown")
    assert result.exit_code == 0
    golden = DATA / "diff-summary.md"
    if update_goldens:
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()


def _big_report(files: int) -> DiffReport:
    body = "".join(f"+line {i} " + "x" * 60 + "\n" for i in range(40))
    changes = [FileChange(f"overlays/c1/ns/gateway-gw-{i:03}.yaml", "modified", "c1",
                          (f"ns/gw-{i:03}",), f"--- a/x\n+++ b/x\n@@ -1 +1 @@\n{body}")
               for i in range(files)]
    notes = [Note(Severity.HIGH, "c1", "ns/gw-000", "InsecureFallbackEnabled",
                  "port 443: AllowValidOnly → AllowInsecureFallback", 443)]
    return DiffReport("origin/main", "0123456789abcdef0123", changes, notes)


def test_markdown_is_truncated_below_the_comment_limit(update_goldens: bool) -> None:
    report = _big_report(60)
    full = as_markdown(report, limit=None)
    assert len(full) > 65_536
    cut = as_markdown(report)
    assert len(cut) <= 65_536
    assert cut.startswith("<!-- mtlsc-diff -->")
    assert "AllowInsecureFallback" in cut.split("#### File diffs")[0]  # summary first
    shown = cut.count("<details>")
    assert 0 < shown < 60 and f"…and {60 - shown} more file(s) not shown" in cut
    small = as_markdown(_big_report(3), limit=3_000)
    golden = DATA / "diff-truncated.md"
    if update_goldens:
        golden.write_text(small)
    assert small == golden.read_text()


def test_unknown_ref_is_a_usage_error(repo: Path) -> None:
    result = run(repo, "--base", "no-such-branch")
    assert result.exit_code == 2
    assert "not a commit in this repository" in result.output


def test_security_notes_for_removed_validation_and_restrictions() -> None:
    from compiler.fetch import Materials
    from compiler.risk import Side, security_notes
    from tests.test_precedence_properties import compile_one

    def model_of(validation: dict[str, object]) -> Side:
        from compiler.model import ClusterModel, Model

        gateway, _ = compile_one({
            "apiVersion": "mtlsc.dev/v1alpha1", "kind": "GatewayIntent",
            "metadata": {"name": "gw", "namespace": "ns"},
            "spec": {"gatewayClassName": "agentgateway", "clusters": ["c1"],
                     "listeners": [{"name": "a", "port": 443, "protocol": "HTTPS",
                                    "certificate": "srv"}],
                     **({"clientValidation": validation} if validation else {})}})
        from tests.test_precedence_properties import TARGET  # noqa: F401

        target = _target()
        return Side(Model((ClusterModel(target, (gateway,)),)), Materials())

    restricted = {"default": {"caBundles": ["ca-a"], "clientRestrictions": {
        "subjectAltNames": {"dns": ["a.example.com"]}}}}
    plain = {"default": {"caBundles": ["ca-a"]}}
    now = datetime(2027, 1, 1, tzinfo=UTC)
    loosened = security_notes(model_of(restricted), model_of(plain), now=now)
    assert [(n.code, n.severity) for n in loosened] == [("ClientRestrictionRemoved",
                                                         Severity.HIGH)]
    removed = security_notes(model_of(plain), model_of({}), now=now)
    assert [(n.code, n.severity) for n in removed] == [("ClientValidationRemoved",
                                                        Severity.HIGH)]
    tightened = security_notes(model_of({}), model_of(plain), now=now)
    assert [n.code for n in tightened] == ["ClientValidationAdded"]


def _target() -> object:
    from datetime import timedelta

    from compiler.diagnostics import Location
    from compiler.model import Origin, Target

    here = Location("t.yaml", 1, 1)
    return Target("c1", None, "v1.5.1", "standard", "out/c1", (), "s", timedelta(days=30),
                  Origin(here, "base"), here, here)


def test_posture_section_says_which_ports_got_weaker(repo: Path) -> None:
    text = run(repo, "--base", "HEAD~1", "--format", "text").stdout
    assert "posture demo agentgateway-system/mtls port 8443: weaker: mode AllowValidOnly → " \
        "AllowInsecureFallback" in text
    data = json.loads(run(repo, "--base", "HEAD~1", "--format", "json").stdout)
    assert {(c["gateway"], c["port"], c["direction"]) for c in data["posture"]} == {
        ("agentgateway-system/mtls", 8443, "weaker"),
        ("agentgateway-system/mtls-default", 8443, "weaker"),
        ("agentgateway-system/mtls-default", 8444, "weaker")}
    # Against HEAD only the working tree's extra CA differs: trust widened, mode unchanged.
    head = json.loads(run(repo, "--base", "HEAD", "--format", "json").stdout)["posture"]
    assert {(c["port"], c["direction"]) for c in head} == {(8443, "weaker"), (8444, "weaker")}
    assert all(c["what"].startswith("trusts ") for c in head)


def test_cluster_count_leaves_the_lockfile_out() -> None:
    """A Vault rotation changes three clusters' overlays and mtlsc.lock: three clusters."""
    changes = [FileChange(f"overlays/{c}/ns/configmap-ca.yaml", "modified", c, ("ns/gw",),
                          "--- a\n+++ b\n") for c in ("prod-eu", "prod-us", "staging")]
    changes.append(FileChange("mtlsc.lock", "modified", None, (), "--- a\n+++ b\n"))
    report = DiffReport("origin/main", "0" * 40, changes)
    assert report.clusters() == ["prod-eu", "prod-us", "staging"]
    assert "**4 file(s) changed** in 3 cluster(s) and `mtlsc.lock`." in as_markdown(report)


def test_exit_code_follows_flux_diff(repo: Path) -> None:
    """--exit-code: 0 no change, 1 changes, > 1 errors (invalid input 2, bad ref 2)."""
    assert run(repo, "--base", "HEAD", "--exit-code").exit_code == 1  # the working tree edits
    assert run(repo, "--base", "HEAD").exit_code == 0  # without the flag: a report, exit 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "take the edits")
    unchanged = run(repo, "--base", "HEAD", "--exit-code")
    assert unchanged.exit_code == 0, unchanged.output
    assert run(repo, "--base", "no-such-ref", "--exit-code").exit_code == 2
    edit(repo / MTLS, "mode: AllowInsecureFallback", "mode: Nope")
    invalid = run(repo, "--base", "HEAD", "--exit-code")
    assert invalid.exit_code == 2, invalid.output
    assert "error[SchemaViolation]" in invalid.output
    assert run(repo, "--base", "HEAD").exit_code == 1  # invalid input without the flag


def test_github_format_annotates_each_note(repo: Path) -> None:
    result = run(repo, "--base", "HEAD~1", "--format", "github")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines and all(line.startswith(("::error ", "::warning ", "::notice "))
                         for line in lines)
    assert ("::error title=mtlsc diff%3A InsecureFallbackEnabled::demo agentgateway-system/mtls: "
            "port 8443: AllowValidOnly → AllowInsecureFallback") in result.stdout
    assert sum(line.startswith("::notice title=mtlsc diff%3A ServerCertificateRotated")
               for line in lines) == 14  # 13 listeners + the tenant ListenerSet listener
    assert "BEGIN CERTIFICATE" not in result.stdout and "+++ b/" not in result.stdout
