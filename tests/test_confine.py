"""Confinement: paths from policy files stay inside the repository (compiler/confine.py and the
local PEM source). Every violation is a located error with a hint, exit 1, and nothing is
created or read outside the repository."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from compiler.cli import main
from compiler.confine import check_output_paths, lexical_problem, normal_form, overlaps
from compiler.k8s.validate import SchemaStore
from compiler.load import read_policy_files
from compiler.pipeline import compile_policies, schema_roots
from compiler.pki import create_dev_pki
from compiler.secrets.factory import source_factory
from compiler.secrets.local import PEM_SIZE_LIMIT

GATEWAY = """apiVersion: mtlsc.dev/v1alpha1
kind: GatewayIntent
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: envoy
  clusters: [prod]
  listeners:
  - {name: https, port: 443, protocol: HTTPS, certificate: https-cert}
  clientValidation:
    default: {mode: AllowValidOnly, caBundles: [ca-cert]}
"""


def target(name: str = "prod", output: str | None = None) -> str:
    line = f"\n  outputDir: {output}" if output is not None else ""
    return f"""apiVersion: mtlsc.dev/v1alpha1
kind: ClusterTarget
metadata: {{name: {name}}}
spec:
  environment: prod
  gatewayAPI: {{version: v1.5.1, channel: standard}}
  certificateSource: pki{line}
"""


def source(directory: str = ".mtlsc/dev-pki", dev_pki: bool = True, ca: str = "ca-cert.pem",
           cert: str = "server-cert.pem") -> str:
    return f"""apiVersion: mtlsc.dev/v1alpha1
kind: CertificateSource
metadata: {{name: pki}}
spec:
  local:
    directory: {directory}
    createDevPki: {str(dev_pki).lower()}
    certificates:
      https-cert: {{certificate: {cert}, privateKey: server-key.pem}}
    caBundles:
      ca-cert: {{file: {ca}}}
