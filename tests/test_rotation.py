"""Safe CA rotation, reviewed by `mtlsc diff` in a temporary Git repository with real history:

r0 (60 days ago)  the old CA is trusted, the server certificate comes from it;
r1 (N days ago)   the CA bundle holds the old and the new CA;
r2 (N-1 days ago) the server certificate is reissued by the new CA;
working tree      the old CA is removed: too early when N is within the rotation overlap,
                  fine after it. Overlays are compiled and committed at every revision, as in
                  a GitOps repository; the anchors' ages come from their history.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from compiler.cli import main
from compiler.pki import DEV_DNS_NAMES, issue_certificate, make_ca

NOW = datetime.now(UTC)
VALID_FROM = datetime(2026, 1, 1, tzinfo=UTC)
VALID_TO = datetime(2036, 1, 1, tzinfo=UTC)

CLUSTER = """\
apiVersion: mtlsc.dev/v1alpha1
kind: ClusterTarget
metadata: {name: demo}
spec:
  gatewayAPI: {version: v1.5.1, channel: standard}
  implementations: {agentgateway: agentgateway}
  certificateSource: pki
"""
SOURCE = """\
apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {name: pki}
spec:
  local:
    directory: pki
    certificates:
      https-cert: {certificate: SERVER-cert.pem, privateKey: SERVER-key.pem}
    caBundles:
      ca-cert: {file: BUNDLE.pem}
"""
INTENT = """\
apiVersion: mtlsc.dev/v1alpha1
kind: GatewayIntent
metadata: {name: mtls, namespace: gw}
spec:
  gatewayClassName: agentgateway
  clusters: [demo]
  listeners:
  - {name: https-8443, port: 8443, protocol: HTTPS, certificate: https-cert}
  - {name: https-8444, port: 8444, protocol: HTTPS, certificate: https-cert}
  clientValidation:
    default: {mode: AllowValidOnly, caBundles: [ca-cert]}
