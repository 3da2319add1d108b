"""Render, validate and emit one cluster's overlay, one gateway at a time.

The work for one (resolved gateway x cluster) is a `Unit`: the gateway's objects already
validated and serialized, its Envoy config, and the self-check verdict. A unit depends only on
the gateway, the cluster's target, the CA bundles and the schemas, so units can be computed in
any order, in other processes, or read back from the cache (`compiler.cache`). `assemble` then
joins the units of one cluster exactly as one pass over all gateways would: identical objects
emitted by several gateways collapse (the first one wins), ReferenceGrants unite, anything else
that collides is an `ObjectConflict`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .consistency import differences
from .diagnostics import Diagnostic, Location, Severity, error
from .emit import to_yaml, to_yaml_joining, to_yaml_reusing
from .emit_memo import EmitMemo, Emitted, bundles_key
from .k8s.validate import SchemaStore, validate_object
from .manifest import Written
from .model import Gateway, Target
from .render.client_traffic_policy import (
    CTP_KIND,
    policy_differences,
    render_client_traffic_policies,
)
from .render.envoy import ca_files, envoy_file, envoy_node, render_envoy
from .render.gateway_api import ObjPath, Rendered, render_gateway_objects

Identity = tuple[str, str, str]
Content = bytes | Written  # Written: already in the staging directory (`unit_files`)
GRANT = "ReferenceGrant"
GRANT_MAX_TO = 16  # spec.to maxItems of ReferenceGrant (v1beta1 and v1, Gateway API 1.4-1.6)
# Kinds whose CRDs mtlsc does not ship: their shape is fixed by the renderer and covered by
# golden tests (docs/vault.md).
UNVALIDATED_KINDS = frozenset({"ExternalSecret"})


@dataclass(frozen=True, slots=True)
class Piece:
    """One emitted object of one gateway, validated and serialized."""

    identity: Identity
    digest: str  # SHA-256 of the emitted bytes: equal digests mean equal objects
    file: str  # relative to the cluster's outputDir
    data: Content
    problems: tuple[Diagnostic, ...]
    where: Location | None  # where the object comes from (for ObjectConflict)
    rendered: Rendered | None  # kept for ReferenceGrants only: they merge


@dataclass(frozen=True, slots=True)
class Unit:
    """One gateway rendered for one cluster: its emitted objects, its Envoy config and the
    self-check's problems."""

    pieces: tuple[Piece, ...]
    envoy: tuple[str, Content] | None  # (file relative to outputDir, content)
    problems: tuple[Diagnostic, ...]  # the Gateway/Envoy self-check


