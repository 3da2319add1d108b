"""`mtlsc explain`: every effective value of a gateway and where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .layering import KEYED_LISTS, Placement
from .located import Node
from .model import Gateway, PortValidation, ValidationSource


def leaves(node: Node, path: tuple[str, ...] = (),
           label: str = "") -> Iterator[tuple[str, Any, Node]]:
    """(label, value, node) for every scalar and atomic list, in document order.

    `path` holds only mapping keys, which is how keyed lists (listeners by name, ...) are found.
    """
    if node.is_map:
        for key, child in node.items():
            yield from leaves(child, (*path, key), f"{label}.{key}" if label else key)
    elif node.is_seq and path in KEYED_LISTS:
        key = KEYED_LISTS[path]
        for item in node.value:
            yield from leaves(item, path, f"{label}[{key}={item.scalar(key)}]")
    else:
        yield label or "(document)", node.plain(), node


def _port_line(port: PortValidation) -> str:
    if port.validation is None:
        what = "no client validation" + (" (perPort disabled)" if port.source is
                                         ValidationSource.PER_PORT else "")
        return f"  port {port.port} [{', '.join(port.listeners)}]: {what} <- {port.source.value}"
    v = port.validation
    cas = ", ".join(f"{r.namespace}/{r.name}" for r in v.ca_bundles)
    inherited = f" (inherited from default: {', '.join(sorted(v.inherited))})" \
        if v.inherited else ""
    return (f"  port {port.port} [{', '.join(port.listeners)}]: {v.mode.value}, CA {cas} "
            f"<- {port.source.value}{inherited}\n"
            f"      mode from {v.mode_origin}\n      CAs from {v.ca_origin}")


def explain(placement: Placement, gateway: Gateway) -> str:
    lines = [f"gateway {gateway.key} on cluster {placement.target.name} "
             f"(Gateway API {placement.target.gateway_api_version}/{placement.target.channel})",
             f"layers (least to most specific): {' < '.join(placement.layers)}", "",
             "effective values:"]
    for path, value, node in leaves(placement.spec):
        lines.append(f"  {path} = {value!r}    # {node.loc} [{node.layer}]")
    lines += ["", "client certificate validation per HTTPS port (GEP-91):"]
    lines += [_port_line(p) for p in gateway.ports] or ["  (no HTTPS listeners)"]
    return "\n".join(lines)
