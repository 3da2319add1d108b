"""Shared test helpers: a test PKI with broken certificates, and running a case directory."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from compiler.k8s.validate import SchemaStore
from compiler.load import read_policy_files
from compiler.pipeline import Options, Result, compile_policies, schema_roots
from compiler.pki import (
    create_dev_pki,
    derive_private_key,
    derive_serial,
    issue_certificate,
    make_ca,
)
from compiler.secrets.factory import source_factory

REPO = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases"
COMMON = CASES / "_common"
NOW = datetime(2027, 1, 1, tzinfo=UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def build_test_pki(directory: Path) -> None:
    create_dev_pki(directory)
    ca = x509.load_pem_x509_certificate((directory / "ca-cert.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((directory / "ca-key.pem").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    past = datetime(2020, 1, 1, tzinfo=UTC)
    expired, _ = make_ca("Expired CA", not_before=past, not_after=datetime(2021, 1, 1, tzinfo=UTC),
                         key=derive_private_key("tests", "expired-ca"),
                         serial=derive_serial("tests", "expired-ca"))
    soon, _ = make_ca("Short CA", not_before=past, not_after=datetime(2027, 1, 10, tzinfo=UTC),
                      key=derive_private_key("tests", "short-ca"),
                      serial=derive_serial("tests", "short-ca"))
    leaf, _ = issue_certificate(ca, ca_key, common_name="leaf", dns_names=["leaf.example.com"],
                                server=True, not_before=past, not_after=datetime(2030, 1, 1,
                                                                                  tzinfo=UTC),
                                key=derive_private_key("tests", "leaf"),
                                serial=derive_serial("tests", "leaf"))
    other = derive_private_key("tests", "other-key")
    files = {
        "expired-ca.pem": _pem(expired),
        "short-lived-ca.pem": _pem(soon),
        "not-a-ca.pem": _pem(leaf),
        "garbage.pem": b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
                       b"-----END CERTIFICATE-----\n",
        "leaf-cert.pem": _pem(leaf),
        "other-key.pem": _key_pem(other),
        "expired-server-cert.pem": _pem(issue_certificate(
            ca, ca_key, common_name="old", dns_names=["example.com"], server=True,
            not_before=past, not_after=datetime(2021, 1, 1, tzinfo=UTC),
            key=other, serial=derive_serial("tests", "old"))[0]),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)


def prepare_case(case: Path, workdir: Path, pki: Path) -> Path:
    """Copy a case (and the shared documents) into `workdir` with the test PKI at ./pki."""
    root = workdir / case.name
    shutil.copytree(case, root / "policies", ignore=shutil.ignore_patterns(
        "expected", "expect.yaml", FIXTURE), symlinks=True)
    shutil.copytree(COMMON, root / "policies" / "_common")
    shutil.copytree(pki, root / "pki")
    if (case / FIXTURE).is_file():
        make_fixture(json.loads((case / FIXTURE).read_text()), root / "policies")
    return root


FIXTURE = "fixture.json"


def make_fixture(spec: dict[str, Any], policies: Path) -> None:
    """Create what Git cannot store, from a case's declarative `fixture.json` (paths relative
    to the case's policies directory):

    - `"fifo": [name, ...]`, `"socket": [name, ...]`, `"device": [name, ...]` (a character
      device like /dev/null; needs root, as CI and this workplace run),
    - `"symlink": {name: target}` (target verbatim: absolute, or relative to the link),
    - `"unreadable": [name, ...]` (mode 000; only unreadable when not running as root),
    - `"generate": {name: {"head": text, "fill": text, "bytes": n}}` (a file of `head`
      followed by `fill` repeated up to n bytes: 50 MB inputs are not committed).
    """
    names = [n for key in ("fifo", "socket", "device", "symlink") for n in spec.get(key, [])]
    for name in names:
        (policies / name).parent.mkdir(parents=True, exist_ok=True)
    for name in spec.get("fifo", []):
        os.mkfifo(policies / name)
    for name in spec.get("socket", []):
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(policies / name))
        sock.close()
    for name in spec.get("device", []):
        os.mknod(policies / name, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    for name, target in spec.get("symlink", {}).items():
        os.symlink(target, policies / name)
    for name in spec.get("unreadable", []):
        (policies / name).chmod(0)
    for name, gen in spec.get("generate", {}).items():
        head = gen.get("head", "").encode()
        fill = gen["fill"].encode()
        count = max(0, gen["bytes"] - len(head)) // len(fill)
        (policies / name).write_bytes(head + fill * count)


def compile_root(root: Path, *, strict: bool = False, lean: bool = False) -> Result:
    texts = read_policy_files(root / "policies", root)
    store = SchemaStore(schema_roots(REPO))
    return compile_policies(texts, source_factory(root), store,
                            Options(strict=strict, now=NOW, lean=lean))


def gateway_api_crds() -> Path:
    """The Gateway API reference CRDs: MTLSC_GATEWAY_API_CRDS, else shared/ beside the checkout
    (where CI lays it), else the workplace's /work/shared."""
    override = os.environ.get("MTLSC_GATEWAY_API_CRDS")
    if override:
        return Path(override)
    candidates = [REPO.parent / "shared", Path("/work/shared")]
    found = next((c for c in candidates if c.is_dir()), candidates[0])
    return found / "reference" / "gateway-api" / "crds"
