"""Diagnostics name the cluster(s) they depend on and, when an override caused them, the
override and the intent: in the data, and in the text, JSON, GitHub and SARIF reports."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import report
from compiler.diagnostics import Diagnostic, Location, Related, Severity, sorted_diagnostics
from compiler.sarif import to_sarif
from tests.support import COMMON, compile_root

INTENT = """\
apiVersion: mtlsc.dev/v1alpha1
kind: GatewayIntent
metadata:
  name: gw
  namespace: ns
spec:
  gatewayClassName: agentgateway
  clusters: [v151, v161]
  listeners:
  - {name: https-8443, port: 8443, protocol: HTTPS, certificate: srv}
  - {name: https-8444, port: 8444, protocol: HTTPS, certificate: srv}
  clientValidation:
    default: {mode: AllowValidOnly, caBundles: [short-ca]}
    perPort:
    - {port: 8444, mode: AllowInsecureFallback, caBundles: [ca]}
"""
# On v161 only, the override removes the listener the intent's perPort entry is for.
OVERRIDE = """\
apiVersion: mtlsc.dev/v1alpha1
kind: GatewayOverride
metadata:
  name: drop-8444
spec:
  gateway: {name: gw, namespace: ns}
  cluster: v161
  patch:
    listeners:
    - {name: https-8444, $patch: delete}
