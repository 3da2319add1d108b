"""A cluster's kustomization for a delta compile whose edited intents emit other object files
than before (a route added or removed): the cluster's file list made anew.

A recorded compile keeps each cluster's kustomization as data, in an entry keyed by the
SHA-256 of the bytes it wrote (`save`), and the delta base names that digest. The delta
compile takes the entry and emits it again (`load`): only an entry that gives exactly those
bytes counts, so a damaged or foreign entry means the full compile, never other output. The
files the edit adds must be new to the cluster and those it removes must be no other gateway's
(`relist`); the kustomization then lists them as the full compile would (`resources` is the
sorted list of every object file; nothing else in it depends on which files a gateway emits).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..cache_store import EntryStore
from ..emit import to_yaml
from ..manifest import digest
from .compute import Miss

KIND = "kustomization"
NAME = "kustomization.yaml"


def save(store: EntryStore, found: Iterable[tuple[str, dict[str, Any]]],
         kept: Iterable[str] = ()) -> None:
    """Store these kustomizations ((digest, data) pairs) and mark the `kept` ones as used;
    twice as many entries as are in use stay (pruning drops the oldest)."""
    from ..run_record import prune

    written = dict(found)  # clusters alike share one entry
    for key, value in written.items():
        store.put(KIND, key, value)
    touched = set(kept) - set(written)
    for key in touched:
        store.touch(KIND, key)
    prune(store.directory / KIND, keep=max(2 * (len(written) + len(touched)), 6))


def load(store: EntryStore, key: str) -> dict[str, Any] | None:
    """The kustomization whose bytes have SHA-256 `key`, or None (absent, or not exactly it)."""
    value = store.get(KIND, key)
    if not isinstance(value, dict) or not isinstance(value.get("resources"), list) or \
            not all(isinstance(name, str) for name in value["resources"]):
        return None
    try:
        again = to_yaml(value)
    except (TypeError, ValueError):  # a value the emitter refuses is no recorded one
        return None
    return value if digest(again) == key else None


def relist(value: Mapping[str, Any], added: set[str], removed: set[str],
           shared: Mapping[str, Any], cluster: str) -> tuple[dict[str, Any], bytes]:
    """The kustomization with `added` object files listed and `removed` ones not, and its
    bytes; `Miss` when another gateway emits one of them."""
    resources = set(value["resources"])
    if added & resources:
        raise Miss(f"an edited intent adds an object file another gateway on {cluster} emits")
    if not removed <= resources:
        raise Miss(f"the kustomization of {cluster} does not list a file the base had")
    if any(name in shared for name in removed):
        raise Miss(f"an edited intent drops an object another gateway on {cluster} emits")
    new = {**value, "resources": sorted((resources - removed) | added)}
    return new, to_yaml(new)
