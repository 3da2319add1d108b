"""Stages 4 and 5: fetch every referenced certificate once, then check it before use.

Each distinct (source, name) is read once per run however many gateways, listeners and clusters
reference it. A failure is reported once per root cause (the same error from the same source),
at the first intent line it affects, with the number and the first few locations of all the
references it affects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .diagnostics import Diagnostic, Location, error, warning
from .model import CertRef, ClusterModel, FrontendTLS
from .secrets import CertificateSource, ServerCertificate, SourceError
from .verify import CertProblem, check_ca_bundle, check_server_certificate, uncovered_hostnames

SourceKey = tuple[str, str]  # (source name, logical certificate name)


@dataclass(slots=True)
class Materials:
    """The certificates a run fetched, by (source, logical name): CA bundles as PEM, and server
    certificates (private keys in memory only)."""

    ca_bundles: dict[SourceKey, bytes] = field(default_factory=dict)
    server_certs: dict[SourceKey, ServerCertificate] = field(default_factory=dict)

    def ca_pems_for(self, source: str) -> dict[str, bytes]:
        return {name: pem for (src, name), pem in self.ca_bundles.items() if src == source}


@dataclass(slots=True)
class _Uses:
    """Who references one certificate: intent locations, hostnames, expiry windows."""

    locations: dict[Location, set[str]] = field(default_factory=dict)  # → cluster names
    hostnames: dict[str, set[Location]] = field(default_factory=dict)
    windows: dict[str, timedelta] = field(default_factory=dict)  # cluster → expiry warning


def _collect(clusters: Sequence[ClusterModel]) -> tuple[dict[SourceKey, _Uses],
                                                         dict[SourceKey, _Uses]]:
    cas: dict[SourceKey, _Uses] = {}
    servers: dict[SourceKey, _Uses] = {}
    for cluster in clusters:
        src, target = cluster.target.certificate_source, cluster.target
        for gw in cluster.gateways:
            for ref in _all_ca_refs(gw.frontend):
                _note(cas, (src, ref.name), ref, target.name, target.expiry_warning)
            for lst in gw.listeners:
                if lst.certificate is not None:
                    uses = _note(servers, (src, lst.certificate.name), lst.certificate,
                                 target.name, target.expiry_warning)
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


def _note(table: dict[SourceKey, _Uses], key: SourceKey, ref: CertRef, cluster: str,
          window: timedelta) -> _Uses:
    uses = table.setdefault(key, _Uses())
    uses.locations.setdefault(ref.origin.location, set()).add(cluster)
    uses.windows[cluster] = window
    return uses


SHOWN_LOCATIONS = 3


def _by_place(locations: Iterable[Location]) -> list[Location]:
    return sorted(locations, key=lambda loc: (loc.file, loc.line, loc.col))


def _failures(failed: Sequence[tuple[str, SourceError, _Uses]]) -> list[Diagnostic]:
    """One diagnostic per root cause (errors with the same source, code and message), at the
    first place it affects, naming how many references it affects and the first few."""
    causes: dict[tuple[str, str, str], tuple[SourceError, dict[Location, set[str]]]] = {}
    for source, exc, uses in failed:
        entry = causes.setdefault((source, exc.code, exc.message), (exc, {}))
        for loc, clusters in uses.locations.items():
            entry[1].setdefault(loc, set()).update(clusters)
    out = []
    for exc, places in causes.values():
        ordered = _by_place(places)
        message = exc.message
        if len(ordered) > 1:
            shown = ", ".join(str(loc) for loc in ordered[:SHOWN_LOCATIONS])
            more = len(ordered) - SHOWN_LOCATIONS
            message += (f" — affects {len(ordered)} references: {shown}"
                        f"{f' and {more} more' if more > 0 else ''}")
        where = ordered[0] if ordered else None
        diag = warning(exc.code, message, where, exc.hint) if exc.warning else \
            error(exc.code, message, where, exc.hint, source_failure=exc.source_failure)
        out.append(diag.in_clusters(*{c for clusters in places.values() for c in clusters}))
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
    workers = min(max((s.concurrency for s in sources.values()), default=1), len(jobs))

    def read(job: tuple[str, tuple[str, str], _Uses]) -> object:
        return _read(sources[job[1][0]], job[0], job[1][1])

    if workers <= 1:  # one source read at a time (a local directory): no thread needed
        outcomes = [read(job) for job in jobs]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = list(pool.map(read, jobs))
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


def _located(found: list[CertProblem], locations: Mapping[Location, set[str]], name: str,
             clusters: Set[str] | None = None) -> list[Diagnostic]:
    """One diagnostic per problem and intent line, naming the clusters (of `clusters`, when
    given) that reach the certificate from that line."""
    out = []
    for problem in found:
        for loc in _by_place(locations):
            names = locations[loc] if clusters is None else locations[loc] & clusters
            if not names:
                continue
            diag = problem.to_diagnostic(loc).in_clusters(*names)
            out.append(replace(diag, message=f"{name!r}: {diag.message}"))
    return out


def _checked(check: Callable[..., list[CertProblem]], uses: _Uses,
             name: str) -> list[Diagnostic]:
    """Run a certificate check once per distinct expiry-warning window: an expiring-soon
    warning names only the clusters whose window it falls in."""
    out: list[Diagnostic] = []
    for window in sorted(set(uses.windows.values())):
        clusters = {c for c, w in uses.windows.items() if w == window}
        out += _located(check(warn_within=window), uses.locations, name, clusters)
    return out


def verify(clusters: Sequence[ClusterModel], materials: Materials,
           now: datetime) -> list[Diagnostic]:
    """Check every fetched certificate: parseable, CA-ness, expiry, hostnames, key match."""
    cas, servers = _collect(clusters)
    out: list[Diagnostic] = []
    for key, pem in sorted(materials.ca_bundles.items()):
        out += _checked(functools.partial(check_ca_bundle, pem, now=now), cas[key], key[1])
    for key, cert in sorted(materials.server_certs.items(), key=lambda kv: kv[0]):
        uses = servers[key]
        key_pem = cert.private_key.reveal() if cert.private_key else None
        found = _checked(functools.partial(check_server_certificate, cert.chain_pem, key_pem,
                                           hostnames=(), now=now), uses, key[1])
        out += found
        if any(d.code == "InvalidPEM" for d in found):
            continue
        out += _hostname_problems(cert.chain_pem, uses, key[1], now)
    return out


def _hostname_problems(chain: bytes, uses: _Uses, name: str, now: datetime) -> list[Diagnostic]:
    """Coverage is per listener: report it at the listener whose hostname is not covered."""
    out: list[Diagnostic] = []
    pairs = sorted(uses.hostnames.items())
    found = uncovered_hostnames(chain, [hostname for hostname, _ in pairs])
    for (_, locations), covered in zip(pairs, found, strict=True):
        out += _located(covered, {loc: uses.locations[loc] for loc in locations}, name)
    return out
