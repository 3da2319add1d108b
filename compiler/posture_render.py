"""Print the posture (compiler/posture.py) as JSON-ready data, text or Markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from .posture import Change, ClusterPosture, PortPosture

FORMATS = ("text", "json", "markdown")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_data(postures: Sequence[ClusterPosture]) -> dict[str, Any]:
    """Plain JSON-ready data (lists, dicts, strings, numbers)."""
    return {"clusters": [_plain(asdict(c)) for c in postures]}


def to_json(postures: Sequence[ClusterPosture]) -> str:
    return json.dumps(to_data(postures), indent=2, sort_keys=True)


def _restrictions(port: PortPosture) -> list[str]:
    return [f"{r.kind} {', '.join(r.values)}: enforced {r.enforced} ({r.by})"
            for r in port.restrictions]


def to_text(postures: Sequence[ClusterPosture]) -> str:
    lines: list[str] = []
    for cluster in postures:
        lines.append(f"cluster {cluster.name}")
        for gw in cluster.gateways:
            version = f" {gw.version}" if gw.version else ""
            lines.append(f"  gateway {gw.key} (class {gw.class_name}, implementation "
                         f"{gw.implementation}{version})")
            if not gw.ports:
                lines.append("    no HTTPS ports")
            for port in gw.ports:
                lines.append(f"    port {port.port}: {port.enforced_mode} "
                             f"(source {port.source}, intent {port.intended_mode}; "
                             f"listeners {', '.join(port.listeners)})")
                for a in port.anchors:
                    lines.append(f"      trusts {a.subject} sha256:{a.fingerprint} "
                                 f"notAfter {a.not_after} [{a.bundle}]")
                lines += [f"      restriction {r}" for r in _restrictions(port)]
                for c in port.conditions:
                    lines.append(f"      predicts {c.scope} {c.type}={c.status} ({c.reason})")
                lines += [f"      note: {n}" for n in port.notes]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(postures: Sequence[ClusterPosture]) -> str:
    out = ["# mTLS posture", ""]
    for cluster in postures:
        out += [f"## Cluster `{cluster.name}`", ""]
        for gw in cluster.gateways:
            version = f" {gw.version}" if gw.version else ""
            out += [f"### Gateway `{gw.key}` ({gw.implementation}{version})", "",
                    "| port | listeners | source | enforced mode | trust anchors | "
                    "restrictions | predicted conditions | notes |",
                    "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            for p in gw.ports:
                anchors = "<br>".join(f"{a.subject} `{a.fingerprint[:16]}` until "
                                      f"{a.not_after}" for a in p.anchors) or "-"
                conditions = "<br>".join(f"{c.scope}: {c.type}={c.status}"
                                         for c in p.conditions) or "-"
                out.append("| " + " | ".join(_cell(c) for c in (
                    str(p.port), ", ".join(p.listeners), p.source, p.enforced_mode, anchors,
                    "<br>".join(_restrictions(p)) or "-", conditions,
                    "<br>".join(p.notes) or "-")) + " |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


def render(postures: Sequence[ClusterPosture], fmt: str) -> str:
    if fmt == "json":
        return to_json(postures)
    if fmt == "markdown":
        return to_markdown(postures)
    return to_text(postures)


def changes_text(changes: Sequence[Change]) -> str:
    if not changes:
        return "posture: no change"
    lines = ["posture:"]
    for c in changes:
        lines.append(f"  {c.cluster} {c.gateway} port {c.port}: {c.direction}: {c.what}")
    return "\n".join(lines)
