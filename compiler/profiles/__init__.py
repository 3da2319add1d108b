"""Implementation profiles: what each Gateway API implementation does with spec.tls.frontend.

One YAML file per implementation ships in this package. Each fact carries the public source
it was read from and whether it was confirmed there; an unconfirmed fact is shown but never
relied on to decide that something is safe. Facts may differ by implementation version
(`versions:` entries with `since`/`before`, compared numerically on the leading dotted
numbers). docs/implementations.md is the same table, for people.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

FACTS = ("perPortWithoutValidation", "unresolvedCARef", "listenerProtocols", "maxCARefs",
         "caRefKinds", "insecureFallback", "restrictions", "listenerSetCANamespace")
NAMES = ("agentgateway", "envoy-gateway", "istio", "kgateway", "nginx-gateway-fabric",
         "static-envoy")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a profile fact was read: a file of a public repository at a commit."""

    repo: str
    path: str
    commit: str
    ref: str | None = None

    def __str__(self) -> str:
        at = f"{self.commit[:12]}" + (f" ({self.ref})" if self.ref else "")
        return f"{self.repo}:{self.path}@{at}"


@dataclass(frozen=True, slots=True)
class Fact:
    """One thing a profile states about its implementation, with its source and whether it was
    confirmed there."""

    name: str
    value: Any
    confirmed: bool
    source: Source
    note: str | None = None


@dataclass(frozen=True, slots=True)
class _Ranged:
    """A fact that holds for the implementation versions from `since` up to `before` (None: no
    bound)."""

    since: tuple[int, ...] | None
    before: tuple[int, ...] | None
    fact: Fact


@dataclass(frozen=True, slots=True)
class Profile:
    """One implementation's profile: its facts, some of them per version range."""

    name: str
    title: str
    applies_to: str
    facts: tuple[Fact, ...]
    ranged: tuple[_Ranged, ...]

    def fact(self, name: str, version: str | None = None) -> Fact | None:
        """The fact for `version` (the unversioned value when no range matches or the
        version is unknown)."""
        parsed = version_tuple(version) if version else None
        if parsed is not None:
            for entry in self.ranged:
                if entry.fact.name != name:
                    continue
                if entry.since is not None and parsed < entry.since:
                    continue
                if entry.before is not None and parsed >= entry.before:
                    continue
                return entry.fact
        return next((f for f in self.facts if f.name == name), None)

    def versioned(self, name: str) -> bool:
        return any(entry.fact.name == name for entry in self.ranged)

    def value(self, name: str, version: str | None = None) -> Any:
        """The fact's value if confirmed, else None (unknown)."""
        found = self.fact(name, version)
        return found.value if found is not None and found.confirmed else None


def version_tuple(text: str) -> tuple[int, ...] | None:
    match = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def _fact(name: str, raw: dict[str, Any], sources: dict[str, Source],
          inherited: dict[str, Any] | None = None) -> Fact:
    base = inherited or {}
    source_name = str(raw.get("source", base.get("source")))
    return Fact(name, raw.get("value", base.get("value")),
                bool(raw.get("confirmed", base.get("confirmed", False))),
                sources[source_name], raw.get("note"))


def parse_profile(data: dict[str, Any]) -> Profile:
    sources = {str(k): Source(str(v["repo"]), str(v["path"]), str(v["commit"]),
                              str(v["ref"]) if v.get("ref") is not None else None)
               for k, v in data["sources"].items()}
    facts, ranged = [], []
    for name in FACTS:
        raw = data["facts"].get(name)
        if raw is None:
            continue
        facts.append(_fact(name, raw, sources))
        for entry in raw.get("versions", ()):
            since, before = entry.get("since"), entry.get("before")
            ranged.append(_Ranged(version_tuple(str(since)) if since else None,
                                  version_tuple(str(before)) if before else None,
                                  _fact(name, entry, sources, raw)))
    unknown = set(data["facts"]) - set(FACTS)
    if unknown:
        raise ValueError(f"profile {data['name']}: unknown facts {sorted(unknown)}")
    return Profile(str(data["name"]), str(data["title"]), str(data["appliesTo"]),
                   tuple(facts), tuple(ranged))


@cache
def load_profile(name: str) -> Profile | None:
    """The shipped profile for an implementation name (None for unknown names)."""
    if name not in NAMES:
        return None
    text = resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    # libyaml's C parser (the profiles are plain YAML; tests/test_profiles.py checks that it
    # reads every shipped profile exactly as ruamel.yaml does)
    return parse_profile(yaml.load(text, Loader=yaml.CSafeLoader))


def all_profiles() -> tuple[Profile, ...]:
    found = (load_profile(name) for name in NAMES)
    return tuple(p for p in found if p is not None)
