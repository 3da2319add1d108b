"""Stage 2: layer a base GatewayIntent with environment and cluster overrides.

Precedence, most specific wins: base intent < environment override < cluster override.
Merge rules (docs/layering.md):
- mappings merge key by key; a `null` value removes the key;
- `listeners` and `routes` merge by `name`, `clientValidation.perPort` by `port`; an item with
  `$patch: delete` removes the matching item; unknown items are appended;
- every other list (caBundles, hostnames, backends, ...) is replaced as a whole, like the
  Gateway API's atomic lists.
Every merged node keeps the location and layer it came from, which `mtlsc explain` prints.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .diagnostics import Diagnostic, Related, error, warning
from .intent_schema import dotted
from .load import IntentDoc, OverrideDoc, Policies
from .located import Node
from .model import Target

KEYED_LISTS: dict[tuple[str, ...], str] = {
    ("listeners",): "name",
    ("routes",): "name",
    ("clientValidation", "perPort"): "port",
    ("listenerSets",): "name",
    ("listenerSets", "listeners"): "name",
}
PATCH = "$patch"


@dataclass(frozen=True, slots=True)
class Placement:
    """One gateway intent compiled for one cluster, with its effective (layered) spec."""

    intent: IntentDoc
    target: Target
    spec: Node
    layers: tuple[str, ...]


def relabel(node: Node, layer: str) -> Node:
    """A copy of the tree with every node in `layer` (locations are immutable and shared;
    scalar values are immutable)."""
    value = node.value
    if isinstance(value, dict):
        value = {key: relabel(child, layer) for key, child in value.items()}
    elif isinstance(value, list):
        value = [relabel(child, layer) for child in value]
    return Node(value, node.loc, node.key_loc, layer)


def merge(base: Node, patch: Node, path: tuple[str, ...] = ()) -> tuple[Node, list[Diagnostic]]:
    """Merge `patch` over `base` (both already labelled with their layers)."""
    if base.is_map and patch.is_map:
        return _merge_maps(base, patch, path)
    if path in KEYED_LISTS and base.is_seq and patch.is_seq:
        return _merge_keyed(base, patch, path, KEYED_LISTS[path])
    return patch, []


def _merge_maps(base: Node, patch: Node, path: tuple[str, ...]) -> tuple[Node, list[Diagnostic]]:
    merged = dict(base.value)
    problems: list[Diagnostic] = []
    for key, child in patch.items():
        if child.value is None:
            merged.pop(key, None)
        elif key in merged:
            merged[key], found = merge(merged[key], child, (*path, key))
            problems += found
        else:
            merged[key] = child
    return Node(merged, base.loc, base.key_loc, base.layer), problems


def _merge_keyed(base: Node, patch: Node, path: tuple[str, ...],
                 key: str) -> tuple[Node, list[Diagnostic]]:
    items: dict[object, Node] = {item.scalar(key): item for item in base.value}
    problems: list[Diagnostic] = []
    for item in patch.value:
        ident = item.scalar(key)
        if item.scalar(PATCH) == "delete":
            if items.pop(ident, None) is None:
                problems.append(error("PatchTargetMissing", f"{dotted(path)}: no item with "
                                      f"{key} {ident!r} to delete", item.loc,
                                      f"check the {key} or remove this '$patch: delete' entry"))
        elif ident in items:
            items[ident], found = merge(items[ident], item, path)
            problems += found
        else:
            items[ident] = item
    return Node(list(items.values()), base.loc, base.key_loc, base.layer), problems


DUPLICATE_CODES = {"listeners": "DuplicateListener", "routes": "DuplicateRoute",
                   "perPort": "DuplicatePerPort", "listenerSets": "DuplicateListenerSet"}


def duplicate_items(spec: Node) -> list[Diagnostic]:
    """Keyed lists must not repeat a key (checked before merging, which would hide repeats)."""
    out: list[Diagnostic] = []
    for path, key in KEYED_LISTS.items():
        seen: dict[object, Node] = {}
        found = spec.at(path)
        for item in found.value if found is not None and found.is_seq else []:
            ident = item.scalar(key)
            if ident in seen:
                out.append(error(DUPLICATE_CODES[path[-1]], f"{dotted(path)}: {key} {ident!r} "
                                 f"is listed twice (first at line {seen[ident].loc.line})",
                                 item.loc, f"each {key} may appear once; merge the two entries"))
            else:
                seen.setdefault(ident, item)
    return out


def _has_patch(node: Node) -> bool:
    value = node.value
    if isinstance(value, dict):
        return PATCH in value or any(_has_patch(child) for child in value.values())
    if isinstance(value, list):
        return any(_has_patch(child) for child in value)
    return False


def _stray_patches(node: Node, path: tuple[str | int, ...] = ()) -> list[Diagnostic]:
    """`$patch` only means something in an override; in a base intent it is a mistake."""
    if not _has_patch(node):  # nearly every intent: no paths to build
        return []
    found: list[Diagnostic] = []
    for key, child in node.items():
        if key == PATCH:
            found.append(error("PatchInBaseIntent", f"{dotted(path)}: '$patch' is only "
                               "allowed in a GatewayOverride", child.key_loc or child.loc,
                               "remove the item from the intent instead"))
        found += _stray_patches(child, (*path, key))
    for index, child in enumerate(node.value if node.is_seq else []):
        found += _stray_patches(child, (*path, index))
    return found


def _layer_name(doc: OverrideDoc) -> str:
    if doc.cluster:
        return f"cluster {doc.cluster} ({doc.name})"
    return f"environment {doc.environment} ({doc.name})"


def overrides_for(intent: IntentDoc, target: Target,
                  overrides: Sequence[OverrideDoc]) -> tuple[list[OverrideDoc], list[Diagnostic]]:
    mine = [o for o in overrides if o.gateway_key == intent.key]
    env = sorted((o for o in mine if o.environment and o.environment == target.environment),
                 key=lambda o: o.name)
    cluster = sorted((o for o in mine if o.cluster == target.name), key=lambda o: o.name)
    problems: list[Diagnostic] = []
    for level, docs in (("environment", env), ("cluster", cluster)):
        for extra in docs[1:]:
            problems.append(error(
                "AmbiguousOverride",
                f"{intent.key} has two {level} overrides for {target.name!r}: "
                f"{docs[0].name!r} and {extra.name!r}", extra.root.loc,
                "merge them into one GatewayOverride: their order would be arbitrary"))
    return env[:1] + cluster[:1], problems


def place(intent: IntentDoc, target: Target,
          overrides: Sequence[OverrideDoc]) -> tuple[Placement, list[Diagnostic]]:
    spec = intent.root.get("spec")
    assert spec is not None
    chosen, problems = overrides_for(intent, target, overrides)
    layers = ["base"]
    for doc in chosen:
        layer = _layer_name(doc)
        spec, found = merge(spec, relabel(doc.patch, layer))
        problems += found
        layers.append(layer)
    return Placement(intent, target, spec, tuple(layers)), problems


def caused_by_overrides(problems: Sequence[Diagnostic], placement: Placement,
                        overrides: Sequence[OverrideDoc],
                        check: Callable[[Placement], list[Diagnostic]]) -> list[Diagnostic]:
    """Name the overrides (and the intent) behind the problems only the layered spec has.

    `check` finds the problems of a placement; it is run once more on the base intent alone,
    and every problem the base does not have gets the applied overrides' locations, and the
    intent's, as related locations: the error may sit in the intent but be caused by an
    override, or sit in the override file and concern the intent.
    """
    base = Placement(placement.intent, placement.target, placement.intent.root.find(("spec",)),
                     ("base",))
    seen = {(d.code, d.location, d.message) for d in check(base)}
    chosen, _ = overrides_for(placement.intent, placement.target, overrides)
    related = [Related(doc.root.find(("spec", "cluster" if doc.cluster else "environment")
                                     ).loc, f"applied override {doc.name!r} "
                       f"({_layer_name(doc).split(' (')[0]})") for doc in chosen]
    related.append(Related(placement.intent.root.find(("metadata", "name")).loc,
                           f"GatewayIntent {placement.intent.key}"))
    out = []
    for d in problems:
        if (d.code, d.location, d.message) in seen:
            out.append(d)
            continue
        here = d.location.file if d.location else None
        out.append(d.with_related(*(r for r in related if r.location.file != here)))
    return out


def targets_of(intent: IntentDoc, targets: Sequence[Target]) -> list[Target]:
    wanted = {name for name, _ in intent.clusters}
    envs = {env for env, _ in intent.environments}
    return sorted((t for t in targets if t.name in wanted or
                   (t.environment is not None and t.environment in envs)),
                  key=lambda t: t.name)


def check_references(policies: Policies) -> list[Diagnostic]:
    """Clusters, environments and gateways that documents name must exist."""
    names = {t.name for t in policies.targets}
    envs = {t.environment for t in policies.targets if t.environment}
    gateways = {i.key for i in policies.intents}
    out: list[Diagnostic] = []
    for intent in policies.intents:
        out += _stray_patches(intent.root)
        out += duplicate_items(intent.root.find(("spec",)))
        for name, node in intent.clusters:
            if name not in names:
                out.append(_unknown("cluster", name, node, names))
        for env, node in intent.environments:
            if env not in envs:
                out.append(warning("UnusedEnvironment", f"no ClusterTarget has environment "
                                   f"{env!r}", node.loc, "check the spelling"))
    intents = {i.key: i for i in policies.intents}
    for doc in policies.overrides:
        out += _check_override(doc, names, envs, gateways)
        if doc.gateway_key in intents and (doc.cluster in names or doc.environment in envs):
            out += _override_applies(doc, intents[doc.gateway_key], policies.targets)
    return out


def _check_override(doc: OverrideDoc, names: set[str], envs: set[str],
                    gateways: set[str]) -> list[Diagnostic]:
    spec = doc.root.get("spec")
    assert spec is not None
    out = duplicate_items(doc.patch)
    if doc.gateway_key not in gateways:
        out.append(_unknown("gateway", doc.gateway_key, spec.find(("gateway",)), gateways))
    if doc.cluster and doc.cluster not in names:
        out.append(_unknown("cluster", doc.cluster, spec.find(("cluster",)), names))
    if doc.environment and doc.environment not in envs:
        close = difflib.get_close_matches(doc.environment, sorted(envs), n=1)
        out.append(error("UnusedOverride", f"no ClusterTarget has environment "
                         f"{doc.environment!r}; override {doc.name!r} applies nowhere",
                         spec.find(("environment",)).loc,
                         f"did you mean {close[0]!r}?" if close else "known environments: "
                         + (", ".join(sorted(envs)) or "(none)")))
    return out


def _override_applies(doc: OverrideDoc, intent: IntentDoc,
                      targets: Sequence[Target]) -> list[Diagnostic]:
    """An override for a cluster or environment the gateway is not compiled for changes
    nothing: a silently dropped (security) change, so an error."""
    compiled = targets_of(intent, targets)
    if any(t.name == doc.cluster or (doc.environment and t.environment == doc.environment)
           for t in compiled):
        return []
    field = "cluster" if doc.cluster else "environment"
    value = doc.cluster or doc.environment
    spec = doc.root.find(("spec",))
    where = ", ".join(t.name for t in compiled) or "no cluster"
    return [error("UnusedOverride", f"override {doc.name!r} is for {field} {value!r}, but "
                  f"{intent.key} is not compiled for it (it is compiled for {where}); the "
                  "override applies nowhere", spec.find((field,)).loc,
                  f"add {value!r} to the intent's clusters/environments, or fix the override's "
                  f"{field}")]


def _unknown(what: str, name: str, node: Node, known: set[str]) -> Diagnostic:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else \
        f"known: {', '.join(sorted(known)) or '(none)'}"
    return error(f"Unknown{what.capitalize()}", f"unknown {what} {name!r}", node.loc, hint)
