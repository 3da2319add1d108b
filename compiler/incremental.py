"""Layer and resolve every gateway on every cluster, re-using the previous compile's results
for the gateways whose inputs did not change.

`place` + `resolve` (+ naming the overrides behind a problem) are pure functions of the intent
document, of the overrides naming it, of the ClusterTarget and of the cluster's Gateway API
capabilities; each document is a function of its file's name and content. So the resolved
gateway and the diagnostics of one (intent x cluster) are keyed by

- the input digest: the digests of the intent's file and of every file holding an override
  that names it, with the intent's key and the overrides' names (`input_digest`);
- the canonical form of the `ClusterTarget` and of the capabilities;
- mtlsc's code (`cache.code_salt`, in the record's own key).

The record (`.mtlsc/cache/resolve-record/`) is one entry holding this run's results: a pool of
distinct resolved gateways in plain JSON (`model_codec`; a gateway is often identical on
several clusters, and is then decoded once) and, per key, its gateway and diagnostics. It is
checksummed like every cache entry; a damaged, foreign or malformed record or item is
ignored and that gateway resolved afresh. Only the results of this run are written back, so
the record does not grow with history. Everything that looks across gateways (references,
grants, guardrails, duplicate names, the lock, ...) is still computed from the full model on
every run: the record only replaces the per-gateway work that produced it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import Any

from .cache import EntryStore, canonical, code_salt
from .diagnostics import Diagnostic, for_cluster
from .emit import to_yaml
from .layering import Placement, caused_by_overrides, place, targets_of
from .load import IntentDoc, OverrideDoc, Policies
from .model import ClusterModel, Gateway, Target
from .model_share import Sharing
from .precedence import Capabilities
from .resolve import SpecMemo, resolve

KIND = "resolve-record"
YAML_KIND = "yaml"
_DECODE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)


@cache
def record_key() -> str:
    return hashlib.sha256(f"{KIND}-2\0{code_salt()}".encode()).hexdigest()


def input_digest(policies: Policies, intent: IntentDoc,
                 overrides: Sequence[OverrideDoc]) -> str | None:
    """A digest of everything a resolved gateway is a function of besides its cluster (the
    ClusterTarget and its Gateway API capabilities): `place` and `resolve` are pure functions
    of the intent document and of the overrides naming it, and each document is a function of
    its file's name and content. None when a file has no digest (nothing is re-used then)."""
    files = policies.file_digests
    parts = [files.get(intent.root.loc.file), intent.key]
    for doc in overrides:
        parts += [files.get(doc.root.loc.file), doc.name]
    if any(part is None for part in parts):
        return None
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()


def cluster_salt(target: Target, caps: Capabilities) -> bytes | None:
    """What a cluster contributes to a key; None when some value has no canonical form."""
    try:
        text = repr((canonical(target), canonical(caps)))
    except TypeError:
        return None
    return hashlib.sha256(text.encode("utf-8")).digest()


class ResolveRecord:
    """The previous compile's resolved gateways and their diagnostics, by key.

    The entry is read on the first lookup, and its gateways and diagnostics are kept as JSON
    texts until one is needed: a few thousand strings instead of millions of small lists,
    which Python's cycle collector would otherwise walk again and again for the rest of the
    run."""

    def __init__(self, store: EntryStore | None) -> None:
        self.store = store
        self.loaded = False
        self.pool: list[Any] = []  # JSON texts of distinct gateways
        self.entries: dict[str, Any] = {}  # key -> [pool index, JSON text of diagnostics]
        self.decoded: dict[int, Gateway] = {}
        self.used: dict[str, tuple[Gateway, list[Diagnostic], int | None]] = {}
        self.changed = False

    def _load(self) -> None:
        self.loaded = True
        raw = self.store.get(KIND, record_key()) if self.store is not None else None
        if isinstance(raw, dict) and isinstance(raw.get("pool"), list) and \
                isinstance(raw.get("entries"), dict):
            self.pool, self.entries = raw["pool"], raw["entries"]

    def lookup(self, key: str) -> tuple[Gateway, list[Diagnostic]] | None:
        if not self.loaded:
            self._load()
        raw = self.entries.get(key)
        if raw is None:
            return None
        from .model_codec import diagnostic_from_json, gateway_from_json

        try:
            index, problems = raw
            gateway = self.decoded.get(index)
            if gateway is None:
                if type(index) is not int or index < 0:
                    raise ValueError("bad pool index")
                gateway = self.decoded[index] = gateway_from_json(json.loads(self.pool[index]))
            found = [] if problems == "[]" else \
                [diagnostic_from_json(d) for d in json.loads(problems)]
        except _DECODE_ERRORS:
            return None
        self.used[key] = (gateway, found, index)
        return gateway, found

    def add(self, key: str, gateway: Gateway, problems: list[Diagnostic]) -> None:
        self.used[key] = (gateway, problems, None)
        self.changed = True

    def save(self) -> None:
        """Write this run's results back (only when they differ from what was read)."""
        if self.store is None or not self.store.writable:
            return
        if not self.loaded:
            self._load()
        if not self.changed and set(self.used) == set(self.entries):
            return
        # here, not at the top: a compile without the record (a delta compile's child)
        # never needs the codec
        from .model_codec import diagnostic_to_json, gateway_to_json

        pool: list[str] = []
        index_of: dict[int, int] = {}  # old pool index -> new
        text_of: dict[str, int] = {}  # JSON text of a new gateway -> new index
        entries: dict[str, Any] = {}
        for key, (gateway, problems, old) in sorted(self.used.items()):
            if old is not None:
                at = index_of.setdefault(old, len(pool))
                if at == len(pool):
                    pool.append(self.pool[old])
                entries[key] = [at, self.entries[key][1]]
                continue
            text = json.dumps(gateway_to_json(gateway), separators=(",", ":"))
            at = text_of.setdefault(text, len(pool))
            if at == len(pool):
                pool.append(text)
            entries[key] = [at, json.dumps([diagnostic_to_json(d) for d in problems],
                                           separators=(",", ":"))]
        self.store.put(KIND, record_key(), {"pool": pool, "entries": entries})