"""


def make_repo(root: Path, targets: str | None = None, src: str | None = None) -> Path:
    (root / "policies").mkdir(parents=True)
    (root / "policies/gateway.yaml").write_text(GATEWAY)
    (root / "policies/targets.yaml").write_text(targets or target())
    (root / "policies/source.yaml").write_text(src or source())
    return root


def mtlsc(root: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["compile", "--root", str(root), "-q", *args])


def assert_located(result: Result, code: str, file: str, line: int) -> None:
    assert result.exit_code == 1, result.output
    assert f"policies/{file}:{line}:" in result.output, result.output
    assert f"error[{code}]" in result.output, result.output
    assert "hint:" in result.output
    assert "Traceback" not in result.output


# --- pure rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "problem"), [
    ("../x", "contains '..'"), ("overlays/../../x", "contains '..'"),
    ("/etc", "is an absolute path"), ("", "is empty"), ("a\x00b", "contains a NUL character"),
    ("overlays/prod", None), ("./overlays", None), ("..foo/bar", None)])
def test_lexical_problems(value: str, problem: str | None) -> None:
    assert lexical_problem(value) == problem


def test_normal_form_and_overlaps() -> None:
    assert normal_form("./overlays//prod/.") == "overlays/prod"
    assert normal_form(".") == ""
    assert overlaps("overlays", "overlays/prod") and overlaps("overlays/prod", "overlays")
    assert overlaps("", "anything") and overlaps("a", "a")
    assert not overlaps("overlays/prod", "overlays/prod-eu")
    assert not overlaps("policies-out", "policies")


def test_compiled_file_names_must_stay_in_their_directory() -> None:
    files = {"overlays/a/ns/x.yaml": b"", "mtlsc.lock": b"", "overlays/a/../b/x.yaml": b"",
             "overlays/b/x.yaml": b"", "overlays/a//x.yaml": b""}
    assert check_output_paths(files, ["overlays/a"]) == [
        "overlays/a/../b/x.yaml", "overlays/a//x.yaml", "overlays/b/x.yaml"]


# --- outputDir -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("output", "code"), [
    ("../elsewhere", "PathOutsideRepository"), ("/tmp/mtlsc-escape", "PathOutsideRepository"),
    ("overlays/../../x", "PathOutsideRepository"), (".", "OverlappingPaths"),
    ("./overlays/prod", "PathNotNormal"), ("policies", "OverlappingPaths"),
    ("policies/out", "OverlappingPaths"), (".git/x", "OverlappingPaths"),
    (".mtlsc", "OverlappingPaths"), ("mtlsc.lock", "OverlappingPaths"),
    ("out//prod", "PathNotNormal"),
    ("schemas", "OverlappingPaths")])
def test_bad_output_directories(tmp_path: Path, output: str, code: str) -> None:
    root = make_repo(tmp_path / "repo", targets=target(output=output))

    result = mtlsc(root)

    assert_located(result, code, "targets.yaml", 8)
    assert not (tmp_path / "elsewhere").exists() and not Path("/tmp/mtlsc-escape").exists()
    assert not (root / "overlays").exists()


def test_the_repository_root_as_output(tmp_path: Path) -> None:
    for output in ("./", ".", "./."):
        root = make_repo(tmp_path / output.replace("/", "s"), targets=target(output=output))
        result = mtlsc(root)
        assert_located(result, "OverlappingPaths", "targets.yaml", 8)
        assert "the repository root itself" in result.output
        assert "PathNotNormal" not in result.output


def test_two_clusters_may_not_share_or_nest_directories(tmp_path: Path) -> None:
    two = target("prod", "out/prod") + "---\n" + target("prod-eu", "out/prod/eu")
    root = make_repo(tmp_path / "repo", targets=two)

    result = mtlsc(root)

    assert_located(result, "OverlappingPaths", "targets.yaml", 17)
    assert "outputDir of ClusterTarget 'prod'" in result.output


def test_an_output_directory_over_the_certificates(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", targets=target(output="certs/prod"),
                     src=source("certs"))
    assert_located(mtlsc(root), "OverlappingPaths", "targets.yaml", 8)


def test_an_output_directory_through_a_symlink(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", targets=target(output="out/prod"))
    (root / "real").mkdir()
    (root / "out").symlink_to("real")
    assert_located(mtlsc(root), "SymlinkInOutputPath", "targets.yaml", 8)
    assert list((root / "real").iterdir()) == []


def test_an_output_directory_symlinked_out_of_the_repository(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = make_repo(tmp_path / "repo", targets=target(output="out/prod"))
    (root / "out").symlink_to(outside)

    result = mtlsc(root)

    assert_located(result, "PathOutsideRepository", "targets.yaml", 8)
    assert list(outside.iterdir()) == []


# --- certificate sources -------------------------------------------------------------------------


@pytest.mark.parametrize("directory", ["../../etc", "/tmp/mtlsc-dev-pki-escape"])
def test_create_dev_pki_never_writes_outside(tmp_path: Path, directory: str) -> None:
    root = make_repo(tmp_path / "a/b/repo", src=source(directory))

    result = mtlsc(root)

    assert_located(result, "PathOutsideRepository", "source.yaml", 6)
    assert not (tmp_path / "a/etc").exists()
    assert not Path("/tmp/mtlsc-dev-pki-escape").exists()
    assert sorted(p.name for p in (tmp_path / "a/b").iterdir()) == ["repo"]


def test_create_dev_pki_through_a_symlink_out(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root = make_repo(tmp_path / "repo", src=source("keys"))
    (root / "keys").symlink_to(outside)

    for extra in ((), ("--allow-read-outside", str(outside))):  # reading permission: no help
        assert_located(mtlsc(root, *extra), "PathOutsideRepository", "source.yaml", 6)
        assert list(outside.iterdir()) == []


def test_create_dev_pki_may_not_write_into_policies(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", src=source("policies/keys"))
    assert_located(mtlsc(root), "OverlappingPaths", "source.yaml", 6)
    assert not (root / "policies/keys").exists()


@pytest.mark.parametrize(("field", "value", "line"), [
    ("ca", "../../outside-ca.pem", 11), ("ca", "/etc/hostname", 11),
    ("cert", "../server-cert.pem", 9)])
def test_certificate_file_names_stay_in_the_directory(tmp_path: Path, field: str, value: str,
                                                      line: int) -> None:
    root = make_repo(tmp_path / "repo", src=source(**{field: value}))
    assert_located(mtlsc(root), "PathOutsideRepository", "source.yaml", line)


def test_reading_outside_needs_the_option(tmp_path: Path) -> None:
    outside = tmp_path / "company-pki"
    create_dev_pki(outside)
    root = make_repo(tmp_path / "repo", src=source("pki", dev_pki=False))
    (root / "pki").symlink_to(outside)

    assert_located(mtlsc(root), "PathOutsideRepository", "source.yaml", 6)
    result = mtlsc(root, "--allow-read-outside", str(outside))
    assert result.exit_code == 0, result.output
    assert (root / "overlays/prod/ns/configmap-ca-cert.yaml").is_file()


def test_a_ca_file_linked_out_of_the_repository(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo")
    assert mtlsc(root).exit_code == 0
    (tmp_path / "elsewhere.pem").write_bytes((root / ".mtlsc/dev-pki/ca-cert.pem").read_bytes())
    os.unlink(root / ".mtlsc/dev-pki/ca-cert.pem")
    (root / ".mtlsc/dev-pki/ca-cert.pem").symlink_to(tmp_path / "elsewhere.pem")

    assert_located(mtlsc(root), "PathOutsideRepository", "source.yaml", 11)


def test_a_ca_file_linked_inside_the_repository_is_fine(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", src=source(ca="shared/ca.pem"))
    assert "CertificateFileMissing" in mtlsc(root).output  # shared/ca.pem does not exist yet
    (root / ".mtlsc/dev-pki/shared").mkdir()
    (root / ".mtlsc/dev-pki/shared/ca.pem").symlink_to("../ca-cert.pem")
    assert mtlsc(root).exit_code == 0


def test_the_local_source_itself_refuses_to_leave_the_repository(tmp_path: Path) -> None:
    """The library without the CLI's on-disk checks: the source is the last line of defence."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = make_repo(tmp_path / "repo", src=source("keys"))
    (root / "keys").symlink_to(outside)
    texts = read_policy_files(root / "policies", root)

    result = compile_policies(texts, source_factory(root), SchemaStore(schema_roots(root)))

    assert [d.code for d in result.diagnostics if d.is_error] == ["PathOutsideRepository"] * 2
    assert list(outside.iterdir()) == []


