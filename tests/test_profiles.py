"""The shipped implementation profiles: complete, sourced, and read the way the checks need."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from compiler.profiles import (
    FACTS,
    NAMES,
    all_profiles,
    load_profile,
    parse_profile,
    version_tuple,
)

CORE = ("perPortWithoutValidation", "unresolvedCARef", "listenerProtocols", "maxCARefs",
        "caRefKinds", "insecureFallback", "restrictions")


@pytest.mark.parametrize("name", NAMES)
def test_every_profile_has_every_core_fact_with_a_public_source(name: str) -> None:
    profile = load_profile(name)
    assert profile is not None and profile.name == name
    for fact_name in CORE:
        fact = profile.fact(fact_name)
        assert fact is not None, f"{name}: {fact_name} missing"
        if name == "static-envoy":
            assert fact.source.repo == "mtlsc"
            continue
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", fact.source.repo)
        assert re.fullmatch(r"[0-9a-f]{40}", fact.source.commit), fact.source


def test_unknown_names_have_no_profile() -> None:
    assert load_profile("other") is None and load_profile("traefik") is None
    assert [p.name for p in all_profiles()] == list(NAMES)


def test_an_unconfirmed_fact_reads_as_unknown() -> None:
    kgateway = load_profile("kgateway")
    assert kgateway is not None
    fact = kgateway.fact("unresolvedCARef")
    assert fact is not None and not fact.confirmed
    assert kgateway.value("unresolvedCARef") is None
    assert kgateway.value("restrictions") == "tls-options"


@pytest.mark.parametrize(("version", "expected"), [
    ("1.30.3", "unsupported"), ("1.29", "unsupported"), ("1.31.0", "supported"),
    ("1.31.0-alpha.2", "supported"), ("v1.32", "supported"), (None, "supported")])
def test_istio_fallback_support_depends_on_the_line(version: str | None, expected: str) -> None:
    istio = load_profile("istio")
    assert istio is not None and istio.versioned("insecureFallback")
    assert istio.value("insecureFallback", version) == expected
    assert istio.value("maxCARefs") == 1


def test_version_tuples_compare_numerically() -> None:
    assert version_tuple("1.9.0") is not None and version_tuple("1.10") is not None
    assert version_tuple("1.9.0") < version_tuple("1.10")  # type: ignore[operator]
    assert version_tuple("garbage") is None


def test_a_profile_with_an_unknown_fact_is_refused() -> None:
    data = {"name": "x", "title": "x", "appliesTo": "x",
            "sources": {"s": {"repo": "a/b", "path": "p", "commit": "c"}},
            "facts": {"restrictionz": {"value": "none", "source": "s"}}}
    with pytest.raises(ValueError, match="restrictionz"):
        parse_profile(data)
    assert set(CORE) <= set(FACTS)


def test_profiles_are_package_data() -> None:
    """Every profile file is matched by the package-data glob of an installed package."""
    repo = Path(__file__).resolve().parent.parent
    config = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    assert "compiler.profiles" in config["setuptools"]["packages"]
    globs = config["setuptools"]["package-data"]["compiler.profiles"]
    shipped = {p.name for g in globs for p in (repo / "compiler" / "profiles").glob(g)}
    assert {f"{n}.yaml" for n in NAMES} <= shipped


def test_every_shipped_profile_reads_the_same_with_libyaml_as_with_ruamel() -> None:
    """`load_profile` parses with libyaml's C parser (speed): YAML 1.1 and 1.2 differ on
    scalars such as `yes` or `0777`, so every shipped profile must read alike in both."""
    from importlib import resources

    import yaml
    from ruamel.yaml import YAML

    from compiler.profiles import NAMES

    for name in NAMES:
        text = resources.files("compiler.profiles").joinpath(f"{name}.yaml").read_text(
            encoding="utf-8")
        assert yaml.load(text, Loader=yaml.CSafeLoader) == YAML(typ="safe").load(text), name
