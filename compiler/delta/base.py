"""The base of the next delta compile: what the newest recorded compile saw, beside its record.

A `compile` that records its run (`run_record.save`) also stores, under the same key, one
entry of kind `delta` holding

- the text digest of every policy file it read, and each file's role (`facts.file_roles`);
- per intent and cluster the facts of its gateway (`facts.unit_facts`), each distinct value
  stored once (a gateway is usually alike on every cluster);
- per cluster its output directory, the objects several gateways emit and the digest of its
  kustomization (the kustomization itself is an entry of its own, `delta.kustomization`);
- whether the run had guardrail documents or fetch problems;

and points the repository's `delta-head` entry at that key. A delta compile reads the head,
then the record and the base it names; anything missing, damaged or foreign means the full
compile. Entries live in the cache store (self-keyed, checksummed JSON, renamed into place).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache_store import EntryStore

if TYPE_CHECKING:
    from .facts import Collector

Facts = dict[str, Any]  # `facts.Facts`

KIND = "delta"
HEAD_KIND = "delta-head"
VERSION = 3  # 2: facts in the pool are JSON texts; 3: each cluster's kustomization digest


def head_key(root: Path, policies: Path, overlays: str) -> str:
    where = f"{VERSION}\0{os.path.realpath(root)}\0{os.path.realpath(policies)}\0{overlays}"
    return hashlib.sha256(where.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(slots=True)
class Base:
    """A delta base as stored: what one recorded compile saw, or what a delta compile changed
    over the full base it derives from (`full`)."""

    record: str  # the run record's key
    texts: dict[str, str]  # policy file -> hex SHA-256 of its text
    roles: dict[str, str]
    guardrails: bool
    fetch_problems: bool
    # name -> {"dir": output dir, "shared": {file: [n, sha]}, "known": [namespaces],
    #          "kustomization": SHA-256 of its bytes}
    clusters: dict[str, dict[str, Any]]
    # Distinct facts, each as its JSON text: a delta compile decodes the few it needs
    # (`facts`), not the thousands of a fleet (decoding them all was 12 ms of every edit).
    pool: list[str]
    intents: dict[str, dict[str, int]]  # gateway key -> cluster -> pool index
    # A delta compile's base is stored as the full base it derives from (`full`) plus what
    # every delta since changed: texts and facts (as stored), small however large the fleet.
    full: str = ""  # "": this base is a full one
    patch_texts: dict[str, str] = field(default_factory=dict)
    patch_facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    patch_kustomizations: dict[str, str] = field(default_factory=dict)  # cluster -> digest

    def facts(self, key: str) -> dict[str, Facts]:
        """One intent's facts per cluster (`KeyError`, `ValueError`...: a damaged base)."""
        if key in self.patch_facts:
            return {cluster: _facts(raw) for cluster, raw in self.patch_facts[key].items()}
        return {cluster: _facts(json.loads(self.pool[at]))
                for cluster, at in self.intents[key].items()}

    def replaced(self, record: str, texts: Mapping[str, str],
                 facts: Mapping[str, Mapping[str, Facts]],
                 kustomizations: Mapping[str, str] | None = None) -> Base:
        """The base after a delta compile that changed these texts, gave these intents
        these facts and these clusters kustomizations with these digests."""
        patch_texts = {**self.patch_texts, **texts}
        patch_facts = {**self.patch_facts, **{k: dict(v) for k, v in facts.items()}}
        patch_kustomizations = {**self.patch_kustomizations, **(kustomizations or {})}
        clusters = {name: {**seen, "kustomization": kustomizations[name]}
                    if kustomizations and name in kustomizations else seen
                    for name, seen in self.clusters.items()}
        return Base(record, {**self.texts, **texts}, self.roles, self.guardrails,
                    self.fetch_problems, clusters, self.pool, self.intents,
                    self.full or self.record, patch_texts, patch_facts, patch_kustomizations)

    def to_json(self) -> dict[str, Any]:
        if self.full:
            return {"version": VERSION, "record": self.record, "full": self.full,
                    "texts": self.patch_texts, "facts": self.patch_facts,
                    "kustomizations": self.patch_kustomizations}
        return {"version": VERSION, "record": self.record, "texts": self.texts,
                "roles": self.roles, "guardrails": self.guardrails,
                "fetchProblems": self.fetch_problems, "clusters": self.clusters,
                "pool": self.pool, "intents": self.intents}