"""


def _pem(obj: Any) -> bytes:
    return bytes(obj.public_bytes(serialization.Encoding.PEM))


def _key(key: Any) -> bytes:
    return bytes(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("rotation-pki")
    bundles = {}
    for name in ("old", "new"):
        ca, ca_key = make_ca(f"{name.capitalize()} CA", not_before=VALID_FROM,
                             not_after=VALID_TO)
        server, key = issue_certificate(ca, ca_key, common_name="gateway",
                                        dns_names=DEV_DNS_NAMES, server=True,
                                        not_before=VALID_FROM, not_after=VALID_TO)
        bundles[name] = _pem(ca)
        (directory / f"{name}-ca.pem").write_bytes(_pem(ca))
        (directory / f"{name}-cert.pem").write_bytes(_pem(server))
        (directory / f"{name}-key.pem").write_bytes(_key(key))
    (directory / "both-ca.pem").write_bytes(bundles["old"] + bundles["new"])
    return directory


def git(root: Path, *args: str, when: datetime | None = None) -> str:
    stamp = (when or NOW).strftime("%Y-%m-%dT%H:%M:%SZ")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@mtlsc.dev",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@mtlsc.dev",
           "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                          text=True, env=env).stdout


def _state(root: Path, bundle: str, server: str) -> None:
    text = SOURCE.replace("BUNDLE", bundle).replace("SERVER", server)
    (root / "policies" / "source.yaml").write_text(text)


def _revision(root: Path, bundle: str, server: str, when: datetime, message: str) -> None:
    _state(root, bundle, server)
    done = CliRunner().invoke(main, ["compile", "--root", str(root), "-q"])
    assert done.exit_code == 0, done.output
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message, when=when)


def rotation_repo(root: Path, pki: Path, new_ca_days_ago: int, overlap_days: int | None = None
                  ) -> Path:
    (root / "policies").mkdir(parents=True)
    shutil.copytree(pki, root / "pki")  # a link out of the repository would be refused
    (root / ".gitignore").write_text("pki\n")
    cluster = CLUSTER if overlap_days is None else CLUSTER + (
        f"  certificateChecks: {{rotationOverlapDays: {overlap_days}}}\n")
    (root / "policies" / "cluster.yaml").write_text(cluster)
    (root / "policies" / "intent.yaml").write_text(INTENT)
    git(root, "init", "-q", "-b", "main")
    added = NOW - timedelta(days=new_ca_days_ago)
    _revision(root, "old-ca", "old", NOW - timedelta(days=60), "r0: the old CA")
    _revision(root, "both-ca", "old", added, "r1: trust the new CA too")
    _revision(root, "both-ca", "new", added + timedelta(days=1), "r2: server cert from new CA")
    _state(root, "new-ca", "new")  # the working tree: remove the old CA
    return root


def diff(root: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = CliRunner().invoke(main, ["diff", "--root", str(root), "--base", "HEAD",
                                     "--format", "json", *args])
    assert done.exit_code in (0, 1), done.output
    return done.exit_code, json.loads(done.stdout)


def _codes(doc: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    return sorted((n["code"], n["severity"], n["port"]) for n in doc["notes"])


def test_removing_the_old_ca_within_the_overlap_is_high(tmp_path: Path, pki: Path) -> None:
    root = rotation_repo(tmp_path / "repo", pki, new_ca_days_ago=3)
    _, doc = diff(root, "--rotation-overlap", "7d")
    assert _codes(doc) == [("TrustAnchorRemoved", "low", 8443),
                           ("TrustAnchorRemoved", "low", 8444),
                           ("TrustAnchorRemovedEarly", "high", 8443),
                           ("TrustAnchorRemovedEarly", "high", 8444)]
    early = next(n for n in doc["notes"] if n["code"] == "TrustAnchorRemovedEarly")
    assert early["cluster"] == "demo" and early["gateway"] == "gw/mtls"
    assert "CA 'CN=Old CA" in early["message"]
    assert "removed 3 day(s) after 'CN=New CA" in early["message"]
    assert "the rotation overlap is 7 day(s)" in early["message"]
    # The trust anchor change itself: subject, issuer, fingerprint, validity, places.
    (change,) = doc["trustAnchors"]
    assert change["change"] == "removed" and change["subject"].startswith("CN=Old CA")
    assert change["issuer"] == change["subject"]
    assert len(change["fingerprint"]) == 64
    assert (change["notBefore"], change["notAfter"]) == ("2026-01-01T00:00:00Z",
                                                         "2036-01-01T00:00:00Z")
    assert change["places"] == [{"cluster": "demo", "gateway": "gw/mtls", "port": 8443},
                                {"cluster": "demo", "gateway": "gw/mtls", "port": 8444}]
    assert diff(root, "--rotation-overlap", "7d", "--fail-on", "high")[0] == 1


def test_removing_the_old_ca_after_the_overlap_is_fine(tmp_path: Path, pki: Path) -> None:
    root = rotation_repo(tmp_path / "repo", pki, new_ca_days_ago=10)
    code, doc = diff(root, "--rotation-overlap", "7d", "--fail-on", "high")
    assert code == 0
    assert _codes(doc) == [("TrustAnchorRemoved", "low", 8443),
                           ("TrustAnchorRemoved", "low", 8444)]


def test_the_overlap_can_come_from_the_cluster_target(tmp_path: Path, pki: Path) -> None:
    root = rotation_repo(tmp_path / "repo", pki, new_ca_days_ago=3, overlap_days=7)
    _, doc = diff(root)
    assert ("TrustAnchorRemovedEarly", "high", 8443) in _codes(doc)
    # The command line wins: an overlap of 2 days has passed.
    _, doc = diff(root, "--rotation-overlap", "2d")
    assert "TrustAnchorRemovedEarly" not in {n["code"] for n in doc["notes"]}


def test_without_an_overlap_nothing_is_judged_early(tmp_path: Path, pki: Path) -> None:
    root = rotation_repo(tmp_path / "repo", pki, new_ca_days_ago=3)
    _, doc = diff(root)
    assert "TrustAnchorRemovedEarly" not in {n["code"] for n in doc["notes"]}


def test_removing_a_ca_that_still_signs_the_server_certificate(tmp_path: Path,
                                                               pki: Path) -> None:
    """Skip r2: the old CA is removed while the server certificate still comes from it."""
    root = rotation_repo(tmp_path / "repo", pki, new_ca_days_ago=30)
    _state(root, "new-ca", "old")
    _, doc = diff(root)
    signing = [n for n in doc["notes"] if n["code"] == "TrustAnchorStillSigning"]
    assert [(n["severity"], n["port"]) for n in signing] == [("high", 8443), ("high", 8444)]
    assert "still signs the server certificate(s) https-cert in use" in signing[0]["message"]


def test_adding_the_new_ca_is_explained(tmp_path: Path, pki: Path) -> None:
    """r0 → r1 in the text and Markdown reports: who the new anchor is and where."""
    root = rotation_repo(tmp_path / "repo", pki, new_ca_days_ago=3)
    _state(root, "both-ca", "old")
    text = CliRunner().invoke(main, ["diff", "--root", str(root), "--base", "HEAD~2"]).stdout
    assert "trust anchor added: 'CN=New CA" in text
    assert "(self-signed, sha256 " in text and "valid 2026-01-01 → 2036-01-01)" in text
    assert "at demo gw/mtls:8443,8444" in text
    markdown = CliRunner().invoke(main, ["diff", "--root", str(root), "--base", "HEAD~2",
                                         "--format", "markdown"]).stdout
    assert "#### Trust anchors" in markdown
    assert "| **added** | CN=New CA" in markdown and "| demo gw/mtls:8443,8444 |" in markdown


def test_rotation_overlap_must_be_a_duration(tmp_path: Path, pki: Path) -> None:
    root = rotation_repo(tmp_path / "repo", pki, new_ca_days_ago=3)
    done = CliRunner().invoke(main, ["diff", "--root", str(root), "--base", "HEAD",
                                     "--rotation-overlap", "soon"])
    assert done.exit_code == 2
    assert "--rotation-overlap" in done.output
