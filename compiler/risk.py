"""Security-aware change notes: what a change does to client-certificate validation.

Compares two resolved models (and the certificates they were compiled with) port by port:
insecure fallback enabled, validation removed, trust anchors added or removed (by fingerprint,
never by PEM), client restrictions dropped, server certificates rotated, certificates about to
expire. Pure: no I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .anchors import Anchor, bundle_anchors
from .fetch import Materials
from .model import Gateway, Mode, Model, PortValidation, Validation
from .verify import days_left


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, order=True)
class Note:
    """A security-relevant change note about a gateway (and port) of one cluster; notes sort
    by severity first."""

    severity: Severity
    cluster: str
    gateway: str
    code: str
    message: str
    port: int | None = None

    def as_dict(self) -> dict[str, object]:
        return {"severity": self.severity.label, "code": self.code, "cluster": self.cluster,
                "gateway": self.gateway, "port": self.port, "message": self.message}


@dataclass(frozen=True, slots=True)
class Side:
    """One compile: its model and what its certificates were (public data only)."""

    model: Model
    materials: Materials


_certs = bundle_anchors


def _anchors(v: Validation | None, source: str, materials: Materials) -> dict[str, Anchor]:
    found: dict[str, Anchor] = {}
    for ref in v.ca_bundles if v else ():
        for info in _certs(materials.ca_bundles.get((source, ref.name))):
            found[info.fingerprint] = info
    return found


def _gateways(side: Side | None) -> dict[tuple[str, str], tuple[Gateway, str]]:
    if side is None:
        return {}
    return {(c.target.name, g.key): (g, c.target.certificate_source)
            for c in side.model.clusters for g in c.gateways}


def _port_notes(cluster: str, gw: str, port: int, old: PortValidation | None,
                new: PortValidation, old_anchors: Mapping[str, Anchor],
                new_anchors: Mapping[str, Anchor]) -> list[Note]:
    def note(severity: Severity, code: str, message: str) -> Note:
        return Note(severity, cluster, gw, code, f"port {port}: {message}", port)

    was, now = (old.validation if old else None), new.validation
    notes: list[Note] = []
    if now is None:
        if was is not None:
            notes.append(note(Severity.HIGH, "ClientValidationRemoved",
                              f"client certificate validation removed (was {was.mode.value})"))
        elif old is None:
            notes.append(note(Severity.MEDIUM, "PortWithoutClientValidation",
                              "new HTTPS port without client certificate validation"))
        return notes
    if now.mode is Mode.ALLOW_INSECURE_FALLBACK and (was is None or was.mode is
                                                     Mode.ALLOW_VALID_ONLY):
        notes.append(note(Severity.HIGH, "InsecureFallbackEnabled",
                          f"{was.mode.value if was else 'no validation'} → "
                          "AllowInsecureFallback: clients without a valid certificate are "
                          "now accepted"))
    elif was is None:
        notes.append(note(Severity.INFO, "ClientValidationAdded",
                          f"client certificate validation added ({now.mode.value})"))
    elif was.mode is Mode.ALLOW_INSECURE_FALLBACK and now.mode is Mode.ALLOW_VALID_ONLY:
        notes.append(note(Severity.INFO, "ClientValidationTightened",
                          "AllowInsecureFallback → AllowValidOnly"))
    if was is not None:
        notes += _anchor_notes(note, old_anchors, new_anchors)
        notes += _restriction_notes(note, was, now)
    return notes


NoteMaker = Callable[[Severity, str, str], Note]


def _anchor_notes(note: NoteMaker, old: Mapping[str, Anchor],
                  new: Mapping[str, Anchor]) -> list[Note]:
    out: list[Note] = []
    for fp in sorted(set(new) - set(old)):
        out.append(note(Severity.HIGH, "TrustAnchorAdded",
                        f"CA certificate added to the trust anchors: {new[fp].describe()}"))
    for fp in sorted(set(old) - set(new)):
        out.append(note(Severity.LOW, "TrustAnchorRemoved",
                        f"CA certificate removed from the trust anchors: {old[fp].describe()}"))
    return out


def _restriction_notes(note: NoteMaker, was: Validation, now: Validation) -> list[Note]:
    out: list[Note] = []
    pairs = (("subjectAltNames.dns", was.restrictions.san_dns, now.restrictions.san_dns),
             ("subjectAltNames.uri", was.restrictions.san_uri, now.restrictions.san_uri),
             ("certificateHashes", was.restrictions.certificate_hashes,
              now.restrictions.certificate_hashes))
    for label, before, after in pairs:
        # An empty list means "no restriction": dropping every entry widens the most.
        if before and (not after or not set(after) <= set(before)):
            removed = sorted(set(before) - set(after)) or list(before)
            out.append(note(Severity.HIGH, "ClientRestrictionRemoved",
                            f"{label} restriction loosened (removed: "
                            f"{', '.join(removed)[:200]})"))
    return out


def _server_notes(cluster: str, key: str, old: Gateway | None, new: Gateway, old_src: str,
                  new_src: str, base: Side | None, head: Side) -> list[Note]:
    notes: list[Note] = []
    for lst in new.listeners:
        if lst.certificate is None or base is None:
            continue
        before = next((x.certificate for x in (old.listeners if old else ())
                       if x.key == lst.key and x.certificate), None)
        if before is None:
            continue
        was = _certs(_chain(base, old_src, before.name))
        now = _certs(_chain(head, new_src, lst.certificate.name))
        if was and now and was[0].fingerprint != now[0].fingerprint:
            notes.append(Note(Severity.INFO, cluster, key, "ServerCertificateRotated",
                              f"listener {lst.key}: server certificate {was[0].describe()} → "
                              f"{now[0].describe()}"))
    return notes


def _chain(side: Side, source: str, name: str) -> bytes | None:
    cert = side.materials.server_certs.get((source, name))
    return cert.chain_pem if cert else None


def _expiry_notes(head: Side, now: datetime, window: timedelta | None) -> list[Note]:
    """Certificates expiring within `window`, or else within each cluster's own
    certificateChecks.expiryWarningDays, with the days left."""
    notes: list[Note] = []
    for cluster in head.model.clusters:
        src = cluster.target.certificate_source
        limit = window if window is not None else cluster.target.expiry_warning
        for gw in cluster.gateways:
            seen: set[str] = set()
            pems = [(f"CA bundle {r.name}", head.materials.ca_bundles.get((src, r.name)))
                    for r in gw.ca_refs()]
            pems += [(f"server certificate {lst.certificate.name}",
                      _chain(head, src, lst.certificate.name))
                     for lst in gw.listeners if lst.certificate]
            for label, pem in pems:
                for info in _certs(pem)[:None if label.startswith("CA") else 1]:
                    if info.not_after - now < limit and label + info.fingerprint not in seen:
                        seen.add(label + info.fingerprint)
                        notes.append(Note(Severity.MEDIUM, cluster.target.name, gw.key,
                                          "CertificateExpiringSoon",
                                          f"{label} expires in "
                                          f"{days_left(info.not_after, now)} day(s): "
                                          f"{info.describe()}"))
    return notes


def security_notes(base: Side | None, head: Side, *, now: datetime,
                   window: timedelta | None = None) -> list[Note]:
    """Notes for going from `base` to `head`, most severe first."""
    old, new = _gateways(base), _gateways(head)
    notes: list[Note] = []
    for key in sorted(set(old) - set(new)):
        notes.append(Note(Severity.INFO, key[0], key[1], "GatewayRemoved", "gateway removed"))
    for (cluster, gw_key), (gw, src) in sorted(new.items()):
        before = old.get((cluster, gw_key))
        if before is None:
            notes.append(Note(Severity.INFO, cluster, gw_key, "GatewayAdded", "gateway added"))
        notes += _gateway_notes(cluster, gw_key, before, gw, src, base, head)
    notes += _expiry_notes(head, now, window)
    return ordered(notes)


def ordered(notes: Iterable[Note]) -> list[Note]:
    """Distinct notes, most severe first, then by cluster, gateway, port, code, message."""
    return sorted(set(notes), key=lambda n: (-n.severity, n.cluster, n.gateway, n.port or 0,
                                             n.code, n.message))


def _gateway_notes(cluster: str, key: str, before: tuple[Gateway, str] | None, gw: Gateway,
                   src: str, base: Side | None, head: Side) -> list[Note]:
    old_gw, old_src = before if before else (None, src)
    old_ports = {p.port: p for p in (old_gw.ports if old_gw else ())}
    notes: list[Note] = []
    for port in gw.ports:
        was = old_ports.get(port.port)
        old_anchors = _anchors(was.validation if was else None, old_src,
                               base.materials) if base else {}
        notes += _port_notes(cluster, key, port.port, was if old_gw else None, port,
                             old_anchors, _anchors(port.validation, src, head.materials))
    notes += _server_notes(cluster, key, old_gw, gw, old_src, src, base, head)
    return notes


def worst(notes: Iterable[Note]) -> Severity | None:
    return max((n.severity for n in notes), default=None)