def from_json(raw: Any, store: EntryStore | None = None) -> Base | None:
    """A base as stored; a delta's base needs the `store` holding its full base."""
    try:
        if raw.get("version") != VERSION:
            return None
        if "full" in raw:
            full = from_json(store.get(KIND, str(raw["full"]))) if store is not None else None
            if full is None or full.full or full.record != raw["full"]:
                return None
            facts = {str(k): {str(c): dict(f) for c, f in v.items()}
                     for k, v in raw["facts"].items()}
            texts = {str(k): str(v) for k, v in raw["texts"].items()}
            kustomizations = {str(k): str(v) for k, v in raw["kustomizations"].items()}
            if not set(texts) <= set(full.texts) or not set(facts) <= set(full.intents) or \
                    not set(kustomizations) <= set(full.clusters):
                return None
            return full.replaced(str(raw["record"]), texts, facts, kustomizations)
        pool, intents = raw["pool"], raw["intents"]
        if not isinstance(pool, list) or not isinstance(intents, dict) or \
                not all(isinstance(text, str) for text in pool):
            return None
        return Base(str(raw["record"]), dict(raw["texts"]), dict(raw["roles"]),
                    bool(raw["guardrails"]), bool(raw["fetchProblems"]),
                    dict(raw["clusters"]), pool, intents)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return None


def _facts(raw: Any) -> Facts:
    if not isinstance(raw, dict):
        raise TypeError("facts")
    return {"files": [str(f) for f in raw["files"]], "problems": bool(raw["problems"]),
            "grants": str(raw["grants"]), "envoy": None if raw["envoy"] is None
            else str(raw["envoy"]), "ns": [str(n) for n in raw["ns"]],
            "refs": [[str(x) for x in r] for r in raw["refs"]]}


def from_collector(record: str, texts: Mapping[str, bytes], facts: Collector,
                   clusters: Mapping[str, str]) -> Base | None:
    """The base of a recorded compile; None when the collector did not see every cluster
    and its kustomization (`clusters`: compiled cluster -> output directory)."""
    if set(facts.clusters) != set(clusters) or set(facts.kustomizations) != set(clusters) \
            or not facts.roles:
        return None
    pool: list[str] = []
    index: dict[str, int] = {}
    intents: dict[str, dict[str, int]] = {}
    known: dict[str, set[str]] = {}
    for name in sorted(facts.clusters):
        for key, found in sorted(facts.clusters[name]["gateways"].items()):
            entry = {**found, "refs": [list(r) for r in found["refs"]]}
            text = json.dumps(entry, sort_keys=True, separators=(",", ":"))
            at = index.setdefault(text, len(pool))
            if at == len(pool):
                pool.append(text)
            intents.setdefault(key, {})[name] = at
            known.setdefault(name, set()).update(found["ns"])
    return Base(record, {name: digest.hex() for name, digest in texts.items()},
                dict(facts.roles), facts.guardrails, facts.fetch_problems,
                {name: {"dir": seen["dir"], "shared": seen["shared"],
                        "known": sorted(known.get(name, ())),
                        "kustomization": facts.kustomizations[name][0]}
                 for name, seen in facts.clusters.items()}, pool, intents)


def save(store: EntryStore, head: str, base: Base) -> None:
    if base.full:
        store.touch(KIND, base.full)  # pruning must keep the full base a delta builds on
    # A delta compile back to the full base's inputs: that base is exact (facts are a
    # function of the inputs), and a patch under its key would point at itself.
    if base.full != base.record:
        store.put(KIND, base.record, base.to_json())
    store.put(HEAD_KIND, head, {"version": VERSION, "record": base.record})
    from ..run_record import prune  # the newest few, as for run records

    prune(store.directory / KIND)


def load(store: EntryStore, head: str) -> Base | None:
    pointer = store.get(HEAD_KIND, head)
    if not isinstance(pointer, dict) or pointer.get("version") != VERSION or \
            not isinstance(pointer.get("record"), str):
        return None
    found = from_json(store.get(KIND, pointer["record"]), store)
    return found if found is not None and found.record == pointer["record"] else None
