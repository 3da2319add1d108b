"""What a delta compile checks and takes from its sub-compile (used by `compute`, in the
child): the edited intents' new facts against the base's, the namespaces each cluster
knows, the changed files. Pure."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .compute import Miss

if TYPE_CHECKING:
    from .compute import Job
    from .subcompile import Sub

COMPARED = ("envoy", "grants", "ns", "refs")  # and the object files (`Moved`)

# Per cluster, the object files the edited intents emit now and did not before (added) and
# those they emitted before and do not now (removed): the kustomization lists them anew.
Moved = dict[str, tuple[set[str], set[str]]]


def lock_of(lock: bytes | None) -> dict[Any, Any]:
    """The lock's pins, as the full compile reads them (`cli.common.read_lock`)."""
    if lock is None:
        return {}
    from ..lock import LockError, parse_lock

    try:
        return parse_lock(lock.decode("utf-8"))
    except (UnicodeDecodeError, LockError):
        raise Miss("the lock cannot be read") from None


def display(path: Path, root: Path) -> str:
    """`cli.common.display`: the policies directory as the full compile names it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def known_namespaces(clusters: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    try:
        return {name: {str(ns) for ns in seen["known"]} for name, seen in clusters.items()}
    except (KeyError, TypeError):
        raise Miss("damaged delta base") from None


def new_facts(sub: Sub, p: Job) -> tuple[dict[str, dict[str, Any]], Moved]:
    """The edited intents' new facts, checked against the base's (`Miss` on a difference
    other gateways could see), and the object files they add and remove per cluster."""
    from .facts import unit_facts

    new: dict[str, dict[str, Any]] = {key: {} for key in p.keys}
    moved: Moved = {}
    for cluster, units in zip(sub.clusters, sub.units, strict=True):
        shared = p.clusters.get(cluster.target.name, {}).get("shared", {})
        added: set[str] = set()
        removed: set[str] = set()
        for gw, unit in zip(cluster.gateways, units, strict=True):
            if gw.key not in new:
                raise Miss(f"gateway {gw.key} is not an edited intent")
            facts = unit_facts(gw, unit)
            facts["refs"] = [list(r) for r in facts["refs"]]
            old = p.old[gw.key].get(cluster.target.name)
            if old is None or any(old[k] != facts[k] for k in COMPARED):
                raise Miss(f"{gw.key} changed what other gateways on "
                           f"{cluster.target.name} see")
            mine, before = set(facts["files"]), set(old["files"])
            if (mine - before) & added:
                raise Miss(f"two edited intents add the same object file on "
                           f"{cluster.target.name}")
            added |= mine - before
            removed |= before - mine
            for piece in unit.pieces:
                entry = shared.get(piece.file) if piece.rendered is None else None
                if entry is not None and (old["problems"] or facts["problems"] or
                                          piece.digest != entry[1]):
                    raise Miss(f"{gw.key} changed an object it shares")
            new[gw.key][cluster.target.name] = facts
        if added & removed:
            raise Miss(f"an object file moves between edited intents on "
                       f"{cluster.target.name}")
        if added or removed:
            moved[cluster.target.name] = (added, removed)
    for key, placed in new.items():
        if set(placed) != set(p.old[key]):
            raise Miss(f"{key} is compiled for other clusters")
    return new, moved


def changes_of(sub: Sub) -> dict[str, dict[str, bytes | None]]:
    out: dict[str, dict[str, bytes | None]] = {}
    for cluster, units in zip(sub.clusters, sub.units, strict=True):
        files = out.setdefault(cluster.target.output_dir, {})
        for unit in units:
            for piece in unit.pieces:
                if piece.rendered is None:
                    assert isinstance(piece.data, bytes)
                    files[piece.file] = piece.data
            if unit.envoy is not None:
                assert isinstance(unit.envoy[1], bytes)
                files[unit.envoy[0]] = unit.envoy[1]
    return {d: files for d, files in out.items() if files}


def stopped_alike(sub: Sub, p: Job) -> None:
    """For an edit whose errors stop the compile (`sub.failed`): `Miss` unless the full
    compile stops at the same stage with the base's diagnostics of every other file. The
    edited files hold only the edited intents and their overrides; once the checks passed
    (stage 2 on), every edited intent is there; once resolved (stage 3), each is on the same
    clusters with the same namespaces as before, which the reference checks of other
    gateways read."""
    from ..diagnostics import CHECK_STAGE, RESOLVE_STAGE
    from ..refcheck import gateway_namespaces

    policies = sub.policies
    if policies is None:
        raise Miss("the edited files were not read")
    if policies.targets or policies.sources or policies.guardrails:
        mine = {t.origin.location.file for t in policies.targets} | \
            {s.origin.location.file for s in policies.sources} | \
            {g.loc.file for g in policies.guardrails}
        if mine & p.own:
            raise Miss("an edited file holds other documents than intents and overrides")
    keys = {intent.key for intent in policies.intents}
    if not keys <= p.keys or any(doc.gateway_key not in p.keys for doc in policies.overrides):
        raise Miss("an edited file holds another intent or its overrides")
    if sub.failed >= CHECK_STAGE and keys != p.keys:
        raise Miss("an edited intent is gone")
    if sub.failed >= RESOLVE_STAGE:
        placed: dict[str, dict[str, list[str]]] = {key: {} for key in p.keys}
        for cluster in sub.clusters:
            for gw in cluster.gateways:
                placed.setdefault(gw.key, {})[cluster.target.name] = \
                    sorted(gateway_namespaces(gw))
        for key, seen in placed.items():
            old = p.old.get(key, {})
            if set(seen) != set(old) or any(old[c]["ns"] != ns for c, ns in seen.items()):
                raise Miss(f"{key} changed what other gateways see")