def file_name(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{obj['kind'].lower()}-{meta['name']}.yaml"


def _emit(obj: Mapping[str, Any]) -> Emitted:
    data = to_yaml(obj)
    digest = hashlib.sha256(data)
    return data, digest.hexdigest(), digest.digest()


def piece(item: Rendered, target: Target, store: SchemaStore,
          emitted: Emitted | None = None) -> Piece:
    """`emitted`: what `item.obj` emits to, when known (`emit_memo`)."""
    if item.identity[0] == GRANT:  # validated and emitted once merged, in `assemble`
        return Piece(item.identity, "", "", b"", (), item.locate(()), item)
    # The emitted bytes are a function of the object (keys in canonical order), and different
    # objects give different bytes: their digest tells equal objects apart, and it is the
    # digest the write manifest records.
    data, hexdigest, raw = emitted or _emit(item.obj)
    return Piece(item.identity, hexdigest, file_name(item.obj), data,
                 tuple(validate(item, target, store, raw)), item.locate(()), None)


def _emitted_objects(rendered: Sequence[Rendered], gw: Gateway, inputs: Hashable,
                     memo: EmitMemo | None) -> Sequence[Emitted | None]:
    """What each rendered object emits to (None for ReferenceGrants), through the memo."""
    identities = tuple(r.identity for r in rendered)
    found = memo.get("objects", gw, inputs) if memo is not None else None
    if found is not None and found[0] == identities:
        return found[1]  # type: ignore[no-any-return]
    out = tuple(None if r.identity[0] == GRANT else _emit(r.obj) for r in rendered)
    if memo is not None:
        memo.put("objects", gw, inputs, (identities, out),
                 sum(len(e[0]) for e in out if e is not None))
    return out


def render_unit(gw: Gateway, target: Target, ca_pems: Mapping[str, bytes],
                store: SchemaStore, *, envoy: bool, grant_version: str = "v1beta1",
                memo: EmitMemo | None = None) -> Unit:
    """`memo`: emitted text kept from other clusters' units of the same gateway object."""
    rendered = render_gateway_objects(gw, ca_pems, grant_version) + \
        render_client_traffic_policies(gw)
    bundles = bundles_key(ca_pems) if memo is not None else ()
    # The ReferenceGrant version changes nothing but the grants (emitted in `assemble`).
    emitted = _emitted_objects(rendered, gw, bundles, memo)
    pieces = tuple(piece(r, target, store, e) for r, e in zip(rendered, emitted, strict=True))
    checked = tuple(policy_consistency(rendered[0], rendered))
    if not (envoy and target.envoy.enabled):
        return Unit(pieces, None, checked)
    inputs = (target.envoy, bundles)
    known = memo.get("envoy", gw, inputs) if memo is not None else None
    if known is not None:  # the static resources and their self-check, as on another cluster
        block, problems = known
        data = to_yaml_joining(envoy_node(gw, target.name, target.envoy), "static_resources",
                               block)
        return Unit(pieces, (envoy_file(gw), data), (*checked, *problems))
    bootstrap = render_envoy(gw, target.name, ca_pems, target.envoy)
    # Within one cluster a CA ConfigMap's content is a function of its name (one source), so
    # the gateway's own ConfigMaps are the ones the merged overlay holds.
    configmaps = {(r.identity[1], r.identity[2]): r.obj["data"]["ca.crt"].encode("ascii")
                  for r in rendered if r.identity[0] == "ConfigMap"}
    # The gateway renders its own ListenerSets (another gateway emitting one of the same name
    # is an ObjectConflict).
    sets = {r.identity[1:]: r.obj for r in rendered if r.identity[0] == "ListenerSet"}
    attached = [sets[(ls.namespace, ls.name)] for ls in gw.listener_sets
                if (ls.namespace, ls.name) in sets]
    problems = tuple(consistency(rendered[0], bootstrap, configmaps,
                                 ca_files(gw, ca_pems, target.envoy), attached))
    if memo is None:
        return Unit(pieces, (envoy_file(gw), to_yaml(bootstrap)), (*checked, *problems))
    data, block = to_yaml_reusing(bootstrap, "static_resources", None)
    memo.put("envoy", gw, inputs, (block, problems), len(block))
    return Unit(pieces, (envoy_file(gw), data), (*checked, *problems))


def validate(item: Rendered, target: Target, store: SchemaStore,
             emitted: bytes | None = None) -> list[Diagnostic]:
    """`emitted`: the digest of the object's emitted bytes, when known (the memo's key)."""
    kind, ns, name = item.identity
    if kind in UNVALIDATED_KINDS:
        return []
    schema = store.get(target.gateway_api_version, target.channel, item.obj["apiVersion"], kind)
    if schema is None:
        return [error("UnsupportedGatewayAPIVersion", f"no schema for {item.obj['apiVersion']} "
                      f"{kind} in Gateway API {target.gateway_api_version}/{target.channel}",
                      item.locate(()), "import the cluster's CRDs with `mtlsc schemas import`")]
    out = []
    for problem in validate_object(schema, item.obj, emitted):
        where = ".".join(str(p) for p in problem.path) or "(object)"
        out.append(error(problem.code, f"emitted {kind} {ns}/{name} for cluster {target.name!r} "
                         f"is rejected by the Gateway API {target.gateway_api_version}/"
                         f"{target.channel} schema at {where}: {problem.message}",
                         item.locate(problem.path),
                         "fix the intent line shown; the API server would refuse this object"))
    return out


def consistency(gateway: Rendered, bootstrap: dict[str, Any],
                configmaps: dict[tuple[str, str], bytes],
                files: dict[str, bytes],
                listener_sets: Sequence[dict[str, Any]] = ()) -> list[Diagnostic]:
    """Self-check: the emitted Gateway and Envoy config must enforce the same validation."""
    return [error("InternalInconsistency", f"mtlsc bug: Gateway and Envoy config of "
                  f"{gateway.identity[1]}/{gateway.identity[2]} disagree: {problem}",
                  gateway.locate(()), "please report this with the intent file")
            for problem in differences(gateway.obj, bootstrap, configmaps, files,
                                       listener_sets)]


def policy_consistency(gateway: Rendered, rendered: Sequence[Rendered]) -> list[Diagnostic]:
    """Self-check: an Envoy Gateway ClientTrafficPolicy repeats the Gateway's validation."""
    return [error("InternalInconsistency", f"mtlsc bug: Gateway {gateway.identity[1]}/"
                  f"{gateway.identity[2]} and its ClientTrafficPolicy disagree: {problem}",
                  gateway.locate(()), "please report this with the intent file")
            for r in rendered if r.identity[0] == CTP_KIND
            for problem in policy_differences(gateway.obj, r.obj)]


def merge_grants(grants: Sequence[Rendered]) -> list[Rendered]:
    """ReferenceGrants with one identity unite their `to` lists; a united grant with more
    `to` entries than Gateway API allows is split (`split_grant`)."""
    merged: dict[Identity, Rendered] = {}
    for item in grants:
        first = merged.get(item.identity)
        if first is None:
            merged[item.identity] = Rendered(json.loads(json.dumps(item.obj)), item.sources)
        elif first.obj != item.obj:
            to = first.obj["spec"]["to"] + item.obj["spec"]["to"]
            first.obj["spec"]["to"] = sorted({tuple(sorted(t.items())): t for t in to}.values(),
                                             key=lambda t: (t["kind"], t["name"]))
    out = [part for k in sorted(merged) for part in split_grant(merged[k])]
    return sorted(out, key=lambda r: r.identity)


def split_grant(grant: Rendered) -> list[Rendered]:
    """A ReferenceGrant lists at most `GRANT_MAX_TO` targets (`spec.to` maxItems in every
    Gateway API version). A longer one becomes several grants over consecutive runs of the
    sorted `to` list: the first keeps its name, the k-th (k >= 2) is named `<name>.<k>`. A dot
    cannot occur in a namespace, so these names never meet another grant's name."""
    to = grant.obj["spec"]["to"]
    if len(to) <= GRANT_MAX_TO:
        return [grant]
    parts = []
    for k, start in enumerate(range(0, len(to), GRANT_MAX_TO), start=1):
        obj = json.loads(json.dumps(grant.obj))
        obj["spec"]["to"] = obj["spec"]["to"][start:start + GRANT_MAX_TO]
        if k > 1:
            obj["metadata"]["name"] = f"{obj['metadata']['name']}.{k}"
        parts.append(Rendered(obj, grant.sources))
    return parts


def finish_grant(grant: Rendered, target: Target, store: SchemaStore) -> Piece:
    """A merged ReferenceGrant, validated and serialized."""
    return Piece(grant.identity, "", file_name(grant.obj), to_yaml(grant.obj),
                 tuple(validate(grant, target, store)), None, None)


def assemble(target: Target, units: Sequence[Unit], extra: Sequence[Rendered],
             store: SchemaStore, finish: Callable[[Rendered], Piece] | None = None,
             ) -> tuple[dict[str, Content], list[Diagnostic], list[tuple[str, Content]]]:
    """Join one cluster's units (in gateway order) and extra objects: files by path
    relative to outputDir, diagnostics, and the Envoy configs in gateway order. `finish`
    validates and serializes a merged ReferenceGrant (default: `finish_grant`). Of identical
    objects the first one wins, but a copy a worker already wrote is preferred (same bytes)."""
    merged: dict[Identity, Piece] = {}
    grants: list[Rendered] = []
    problems: list[Diagnostic] = []
    pieces = [p for unit in units for p in unit.pieces] + [piece(r, target, store) for r in extra]
    for item in pieces:
        if item.rendered is not None:
            grants.append(item.rendered)
            continue
        first = merged.setdefault(item.identity, item)
        if first is item:
            continue
        if first.digest == item.digest:
            if _written_first(item, first):
                merged[item.identity] = replace(first, data=item.data)
            continue
        kind, ns, name = item.identity
        problems.append(error("ObjectConflict", f"two gateways emit different {kind} "
                              f"{ns}/{name} (the other comes from {first.where})",
                              item.where, "give one of them another name"))
    for grant in merge_grants(grants):
        merged[grant.identity] = finish(grant) if finish is not None else \
            finish_grant(grant, target, store)
    files: dict[str, Content] = {}
    for key in sorted(merged):
        files[merged[key].file] = merged[key].data
        problems += merged[key].problems
    envoys = []
    for unit in units:
        problems += unit.problems
        if unit.envoy is not None:
            envoys.append(unit.envoy)
    return files, problems, envoys


def _written_first(item: Piece, first: Piece) -> bool:
    """Whether `item`'s copy of an identical object is the better one to keep: it is on disk
    and `first`'s is not, or only `item` knows the file's identity."""
    if not isinstance(item.data, Written):
        return False
    return not isinstance(first.data, Written) or (first.data.key is None and
                                                   item.data.key is not None)


# ------------------------------------------------- transport form (worker -> main process)

Wire = tuple[Any, ...]


def unit_to_wire(unit: Unit) -> Wire:
    """The unit as tuples, which pickle in C code (slotted dataclasses do not)."""
    return (tuple((p.identity, p.digest, p.file, p.data, p.problems,
                   None if p.where is None else (p.where.file, p.where.line, p.where.col),
                   p.rendered) for p in unit.pieces), unit.envoy, unit.problems)


def unit_from_wire(raw: Wire) -> Unit:
    pieces, envoy, problems = raw
    return Unit(tuple(Piece(identity, digest, file, data, found,
                            None if where is None else Location(*where), rendered)
                      for identity, digest, file, data, found, where, rendered in pieces),
                envoy, problems)


# ------------------------------------------------------------------ cache form (plain JSON)


def _location(loc: Location | None) -> list[Any] | None:
    return None if loc is None else [loc.file, loc.line, loc.col]


def _diagnostic(d: Diagnostic) -> list[Any]:
    return [d.code, d.severity.value, d.message, _location(d.location), d.hint,
            d.source_failure]


def _rendered_to_json(r: Rendered | None) -> Any:
    return None if r is None else {"obj": r.obj, "sources": [
        [list(path), _location(loc)] for path, loc in r.sources.items()]}


def piece_to_json(p: Piece) -> list[Any]:
    assert isinstance(p.data, bytes), "pieces are cached before they are written"
    return [list(p.identity), p.digest, p.file, p.data.decode("utf-8"),
            [_diagnostic(d) for d in p.problems], _location(p.where),
            _rendered_to_json(p.rendered)]


def unit_to_json(unit: Unit) -> dict[str, Any]:
    envoy = None if unit.envoy is None else unit.envoy[1]
    assert envoy is None or isinstance(envoy, bytes), "units are cached before they are written"
    return {"pieces": [piece_to_json(p) for p in unit.pieces],
            "envoy": None if unit.envoy is None or envoy is None else [unit.envoy[0],
                                                                        envoy.decode("utf-8")],
            "problems": [_diagnostic(d) for d in unit.problems]}


def _loc(raw: Any) -> Location | None:
    return None if raw is None else Location(str(raw[0]), int(raw[1]), int(raw[2]))


def _diag(raw: Any) -> Diagnostic:
    code, severity, message, loc, hint, source_failure = raw
    return Diagnostic(str(code), Severity(severity), str(message), _loc(loc),
                      None if hint is None else str(hint), bool(source_failure))


def _rendered(r: Any) -> Rendered | None:
    if r is None:
        return None
    sources: dict[ObjPath, Location] = {}
    for path, loc in r["sources"]:
        found = _loc(loc)
        if found is not None:
            sources[tuple(path)] = found
    return Rendered(dict(r["obj"]), sources)


def piece_from_json(raw: Any) -> Piece:
    """Raises (KeyError, TypeError, ValueError, ...) on any shape `piece_to_json` does not
    produce; the caller then recomputes."""
    identity, digest, file, data, problems, where, rendered = raw
    return Piece((str(identity[0]), str(identity[1]), str(identity[2])), str(digest),
                 str(file), str(data).encode("utf-8"), tuple(_diag(d) for d in problems),
                 _loc(where), _rendered(rendered))


def unit_from_json(raw: Any) -> Unit:
    """The unit of a cache payload; raises like `piece_from_json`."""
    pieces = tuple(piece_from_json(p) for p in raw["pieces"])
    envoy = raw["envoy"]
    return Unit(pieces, None if envoy is None else (str(envoy[0]), str(envoy[1]).encode()),
                tuple(_diag(d) for d in raw["problems"]))
