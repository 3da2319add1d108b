"""The run record's parts that need no process: what the key covers, and the data round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler import lock, pki, run_inputs, run_materials, run_record
from compiler.diagnostics import Diagnostic, Location, Related, Severity
from compiler.policy_files import digests_of, read_policy_files
from compiler.secrets.vault_config import ExternalSecrets, VaultAuth, VaultRef, VaultSourceConfig


def test_the_light_copies_match_the_compiler() -> None:
    """Names the lookup keeps apart so as not to import the compiler must agree with it."""
    assert run_inputs.LOCK_FILE == lock.LOCK_FILE
    assert run_materials.DEV_PKI_MARKER == pki.CA_CERT


def _settings(root: Path, **changes: object) -> run_inputs.Settings:
    base: dict[str, object] = {"root": root, "policies": root / "policies",
                               "overlays": "overlays", "strict": False, "clusters": ()}
    return run_inputs.Settings(**{**base, **changes})  # type: ignore[arg-type]


def test_the_key_covers_every_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "a.yaml").write_text("kind: x\n")
    texts = digests_of(read_policy_files(root / "policies", root))
    key = run_inputs.run_key(_settings(root), texts, None)
    assert run_inputs.run_key(_settings(root), texts, None) == key
    variants = [
        run_inputs.run_key(_settings(root, strict=True), texts, None),
        run_inputs.run_key(_settings(root, clusters=("a",)), texts, None),
        run_inputs.run_key(_settings(root, overlays="out"), texts, None),
        run_inputs.run_key(_settings(root, read_outside=(tmp_path,)), texts, None),
        run_inputs.run_key(_settings(root), texts, b""),
        run_inputs.run_key(_settings(root), texts, b"version: 1\n"),
    ]
    (root / "policies" / "a.yaml").write_text("kind: y\n")
    variants.append(run_inputs.run_key(_settings(root), digests_of(
        read_policy_files(root / "policies", root)), None))
    (root / "schemas").mkdir()
    (root / "schemas" / "extra.json").write_text("{}")
    variants.append(run_inputs.run_key(_settings(root), texts, None))
    (root / "schemas" / "extra.json").write_text("[]")  # same name and size, new content
    variants.append(run_inputs.run_key(_settings(root), texts, None))
    monkeypatch.setenv("VAULT_ADDR", "https://vault.example:8200")
    variants.append(run_inputs.run_key(_settings(root), texts, None))
    assert len({key, *variants}) == len(variants) + 1


def test_a_vault_configuration_round_trips() -> None:
    ref = VaultRef("kv2", "secret", "gw/ca", 3, "ca.crt", location=Location("p.yaml", 4, 9))
    config = VaultSourceConfig(
        "vault", "https://vault:8200", None, "ca.pem", VaultAuth("approle", "ar", role_id="r"),
        8, 30.0, {"https-cert": VaultRef("pki", "pki", "default", chain=True)}, {"ca": ref},
        ExternalSecrets("store"), Location("p.yaml", 1, 1))
    data = run_materials.to_json(config)
    assert run_materials.from_json(data) == config


locations = st.builds(Location, st.text(max_size=8), st.integers(1, 999), st.integers(1, 99))
diagnostics = st.builds(
    Diagnostic, st.text(min_size=1, max_size=12), st.sampled_from(list(Severity)),
    st.text(max_size=40), st.none() | locations, st.none() | st.text(max_size=20), st.booleans(),
    st.lists(st.text(max_size=6), max_size=3).map(tuple),
    st.lists(st.builds(Related, locations, st.text(max_size=10)), max_size=2).map(tuple))


@given(diagnostics)
def test_diagnostics_round_trip_with_every_field(d: Diagnostic) -> None:
    assert run_record.diagnostic_from_json(run_record.diagnostic_to_json(d)) == d


def test_the_inline_stat_key_is_the_manifests(tmp_path: Path) -> None:
    """`run_disk.unit_same` spells `manifest.stat_key` out for speed."""
    import os

    from compiler import manifest

    path = tmp_path / "f"
    path.write_text("x")
    st = os.lstat(path)
    assert manifest.stat_key(st) == (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
                                     st.st_ctime_ns)


def test_the_code_identity_names_the_libraries_installed() -> None:
    """The run key's view of the code: stable while nothing changes, and the installed
    distributions of the libraries whose messages reach diagnostics, by name and version."""
    from importlib.metadata import version

    assert run_inputs.code_identity() == run_inputs.code_identity()
    for name in ("jsonschema", "cryptography"):
        assert f"{name}-{version(name)}.dist-info:" in run_inputs.distribution(name)
    assert run_inputs.distribution("no-such-library-here") == "absent"


def test_links_in_the_schemas_are_followed_and_never_fail_the_key(tmp_path: Path) -> None:
    """The repository's schemas/ may hold links: a dangling one or a loop only makes another
    key (the full run reports what it cannot read), and a schema reached through a linked
    directory is keyed by its content's identity."""
    root = tmp_path / "repo"
    (root / "policies").mkdir(parents=True)
    (root / "policies" / "a.yaml").write_text("kind: x\n")
    elsewhere = tmp_path / "crds"
    elsewhere.mkdir()
    (elsewhere / "gateway.json").write_text("{}")
    (root / "schemas").mkdir()
    (root / "schemas" / "linked").symlink_to(elsewhere)
    texts = digests_of(read_policy_files(root / "policies", root))
    before = run_inputs.run_key(_settings(root), texts, None)
    (elsewhere / "gateway.json").write_text("[]")  # changed behind the link
    changed = run_inputs.run_key(_settings(root), texts, None)
    (root / "schemas" / "dangling.json").symlink_to(tmp_path / "missing.json")
    (root / "schemas" / "loop").symlink_to(root / "schemas")
    odd = run_inputs.run_key(_settings(root), texts, None)
    assert len({before, changed, odd}) == 3
    assert run_inputs.run_key(_settings(root), texts, None) == odd


def test_prune_keeps_the_newest_records_and_no_empty_key_directory(tmp_path: Path) -> None:
    """Records older than the newest KEEP go, and so do the key directories they leave empty
    (and empty ones left by older mtlsc versions): every delta compile walks them."""
    import os

    kind = tmp_path / "run"
    keys = [f"{i:02x}" + "0" * 62 for i in range(run_record.KEEP + 4)]
    for age, key in enumerate(keys):
        entry = kind / key[:2] / key
        entry.parent.mkdir(parents=True)
        entry.write_text("x")
        os.utime(entry, ns=(age * 10**9, age * 10**9))  # the last key is the newest
    (kind / "ff").mkdir()  # empty
    (kind / "fe").mkdir()
    (kind / "fe" / ".tmp-1").write_text("a writer's temporary file")
    run_record.prune(kind)
    assert sorted(p.name for p in kind.glob("*/*") if not p.name.startswith(".")) == \
        sorted(keys[-run_record.KEEP:])
    assert sorted(p.name for p in kind.iterdir()) == \
        sorted([k[:2] for k in keys[-run_record.KEEP:]] + ["fe"])