def _problems(placement: Placement, caps: Capabilities) -> list[Diagnostic]:
    return resolve(placement, caps)[1]


def _place_and_resolve(intent: IntentDoc, target: Target, caps: Capabilities,
                       mine: Sequence[OverrideDoc], every: Sequence[OverrideDoc],
                       memo: SpecMemo) -> tuple[Placement, Gateway, list[Diagnostic]]:
    placement, problems = place(intent, target, mine)
    gateway, found = memo.resolve(placement, caps)
    problems += found
    if len(placement.layers) > 1 and problems:
        check = functools.partial(_problems, caps=caps)
        problems = caused_by_overrides(problems, placement, every, check)
    return placement, gateway, problems


def resolve_all(policies: Policies, targets: Sequence[Target],
                caps: Mapping[str, Capabilities], record: ResolveRecord | None,
                ) -> tuple[list[ClusterModel], list[list[str | None]], list[Diagnostic],
                           list[Placement]]:
    """Every cluster's resolved gateways, their input digests (per cluster, in gateway
    order), the diagnostics, and the placements computed in this run (gateways taken from
    the record have none)."""
    clusters: list[ClusterModel] = []
    inputs: list[list[str | None]] = []
    diagnostics: list[Diagnostic] = []
    placements: list[Placement] = []
    intents = sorted(policies.intents, key=lambda i: i.key)
    # Indexes: which targets each intent goes to, which overrides name each intent (`place`
    # only ever looks at the overrides of its own intent).
    placed = [{t.name for t in targets_of(intent, targets)} for intent in intents]
    overrides: dict[str, list[OverrideDoc]] = {}
    for doc in policies.overrides:
        overrides.setdefault(doc.gateway_key, []).append(doc)
    digests = [input_digest(policies, intent, overrides.get(intent.key, []))
               for intent in intents]
    share = Sharing()  # one object for a gateway that resolves alike on several clusters
    memo = SpecMemo()  # an intent without overrides: its spec resolved once for all clusters
    for target in targets:
        gateways: list[Gateway] = []
        keys: list[str | None] = []
        salt = cluster_salt(target, caps[target.name]) if record is not None else None
        for intent, names, digest in zip(intents, placed, digests, strict=True):
            if target.name not in names:
                continue
            keys.append(digest)
            key = hashlib.sha256(salt + digest.encode("ascii")).hexdigest() \
                if salt is not None and digest is not None else None
            found = record.lookup(key) if record is not None and key is not None else None
            if found is not None:
                gateway, problems = found
            else:
                placement, gateway, problems = _place_and_resolve(
                    intent, target, caps[target.name], overrides.get(intent.key, []),
                    policies.overrides, memo)
                gateway = share(gateway)
                placements.append(placement)
                if record is not None and key is not None:
                    record.add(key, gateway, problems)
            diagnostics += for_cluster(problems, target.name)
            gateways.append(gateway)
        clusters.append(ClusterModel(target, tuple(gateways)))
        inputs.append(keys)
    return clusters, inputs, diagnostics, placements


def yaml_memo(cache: EntryStore | None) -> Callable[[Any], bytes]:
    """`to_yaml` through the cache, for large documents joined from every gateway (a
    cluster's kustomization): for values of JSON types (dict, list, str, int, bool, None)
    the bytes are a pure function of the value's JSON text."""
    if cache is None:
        return to_yaml

    def emit(value: Any) -> bytes:
        text = json.dumps(value, ensure_ascii=False, check_circular=False)
        key = hashlib.sha256(f"{code_salt()}\0{text}".encode()).hexdigest()
        raw = cache.get(YAML_KIND, key)
        if isinstance(raw, str):
            return raw.encode("utf-8")
        data = to_yaml(value)
        cache.put(YAML_KIND, key, data.decode("utf-8"))
        return data

    return emit
