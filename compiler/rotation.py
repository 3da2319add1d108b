"""CA rotation in review: which trust anchors change where, and whether a removal is safe.

A CA bundle may hold several CA certificates (the old and the new one during a rotation). For
two compiles (base and head) this module lists every trust anchor added or removed with its
subject, issuer, fingerprint and validity and the cluster/gateway/ports it affects, and flags
as high severity a removal

- while the port's trust anchors changed less than the cluster's rotation overlap ago (a CA
  was added, or the removed CA itself was, within the overlap: clients may not have switched
  to the new CA yet), when an overlap is configured; or
- of a CA that still signs a server certificate the head compile uses (its clients most likely
  hold certificates from the same CA).

When an anchor was added comes from the caller (`compiler.anchor_history` reads it from the
Git history of the committed overlays); anchors it does not know count as old. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .anchors import Anchor, bundle_anchors
from .fetch import Materials
from .model import Validation
from .risk import Note, Severity, Side
from .verify import fingerprint_sha256, parse_pem_certificates

AnchorKey = tuple[str, str]  # (cluster, SHA-256 fingerprint)
Place = tuple[str, str, int]  # (cluster, gateway namespace/name, port)


@dataclass(frozen=True, slots=True)
class AnchorChange:
    """A trust anchor a change adds or removes, with every (cluster, gateway, port) it affects."""

    change: str  # added | removed
    anchor: Anchor
    places: tuple[Place, ...]  # sorted

    def where(self) -> str:
        by_gateway: dict[tuple[str, str], list[int]] = {}
        for cluster, gateway, port in self.places:
            by_gateway.setdefault((cluster, gateway), []).append(port)
        return "; ".join(f"{c} {g}:{','.join(map(str, ports))}"
                         for (c, g), ports in sorted(by_gateway.items()))

    def as_dict(self) -> dict[str, object]:
        return {"change": self.change, **self.anchor.as_dict(),
                "places": [{"cluster": c, "gateway": g, "port": p} for c, g, p in self.places]}


def _port_anchors(v: Validation | None, source: str,
                  materials: Materials) -> dict[str, Anchor]:
    found: dict[str, Anchor] = {}
    for ref in v.ca_bundles if v else ():
        for anchor in bundle_anchors(materials.ca_bundles.get((source, ref.name))):
            found[anchor.fingerprint] = anchor
    return found


def trust_by_port(side: Side | None) -> dict[Place, dict[str, Anchor]]:
    """(cluster, gateway, port) → the trust anchors (by fingerprint) validating clients there."""
    if side is None:
        return {}
    out: dict[Place, dict[str, Anchor]] = {}
    for cluster in side.model.clusters:
        src = cluster.target.certificate_source
        for gw in cluster.gateways:
            for port in gw.ports:
                out[(cluster.target.name, gw.key, port.port)] = _port_anchors(
                    port.validation, src, side.materials)
    return out


def anchor_changes(base: Side | None, head: Side) -> list[AnchorChange]:
    """Every CA certificate that starts or stops being trusted somewhere, with where."""
    old, new = trust_by_port(base), trust_by_port(head)
    if base is None:
        return []  # a base that does not compile has nothing to compare with
    places: dict[tuple[str, str], list[Place]] = {}
    anchors: dict[str, Anchor] = {}
    for place in sorted(set(old) | set(new)):
        was, now = old.get(place, {}), new.get(place, {})
        for change, fps, table in (("added", set(now) - set(was), now),
                                   ("removed", set(was) - set(now), was)):
            for fp in fps:
                anchors[fp] = table[fp]
                places.setdefault((change, fp), []).append(place)
    return sorted((AnchorChange(change, anchors[fp], tuple(sorted(where)))
                   for (change, fp), where in places.items()),
                  key=lambda c: (c.change, c.anchor.subject, c.anchor.fingerprint))


def _signs(ca: x509.Certificate, certs: Iterable[x509.Certificate]) -> bool:
    """Whether `ca` issued one of `certs` (by name and signature, not by name alone: two CAs
    may share a subject)."""
    for cert in certs:
        if cert.issuer != ca.subject or fingerprint_sha256(cert) == fingerprint_sha256(ca):
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _ca_certs(side: Side) -> dict[str, x509.Certificate]:
    return {fingerprint_sha256(c): c for pem in side.materials.ca_bundles.values()
            for c in parse_pem_certificates(pem)[0]}


def _server_chains(head: Side, cluster: str) -> dict[str, list[x509.Certificate]]:
    """Logical server certificate name → its chain, for the certificates `cluster` uses."""
    out: dict[str, list[x509.Certificate]] = {}
    for c in head.model.clusters:
        if c.target.name != cluster:
            continue
        for gw in c.gateways:
            for lst in gw.listeners:
                cert = head.materials.server_certs.get((c.target.certificate_source,
                                                        lst.certificate.name)) \
                    if lst.certificate else None
                if cert is not None and lst.certificate is not None:
                    out[lst.certificate.name] = parse_pem_certificates(cert.chain_pem)[0]
    return out


def rotation_notes(base: Side | None, head: Side, *, now: datetime,
                   added_at: Mapping[AnchorKey, datetime],
                   overlap: Mapping[str, timedelta]) -> list[Note]:
    """High-severity notes for unsafe removals (see the module docstring). `overlap` gives the
    rotation overlap per cluster; a cluster missing from it is not checked for overlap."""
    if base is None:
        return []
    old, new = trust_by_port(base), trust_by_port(head)
    ca_certs = _ca_certs(base)
    notes: list[Note] = []
    for place in sorted(set(old) & set(new)):
        cluster, gateway, port = place
        removed = sorted(set(old[place]) - set(new[place]))
        if not removed:
            continue
        window = overlap.get(cluster)
        if window is not None and window > timedelta(0):
            notes += _overlap_notes(place, old[place], new[place], removed, now, added_at,
                                    window)
        chains = _server_chains(head, cluster)
        for fp in removed:
            users = sorted(name for name, chain in chains.items()
                           if _signs(ca_certs[fp], chain))
            if users:
                notes.append(Note(Severity.HIGH, cluster, gateway, "TrustAnchorStillSigning",
                                  f"port {port}: removed CA {old[place][fp].describe()} still "
                                  f"signs the server certificate(s) {', '.join(users)} in use "
                                  "on this cluster: clients with certificates from this CA "
                                  "will be refused", port))
    return notes


def _overlap_notes(place: Place, was: Mapping[str, Anchor], now_trusted: Mapping[str, Anchor],
                   removed: list[str], now: datetime, added_at: Mapping[AnchorKey, datetime],
                   window: timedelta) -> list[Note]:
    cluster, gateway, port = place
    considered = {**now_trusted, **{fp: was[fp] for fp in removed}}
    # An anchor new in head was added now; one in base without known history counts as old.
    times = {fp: now if fp not in was else added_at.get((cluster, fp)) for fp in considered}
    recent = {fp: t for fp, t in times.items() if t is not None and now - t < window}
    if not recent:
        return []
    newest = max(recent, key=lambda fp: (recent[fp], fp))
    age = now - recent[newest]
    return [Note(Severity.HIGH, cluster, gateway, "TrustAnchorRemovedEarly",
                 f"port {port}: CA {was[fp].describe()} removed {_span(age)} after "
                 f"{considered[newest].describe()} was added; the rotation overlap is "
                 f"{_span(window)}: clients may still present certificates of the removed CA",
                 port) for fp in removed]


DURATION_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """`7d`, `36h`, `90m`, `45s` or `0`; ValueError otherwise."""
    text = text.strip()
    if text == "0":
        return timedelta(0)
    number, unit = text[:-1], text[-1:]
    if unit not in DURATION_UNITS or not number.isdigit():
        raise ValueError(f"{text!r} is not a duration like 7d, 36h, 90m or 0")
    return timedelta(seconds=int(number) * DURATION_UNITS[unit])


def _span(span: timedelta) -> str:
    if span < timedelta(days=1):
        return f"{int(span.total_seconds() // 3600)} hour(s)"
    return f"{span.days} day(s)"
