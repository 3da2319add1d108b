"""`mtlsc validate` (the pre-commit hook) needs no secrets, yet finds certificate names the
cluster's source does not define and CA bundles in namespaces the cluster does not know."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from compiler.cli import main

MTLS = "policies/gateways/mtls.yaml"
PAYMENTS_US = "policies/overrides/payments-prod-us.yaml"


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_unknown_certificate_names_are_found_offline(example: Path) -> None:
    _edit(example / MTLS, "certificate: https-cert", "certificate: https-crt")
    _edit(example / MTLS, "caBundles: [ca-cert]", "caBundles: [ca-certs]")
    result = CliRunner().invoke(main, ["validate", "--root", str(example)])
    assert result.exit_code == 1, result.output
    assert f"{MTLS}:" in result.stderr
    assert ("error[UnknownCertificateRef]: certificate source 'dev-pki' has no certificates "
            "entry 'https-crt'") in result.stderr
    assert "did you mean 'https-cert'? add 'https-crt' under spec.local.certificates" in \
        result.stderr
    assert "has no caBundles entry 'ca-certs'" in result.stderr
    assert "    cluster: demo" in result.stderr
    assert not (example / ".mtlsc").exists()  # no PKI created, no certificate read


def test_ca_bundle_namespace_nothing_uses_is_reported(example: Path) -> None:
    _edit(example / PAYMENTS_US, "namespace: shared-cas", "namespace: shared-ca")
    result = CliRunner().invoke(main, ["validate", "--root", str(example)])
    assert result.exit_code == 0, result.output  # a warning: the namespace might exist
    assert (f"{PAYMENTS_US}:18:11: warning[UnknownNamespace]: CA bundle 'partner-ca' is read "
            "from namespace 'shared-ca', which no gateway, route, backend or certificate on "
            "cluster 'prod-us' uses") in result.stderr
    assert "hint: did you mean 'shared-cas'? if the namespace exists, list it in ClusterTarget " \
        "'prod-us' spec.namespaces" in result.stderr
    strict = CliRunner().invoke(main, ["validate", "--root", str(example), "--strict"])
    assert strict.exit_code == 1


def test_namespaces_listed_on_the_cluster_are_known(example: Path) -> None:
    """The example's prod-us lists shared-cas in spec.namespaces: no warning."""
    result = CliRunner().invoke(main, ["validate", "--root", str(example)])
    assert result.exit_code == 0, result.output
    assert "UnknownNamespace" not in result.stderr
    _edit(example / "policies/clusters/prod.yaml", "  namespaces: [shared-cas]", "")
    assert "UnknownNamespace" in CliRunner().invoke(
        main, ["validate", "--root", str(example)]).stderr


def test_an_override_that_applies_nowhere_is_an_error(example: Path) -> None:
    """A typo in an override's environment would silently drop its security change."""
    override = example / "policies/overrides/payments-staging.yaml"
    _edit(override, "environment: staging", "environment: stagign")
    result = CliRunner().invoke(main, ["validate", "--root", str(example)])
    assert result.exit_code == 1, result.output
    assert ("policies/overrides/payments-staging.yaml:11:16: error[UnusedOverride]: no "
            "ClusterTarget has environment 'stagign'; override 'payments-staging' applies "
            "nowhere\n    hint: did you mean 'staging'?") in result.stderr
    _edit(override, "environment: stagign", "environment: dev")  # demo's: not payments'
    result = CliRunner().invoke(main, ["validate", "--root", str(example)])
    assert result.exit_code == 1, result.output
    assert ("error[UnusedOverride]: override 'payments-staging' is for environment 'dev', but "
            "payments-gw/payments is not compiled for it (it is compiled for prod-eu, prod-us, "
            "staging)") in result.stderr
