"""Stages 4 and 5: fetch every referenced certificate once, then check it before use.

Each distinct (source, name) is read once per run however many gateways, listeners and clusters
reference it. A failure is reported once per root cause (the same error from the same source),
at the first intent line it affects, with the number and the first few locations of all the
references it affects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .diagnostics import Diagnostic, Location, error, warning
from .model import CertRef, ClusterModel, FrontendTLS
from .secrets import CertificateSource, ServerCertificate, SourceError
from .verify import CertProblem, check_ca_bundle, check_server_certificate

SourceKey = tuple[str, str]  # (source name, logical certificate name)


@dataclass(slots=True)
class Materials:
    ca_bundles: dict[SourceKey, bytes] = field(default_factory=dict)
    server_certs: dict[SourceKey, ServerCertificate] = field(default_factory=dict)

    def ca_pems_for(self, source: str) -> dict[str, bytes]:
        return {name: pem for (src, name), pem in self.ca_bundles.items() if src == source}


@dataclass(slots=True)
class _Uses:
    """Who references one certificate: intent locations, hostnames, expiry windows."""

    locations: set[Location] = field(default_factory=set)
    hostnames: dict[str, set[Location]] = field(default_factory=dict)
    windows: set[timedelta] = field(default_factory=set)


def _collect(clusters: Sequence[ClusterModel]) -> tuple[dict[SourceKey, _Uses],
                                                         dict[SourceKey, _Uses]]:
    cas: dict[SourceKey, _Uses] = {}
    servers: dict[SourceKey, _Uses] = {}
    for cluster in clusters:
        src, window = cluster.target.certificate_source, cluster.target.expiry_warning
        for gw in cluster.gateways:
            for ref in _all_ca_refs(gw.frontend):
                _note(cas, (src, ref.name), ref, window)
            for lst in gw.listeners:
                if lst.certificate is not None:
                    uses = _note(servers, (src, lst.certificate.name), lst.certificate, window)
                    if lst.hostname:
                        uses.hostnames.setdefault(lst.hostname, set()).add(
                            lst.certificate.origin.location)
    return cas, servers


def _all_ca_refs(frontend: FrontendTLS | None) -> list[CertRef]:
    if frontend is None:
        return []
    refs = list(frontend.default.ca_bundles) if frontend.default else []
    for entry in frontend.per_port:
        refs += list(entry.validation.ca_bundles) if entry.validation else []
    return refs


def _note(table: dict[SourceKey, _Uses], key: SourceKey, ref: CertRef,
          window: timedelta) -> _Uses:
    uses = table.setdefault(key, _Uses())
    uses.locations.add(ref.origin.location)
    uses.windows.add(window)
    return uses


SHOWN_LOCATIONS = 3


def _failures(failed: Sequence[tuple[str, SourceError, _Uses]]) -> list[Diagnostic]:
    """One diagnostic per root cause: errors with the same source, code and message."""
    causes: dict[tuple[str, str, str], tuple[SourceError, set[Location]]] = {}
    for source, exc, uses in failed:
        entry = causes.setdefault((source, exc.code, exc.message), (exc, set()))
        entry[1].update(uses.locations)
    out = []
    for exc, locations in causes.values():
        ordered = sorted(locations, key=lambda loc: (loc.file, loc.line, loc.col))
        message = exc.message
        if len(ordered) > 1:
            shown = ", ".join(str(loc) for loc in ordered[:SHOWN_LOCATIONS])
            more = len(ordered) - SHOWN_LOCATIONS
            message += (f" — affects {len(ordered)} references: {shown}"
                        f"{f' and {more} more' if more > 0 else ''}")
        where = ordered[0] if ordered else None
        out.append(warning(exc.code, message, where, exc.hint) if exc.warning else
                   error(exc.code, message, where, exc.hint, source_failure=exc.source_failure))
    return out


def _read(source: CertificateSource, kind: str, name: str) -> object:
    try:
        return source.ca_bundle(name) if kind == "ca" else source.server_certificate(name)
    except SourceError as exc:
        return exc


def fetch(clusters: Sequence[ClusterModel],
          sources: Mapping[str, CertificateSource]) -> tuple[Materials, list[Diagnostic]]:
    """Read every distinct (source, name) once, in parallel up to the sources' concurrency."""
    cas, servers = _collect(clusters)
    jobs = [("ca", key, uses) for key, uses in sorted(cas.items())]
    jobs += [("server", key, uses) for key, uses in sorted(servers.items())]
    workers = max((s.concurrency for s in sources.values()), default=1)
    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        outcomes = list(pool.map(lambda job: _read(sources[job[1][0]], job[0], job[1][1]),
                                 jobs))
    materials = Materials()
    failed: list[tuple[str, SourceError, _Uses]] = []
    for (kind, key, uses), outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, SourceError):
            failed.append((key[0], outcome, uses))
        elif kind == "ca":
            assert isinstance(outcome, bytes)
            materials.ca_bundles[key] = outcome
        else:
            assert isinstance(outcome, ServerCertificate)
            materials.server_certs[key] = outcome
    return materials, _failures(failed)


def _located(found: list[CertProblem], locations: set[Location], name: str) -> list[Diagnostic]:
    out = []
    for problem in found:
        for loc in sorted(locations, key=lambda loc: (loc.file, loc.line, loc.col)):
            diag = problem.to_diagnostic(loc)
            out.append(replace(diag, message=f"{name!r}: {diag.message}"))
    return out


def verify(clusters: Sequence[ClusterModel], materials: Materials,
           now: datetime) -> list[Diagnostic]:
    """Check every fetched certificate: parseable, CA-ness, expiry, hostnames, key match."""
    cas, servers = _collect(clusters)
    out: list[Diagnostic] = []
    for key, pem in sorted(materials.ca_bundles.items()):
        uses = cas[key]
        found = check_ca_bundle(pem, now=now, warn_within=max(uses.windows))
        out += _located(found, uses.locations, key[1])
    for key, cert in sorted(materials.server_certs.items(), key=lambda kv: kv[0]):
        uses = servers[key]
        key_pem = cert.private_key.reveal() if cert.private_key else None
        found = check_server_certificate(cert.chain_pem, key_pem, hostnames=(), now=now,
                                         warn_within=max(uses.windows))
        out += _located(found, uses.locations, key[1])
        if any(p.code == "InvalidPEM" for p in found):
            continue
        out += _hostname_problems(cert.chain_pem, uses, key[1], now)
    return out


def _hostname_problems(chain: bytes, uses: _Uses, name: str, now: datetime) -> list[Diagnostic]:
    """Coverage is per listener: report it at the listener whose hostname is not covered."""
    out: list[Diagnostic] = []
    for hostname, locations in sorted(uses.hostnames.items()):
        found = check_server_certificate(chain, None, hostnames=[hostname], now=now,
                                         warn_within=timedelta(0))
        covered = [p for p in found if p.code == "HostnameNotCovered"]
        out += _located(covered, locations, name)
    return out
