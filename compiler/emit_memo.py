"""Within one process, the bytes that a gateway's objects and Envoy config emit to, kept for
the next cluster that renders the same gateway alike.

A gateway that resolves alike on several clusters is one object in the model (`model_share`).
What `render_gateway_objects` and `render_client_traffic_policies` make of it is a function of
that object and the cluster's CA bundles (the ReferenceGrant version the cluster serves changes
only the grants, which are emitted once merged, in `assemble`); the `static_resources` of its
Envoy config, of the object, the CA bundles and the cluster's Envoy settings. Equal values
emit to equal bytes, so a process that renders the gateway for another cluster takes the
bytes (and their digests) emitted before instead of emitting again: emitting is about a third
of the work of a unit. The objects are still rendered (their identities must match what was
kept, or the entry is not used) and validated against the cluster's own schemas. Of the Envoy
config, only the entries that name the cluster or come from its settings (`node`, `admin`:
`render.envoy.envoy_node`) are rendered and emitted again; the static resources are taken
with the verdict of the Gateway/Envoy self-check (`render_units.consistency`), a function of
the same inputs.

Entries are keyed by the gateway object itself (held, so its `id` stays its own) and hold
emitted text only, at most `LIMIT` bytes of it, so memory stays bounded in a fleet of any size
(a worker meets a gateway again one cluster later; in a fleet too large for the memo, the
gateways it holds are re-used on every cluster, the others emitted each time).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from .model import Gateway

LIMIT = 32 << 20  # bytes of emitted text kept per process (a 2,000 x 5 worker: about 19 MB)

Emitted = tuple[bytes, str, bytes]  # (emitted bytes, SHA-256 hex digest, raw digest)


class EmitMemo:
    """Emitted text by (what it is, gateway object, the cluster's inputs to it)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self.size = 0
        self.hits = 0
        self.entries: dict[tuple[Hashable, ...], tuple[Gateway, Any, int]] = {}

    def get(self, what: str, gw: Gateway, inputs: Hashable) -> Any:
        found = self.entries.get((what, id(gw), inputs))
        if found is None or found[0] is not gw:
            return None
        self.hits += 1
        return found[1]

    def put(self, what: str, gw: Gateway, inputs: Hashable, value: Any, size: int) -> None:
        """Keep `value` unless the memo is full. Nothing is dropped for it: the clusters
        render their gateways in the same order, so a full memo that dropped its oldest
        entries would drop each just before it is needed again, and one that keeps them
        serves them on every later cluster."""
        key = (what, id(gw), inputs)
        if key in self.entries or self.size + size > self.limit:
            return
        self.entries[key] = (gw, value, size)
        self.size += size


def bundles_key(ca_pems: Mapping[str, bytes]) -> tuple[tuple[str, bytes], ...]:
    """The CA bundles as a key (equal bundles of different clusters are equal keys)."""
    return tuple(sorted(ca_pems.items()))
