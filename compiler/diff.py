"""`mtlsc diff`: what a change does to the compiled overlays, per cluster and gateway.

Two compiles (the intents at a Git ref and in the working tree) are compared file by file.
Certificate bodies in diffs are replaced by their fingerprint (reviewers compare fingerprints,
not base64); private keys never appear in any output to begin with. Rendering is pure.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import functools
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import jinja2

from .diagnostics import Diagnostic
from .model import Gateway, Model
from .posture import Change
from .render.envoy import envoy_file
from .report import as_dict, escape_data, escape_property, github
from .risk import Note, Severity
from .rotation import AnchorChange

GITHUB_COMMENT_LIMIT = 65_536
MARKER = "<!-- mtlsc-diff -->"
_PEM = re.compile(r"^([ \t]*)-----BEGIN ([A-Z0-9 ]+)-----\n((?:\1[A-Za-z0-9+/=]*\n)*?)"
                  r"\1-----END \2-----$", re.MULTILINE)


def redact_pem(text: str) -> str:
    """Replace each PEM block by one line naming its SHA-256 fingerprint."""
    def fingerprint(match: re.Match[str]) -> str:
        indent, label, body = match.group(1), match.group(2), match.group(3)
        try:
            der = base64.b64decode("".join(line.strip() for line in body.splitlines()),
                                   validate=True)
        except (binascii.Error, ValueError):
            der = body.encode()
        return f"{indent}<{label.lower()} sha256:{hashlib.sha256(der).hexdigest()}>"
    return _PEM.sub(fingerprint, text)


@dataclass(frozen=True, slots=True)
class FileChange:
    """One overlay file a change adds, removes or modifies: its cluster, gateways and diff."""

    path: str
    status: str  # added | removed | modified
    cluster: str | None
    gateways: tuple[str, ...]
    diff: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "cluster": self.cluster,
                "gateways": list(self.gateways), "diff": self.diff}


OFFLINE_CODES = ("NotCheckedOffline", "OfflineChecks")  # compiler/secrets/offline.py


@dataclass(slots=True)
class DiffReport:
    """What `mtlsc diff` found between the base ref and the working tree: changed files, risk
    notes, posture and trust-anchor changes, and the working tree compile's diagnostics."""

    base_ref: str
    base_commit: str
    changes: list[FileChange] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    base_failed: bool = False
    posture: list[Change] = field(default_factory=list)  # per port: weaker / stronger
    anchors: list[AnchorChange] = field(default_factory=list)  # trust anchors added/removed

    def clusters(self) -> list[str]:
        """The clusters whose overlays change (files outside them, like mtlsc.lock, are no
        cluster)."""
        return sorted({c.cluster for c in self.changes if c.cluster is not None})

    @property
    def unchecked(self) -> list[str]:
        """What an offline run (`--offline`) could not check without Vault."""
        return [d.message for d in self.diagnostics if d.code in OFFLINE_CODES]

    def gateway_table(self) -> list[tuple[str, str, str, int]]:
        """(cluster, gateway, change, files) for every gateway a change touches."""
        rows: dict[tuple[str, str], list[FileChange]] = {}
        for change in self.changes:
            for gw in change.gateways:
                rows.setdefault((change.cluster or "-", gw), []).append(change)
        out = []
        for (cluster, gw), files in sorted(rows.items()):
            gateway_file = [f for f in files if "/gateway-" in f.path]
            status = gateway_file[0].status if gateway_file else "modified"
            out.append((cluster, gw, status, len(files)))
        return out


def _owners(model: Model | None) -> dict[str, tuple[str, set[str]]]:
    """Output path → (cluster, gateways whose objects live in that file)."""
    owners: dict[str, tuple[str, set[str]]] = {}
    for cluster in model.clusters if model else ():
        out = cluster.target.output_dir
        for gw in cluster.gateways:
            for path in _gateway_paths(gw, out):
                owners.setdefault(path, (cluster.target.name, set()))[1].add(gw.key)
        for name in ("kustomization.yaml",):
            owners.setdefault(f"{out}/{name}", (cluster.target.name, set()))
    return owners


def _gateway_paths(gw: Gateway, out: str) -> list[str]:
    paths = [f"{out}/{gw.namespace}/gateway-{gw.name}.yaml", f"{out}/{envoy_file(gw)}"]
    paths += [f"{out}/{r.namespace}/httproute-{r.name}.yaml" for r in gw.routes]
    paths += [f"{out}/{ref.namespace}/configmap-{ref.name}.yaml" for ref in gw.ca_refs()]
    paths += [f"{out}/{lst.certificate.namespace}/externalsecret-{lst.certificate.name}.yaml"
              for lst in gw.listeners if lst.certificate]
    return paths


def _cluster_of(path: str, owners: Mapping[str, tuple[str, set[str]]],
                dirs: Mapping[str, str]) -> str | None:
    if path in owners:
        return owners[path][0]
    return next((name for out, name in dirs.items() if path.startswith(out + "/")), None)


def _unified(path: str, old: str, new: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{path}" if old else "/dev/null",
                                 tofile=f"b/{path}" if new else "/dev/null")
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)