# --- what the local source reads -----------------------------------------------------------------


def _compile_in_subprocess(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    mtlsc_bin = Path(sys.executable).parent / "mtlsc"
    return subprocess.run([str(mtlsc_bin), "compile", "--root", str(root), "-q", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_fifo_as_ca_file_is_refused_without_blocking(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", src=source(ca="pipe.pem"))
    create_dev_pki(root / ".mtlsc/dev-pki")
    os.mkfifo(root / ".mtlsc/dev-pki/pipe.pem")

    result = _compile_in_subprocess(root)  # a blocking open would hit the timeout

    assert result.returncode == 1, result.stderr
    assert "error[NotARegularFile]" in result.stderr and "named pipe" in result.stderr


def test_a_device_as_ca_file_is_refused(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", src=source(ca="zero.pem"))
    create_dev_pki(root / ".mtlsc/dev-pki")
    (root / ".mtlsc/dev-pki/zero.pem").symlink_to("/dev/zero")

    assert "error[PathOutsideRepository]" in _compile_in_subprocess(root).stderr
    result = _compile_in_subprocess(root, "--allow-read-outside", "/dev")
    assert result.returncode == 1
    assert "error[NotARegularFile]" in result.stderr and "character device" in result.stderr


def test_an_oversized_pem_file_is_refused(tmp_path: Path) -> None:
    root = make_repo(tmp_path / "repo", src=source(ca="huge.pem"))
    create_dev_pki(root / ".mtlsc/dev-pki")
    (root / ".mtlsc/dev-pki/huge.pem").write_bytes(b"x" * (PEM_SIZE_LIMIT + 1))

    result = mtlsc(root)

    assert result.exit_code == 1
    assert "error[CertificateFileTooLarge]" in result.output