"""


def _root(tmp_path: Path, test_pki: Path, *, override: bool = True,
          v161_window: int | None = None) -> Path:
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    shutil.copytree(COMMON, root / "policies" / "_common")
    shutil.copytree(test_pki, root / "pki")
    (root / "policies" / "intent.yaml").write_text(INTENT)
    if override:
        (root / "policies" / "override.yaml").write_text(OVERRIDE)
    if v161_window is not None:
        targets = root / "policies" / "_common" / "targets.yaml"
        targets.write_text(targets.read_text().replace(
            "  outputDir: out/v161\n", "  outputDir: out/v161\n  certificateChecks: "
            f"{{expiryWarningDays: {v161_window}}}\n"))
    return root


def test_a_finding_in_several_clusters_is_one_diagnostic_naming_them(
        tmp_path: Path, test_pki: Path) -> None:
    result = compile_root(_root(tmp_path, test_pki, override=False))
    insecure = [d for d in result.diagnostics if d.code == "InsecureFrontendValidationMode"]
    assert [(d.location, d.clusters) for d in insecure] == [
        (Location("policies/intent.yaml", 15, 26), ("v151", "v161"))]
    assert insecure[0].cluster == "v151, v161"


def test_an_error_caused_by_an_override_names_the_override(tmp_path: Path,
                                                           test_pki: Path) -> None:
    result = compile_root(_root(tmp_path, test_pki))
    (found,) = [d for d in result.diagnostics if d.code == "PerPortWithoutHTTPSListener"]
    assert found.location is not None and found.location.file == "policies/intent.yaml"
    assert found.clusters == ("v161",)  # v151 keeps the listener
    assert found.related == (Related(Location("policies/override.yaml", 7, 12),
                                     "applied override 'drop-8444' (cluster v161)"),)
    # The base intent's own findings get no related location.
    insecure = next(d for d in result.diagnostics if d.code == "InsecureFrontendValidationMode")
    assert insecure.related == () and insecure.clusters == ("v151",)


def test_expiry_warnings_name_only_clusters_whose_window_they_fall_in(
        tmp_path: Path, test_pki: Path) -> None:
    """short-ca expires 9 days after the tests' clock: in v151's 30-day window, not in the
    5-day window v161 sets."""
    result = compile_root(_root(tmp_path, test_pki, override=False, v161_window=5))
    (soon,) = [d for d in result.diagnostics if d.code == "CertificateExpiringSoon"]
    assert soon.clusters == ("v151",)
    assert "(9 day(s) left)" in soon.message


def _sample() -> Diagnostic:
    return Diagnostic("PerPortWithoutHTTPSListener", Severity.WARNING, "port 8444 has no "
                      "HTTPS listener", Location("policies/intent.yaml", 15, 7), "fix it",
                      clusters=("prod-eu",),
                      related=(Related(Location("policies/o.yaml", 7, 3), "applied override "
                                       "'o' (cluster prod-eu)"),))


def test_every_format_carries_cluster_and_related() -> None:
    d = _sample()
    assert report.text([d]).splitlines() == [
        "policies/intent.yaml:15:7: warning[PerPortWithoutHTTPSListener]: port 8444 has no "
        "HTTPS listener",
        "    cluster: prod-eu",
        "    related: policies/o.yaml:7:3: applied override 'o' (cluster prod-eu)",
        "    hint: fix it"]
    (row,) = json.loads(report.to_json([d]))["diagnostics"]
    assert row["cluster"] == "prod-eu" and row["clusters"] == ["prod-eu"]
    assert row["related"] == [{"file": "policies/o.yaml", "line": 7, "column": 3,
                               "message": "applied override 'o' (cluster prod-eu)"}]
    assert "%0Acluster: prod-eu%0Arelated: policies/o.yaml:7:3: " in report.github([d])
    (result,) = json.loads(to_sarif([d]))["runs"][0]["results"]
    assert result["properties"] == {"clusters": ["prod-eu"]}
    assert "cluster: prod-eu" in result["message"]["text"]
    (rel,) = result["relatedLocations"]
    assert rel["physicalLocation"]["artifactLocation"]["uri"] == "policies/o.yaml"
    assert rel["physicalLocation"]["region"] == {"startLine": 7, "startColumn": 3}


def test_merging_unites_clusters_and_related() -> None:
    d = _sample()
    other = Diagnostic(d.code, d.severity, d.message, d.location, d.hint, clusters=("prod-us",))
    (merged,) = sorted_diagnostics([other, d])
    assert merged.clusters == ("prod-eu", "prod-us")
    assert merged.related == d.related


@settings(max_examples=200, deadline=None)
@given(st.permutations([
    Diagnostic("A", Severity.WARNING, "m", Location("f.yaml", 1, 1), clusters=("c2",)),
    Diagnostic("A", Severity.WARNING, "m", Location("f.yaml", 1, 1), clusters=("c1",),
               related=(Related(Location("o.yaml", 2, 3), "override"),)),
    Diagnostic("A", Severity.WARNING, "m", Location("f.yaml", 1, 1), clusters=("c3",)),
    Diagnostic("B", Severity.ERROR, "m", None, clusters=("c1",)),
    Diagnostic("B", Severity.ERROR, "m", None),
]))
def test_merging_does_not_depend_on_the_order(found: list[Diagnostic]) -> None:
    merged = sorted_diagnostics(found)
    assert [(d.code, d.clusters, len(d.related)) for d in merged] == [
        ("B", ("c1",), 0), ("A", ("c1", "c2", "c3"), 1)]


def test_tagging_a_diagnostic_keeps_every_other_field() -> None:
    """`in_clusters` and `with_related` spell out the constructor: a field added to
    Diagnostic must be carried there too, or this fails."""
    original = Diagnostic("Code", Severity.WARNING, "message", Location("f.yaml", 1, 2),
                          "hint", True, ("b",), (Related(Location("g.yaml", 3, 4), "r"),))
    extra = Related(Location("a.yaml", 1, 1), "x")
    for tagged, changed in ((original.in_clusters("a"), "clusters"),
                            (original.with_related(extra), "related")):
        for field in dataclasses.fields(Diagnostic):
            if field.name != changed:
                assert getattr(tagged, field.name) == getattr(original, field.name), field.name
    assert original.in_clusters("a", "b").clusters == ("a", "b")
    assert original.with_related(extra).related == (extra, *original.related)
    assert [f.name for f in dataclasses.fields(Diagnostic)] == [
        "code", "severity", "message", "location", "hint", "source_failure", "clusters",
        "related"]