def file_changes(base: Mapping[str, bytes], head: Mapping[str, bytes],
                 models: Sequence[Model | None], *, show_ca_bodies: bool = False,
                 ) -> list[FileChange]:
    owners: dict[str, tuple[str, set[str]]] = {}
    dirs: dict[str, str] = {}
    for model in models:
        for path, (cluster, gws) in _owners(model).items():
            owners.setdefault(path, (cluster, set()))[1].update(gws)
        for c in model.clusters if model else ():
            dirs[c.target.output_dir] = c.target.name
    changes = []
    for path in sorted(set(base) | set(head)):
        old, new = base.get(path), head.get(path)
        if old == new:
            continue
        status = "added" if old is None else "removed" if new is None else "modified"
        old_text = (old or b"").decode("utf-8", "replace")
        new_text = (new or b"").decode("utf-8", "replace")
        if not show_ca_bodies:
            old_text, new_text = redact_pem(old_text), redact_pem(new_text)
        gateways = tuple(sorted(owners.get(path, ("", set()))[1]))
        changes.append(FileChange(path, status, _cluster_of(path, owners, dirs), gateways,
                                  _unified(path, old_text, new_text)))
    return changes


# --- output formats --------------------------------------------------------------------------


def as_text(report: DiffReport) -> str:
    lines = [f"mtlsc diff against {report.base_ref} ({report.base_commit[:12]})"]
    if report.base_failed:
        lines.append("note: the base does not compile; every file counts as added")
    lines += [f"not checked offline: {message}" for message in report.unchecked]
    for note in report.notes:
        lines.append(f"[{note.severity.label}] {note.cluster} {note.gateway}: {note.message}")
    for c in report.posture:
        lines.append(f"posture {c.cluster} {c.gateway} port {c.port}: {c.direction}: {c.what}")
    for change in report.anchors:
        lines.append(f"trust anchor {change.change}: {change.anchor.describe()} at "
                     f"{change.where()}")
    if not report.changes:
        lines.append("no change to the compiled overlays")
    text = "\n".join(lines) + "\n"
    return text + "".join(change.diff for change in report.changes)


def as_json(report: DiffReport) -> str:
    clusters: dict[str, dict[str, str]] = {}
    for cluster, gw, status, _ in report.gateway_table():
        clusters.setdefault(cluster, {})[gw] = status
    doc = {"base": {"ref": report.base_ref, "commit": report.base_commit,
                    "compiles": not report.base_failed},
           "clusters": clusters,
           "files": [c.as_dict() for c in report.changes],
           "notes": [n.as_dict() for n in report.notes],
           "posture": [asdict(c) for c in report.posture],
           "trustAnchors": [a.as_dict() for a in report.anchors],
           "diagnostics": [as_dict(d) for d in report.diagnostics]}
    return json.dumps(doc, indent=2, sort_keys=True)


_ANNOTATION = {Severity.HIGH: "error", Severity.MEDIUM: "warning", Severity.LOW: "notice",
               Severity.INFO: "notice"}


def as_github(report: DiffReport) -> str:
    """GitHub workflow commands: one annotation per security note, then the diagnostics."""
    lines = []
    for note in report.notes:
        title = f"mtlsc diff: {note.code}"
        message = f"{note.cluster} {note.gateway}: {note.message}"
        lines.append(f"::{_ANNOTATION[note.severity]} title={escape_property(title)}::"
                     f"{escape_data(message)}")
    annotations = github(report.diagnostics)
    return "\n".join([*lines, *([annotations] if annotations else [])]) + "\n"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


@functools.cache
def _template() -> jinja2.Template:
    text = resources.files("compiler").joinpath("templates/diff.md.j2").read_text("utf-8")
    # Markdown, not HTML: autoescaping would mangle code spans; table cells escape pipes.
    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["cell"] = _cell
    return env.from_string(text)


def _render(report: DiffReport, shown: int, notes_shown: int) -> str:
    template = _template()
    counts = {s.label: sum(1 for n in report.notes if n.severity is s)
              for s in sorted(Severity, reverse=True)}
    return template.render(report=report, marker=MARKER, counts=counts,
                           clusters=report.clusters(),
                           other_files=[c.path for c in report.changes if c.cluster is None],
                           notes=report.notes[:notes_shown],
                           anchors=report.anchors,
                           hidden_notes=len(report.notes) - notes_shown,
                           gateways=report.gateway_table(),
                           shown=report.changes[:shown],
                           hidden=len(report.changes) - shown)


def as_markdown(report: DiffReport, limit: int | None = GITHUB_COMMENT_LIMIT) -> str:
    """The PR comment: summary first, diffs last, cut to fit GitHub's comment limit."""
    full = _render(report, len(report.changes), len(report.notes))
    if limit is None or len(full) <= limit:
        return full
    low, high = 0, len(report.changes)  # the most file diffs that still fit
    while low < high:
        mid = (low + high + 1) // 2
        if len(_render(report, mid, len(report.notes))) <= limit:
            low = mid
        else:
            high = mid - 1
    text = _render(report, low, len(report.notes))
    notes = len(report.notes)
    while len(text) > limit and notes > 0:
        notes = max(0, notes - max(1, notes // 4))
        text = _render(report, 0, notes)
    return text[:limit]
