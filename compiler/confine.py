"""Confinement: every path a policy file names stays inside the repository.

Policy files arrive in pull requests, so a path in them is untrusted. The rules (docs/cli.md,
"Paths in policy files"):

- `ClusterTarget.spec.outputDir`, `CertificateSource.spec.local.directory` and the file names
  under `certificates` and `caBundles` are relative paths without `..` (`PathOutsideRepository`);
  an output directory is also in normal form (no `.` or empty components: `PathNotNormal`);
- resolved on disk, each stays inside the repository root; a symbolic link that leads out is
  refused. Only reading may go outside, and only below a directory the person running mtlsc
  names with `--allow-read-outside` — never a directory that `createDevPki` writes to;
- an output directory passes through no symbolic link at all (`SymlinkInOutputPath`), is not the
  repository root, and overlaps neither `policies/`, `.git`, `.mtlsc`, `schemas`, `mtlsc.lock`,
  a certificate source directory, nor another cluster's output directory (`OverlappingPaths`).

`check_policies` needs only the parsed policies (pure) unless `Boundaries.root` is set, then it
also resolves the paths on disk. `check_output_paths` is a last guard on the compiled file map.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .diagnostics import Diagnostic, Location, error
from .located import Node
from .lock import LOCK_FILE

RESERVED = (".git", ".mtlsc", "schemas", LOCK_FILE)  # besides the policies directory
_HINT_RELATIVE = ("give a path relative to the repository root, without '..'; mtlsc never "
                  "writes or reads outside the repository")


@dataclass(frozen=True, slots=True)
class Boundaries:
    """Where the repository is (None: check the policy text only) and what may be read outside."""

    root: Path | None = None
    policies: str = "policies"  # relative to root
    read_outside: tuple[Path, ...] = ()  # from --allow-read-outside


@dataclass(frozen=True, slots=True)
class PathValue:
    """A path a policy file names, where it stands and what mtlsc does with it."""

    value: str
    location: Location
    what: str  # for messages: "outputDir of ClusterTarget 'x'"
    base: str = ""  # directory the value is relative to (root-relative)
    output: bool = False
    writes: bool = False


def _components(value: str) -> list[str]:
    return value.split("/")


def lexical_problem(value: str) -> str | None:
    """Why `value` cannot name a place inside the repository, judged by its text alone."""
    if not value:
        return "is empty"
    if "\x00" in value:
        return "contains a NUL character"
    if value.startswith("/"):
        return "is an absolute path"
    if ".." in _components(value):
        return "contains '..'"
    return None


def normal_form(value: str) -> str:
    """`value` without `.` and empty components (the repository root is '')."""
    return "/".join(c for c in _components(value) if c not in ("", "."))


def overlaps(a: str, b: str) -> bool:
    """Whether one root-relative directory contains the other ('' is the root itself)."""
    return not a or not b or a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _join(base: str, value: str) -> str:
    return normal_form(f"{base}/{value}" if base else value)


def policy_paths(documents: Iterable[Node]) -> Iterator[PathValue]:
    """Every path named by ClusterTargets and local CertificateSources."""
    for root in documents:
        kind, name_node = root.scalar("kind"), root.at(("metadata", "name"))
        if name_node is None:
            continue
        name = str(name_node.value)
        if kind == "ClusterTarget":
            node = root.at(("spec", "outputDir"))
            value = str(node.value).rstrip("/") if node is not None else f"overlays/{name}"
            yield PathValue(value, (node or name_node).loc,
                            f"outputDir of ClusterTarget {name!r}", output=True, writes=True)
        elif kind == "CertificateSource":
            yield from _source_paths(root, name)


def _source_paths(root: Node, name: str) -> Iterator[PathValue]:
    local = root.at(("spec", "local"))
    directory = local.get("directory") if local is not None else None
    if local is None or directory is None:
        return
    base = str(directory.value)
    dev_pki = bool(local.scalar("createDevPki", False))
    yield PathValue(base, directory.loc, f"directory of CertificateSource {name!r}",
                    writes=dev_pki)
    if lexical_problem(base) is not None:
        return  # file names below a rejected directory are not checked again
    for section, fields in (("certificates", ("certificate", "privateKey")),
                            ("caBundles", ("file",))):
        entries = local.get(section)
        for ref, entry in entries.items() if entries is not None else ():
            for field in fields:
                node = entry.get(field)
                if node is not None:
                    yield PathValue(str(node.value), node.loc, f"{section}.{ref}.{field} of "
                                    f"CertificateSource {name!r}", base=normal_form(base))


def check_policies(documents: Iterable[Node], bounds: Boundaries) -> list[Diagnostic]:
    paths = list(policy_paths(documents))
    out = [error("PathOutsideRepository", f"{p.what}: {p.value!r} {problem}", p.location,
                 _HINT_RELATIVE)
           for p in paths if (problem := lexical_problem(p.value)) is not None]
    clean = [p for p in paths if lexical_problem(p.value) is None]
    for p in clean:
        if p.output and normal_form(p.value) not in (p.value, ""):  # "" is OverlappingPaths
            out.append(error("PathNotNormal", f"{p.what}: {p.value!r} has '.' or empty "
                             "components", p.location, f"write it as "
                             f"{normal_form(p.value) or '(a subdirectory)'!r}"))
    out += _overlaps(clean, normal_form(bounds.policies))
    if bounds.root is not None:
        refused: set[str] = set()  # directories already reported: not each file in them again
        for p in clean:
            if p.base in refused:
                continue
            refusal = _on_disk(p, bounds)
            if refusal is not None:
                out.append(refusal)
                if not p.output and not p.base:
                    refused.add(normal_form(p.value))
    return out


def _overlaps(paths: Sequence[PathValue], policies: str) -> list[Diagnostic]:
    outputs = [p for p in paths if p.output]
    inputs = [(f"the policies directory {policies!r}", policies)]
    inputs += [(f"{name!r}", name) for name in RESERVED]
    inputs += [(f"the {p.what} ({p.value!r})", normal_form(p.value)) for p in paths
               if not p.output and not p.base]
    out: list[Diagnostic] = []
    for i, p in enumerate(outputs):
        mine = normal_form(p.value)
        clash = "the repository root itself" if not mine else next(
            (label for label, other in inputs if overlaps(mine, other)), None)
        if clash is None:
            clash = next((f"the {q.what} ({q.value!r}, {q.location})" for q in outputs[:i]
                          if overlaps(mine, normal_form(q.value))), None)
        if clash is not None:
            out.append(error("OverlappingPaths", f"{p.what}: {p.value!r} overlaps {clash}",
                             p.location, "give every cluster its own directory (for example "
                             "overlays/<cluster>), apart from policies and certificates"))
    for p in paths:  # createDevPki writes private keys: never into policies/, .git or the root
        mine = normal_form(p.value)
        if p.writes and not p.output and (not mine or overlaps(mine, policies) or
                                          overlaps(mine, ".git")):
            out.append(error("OverlappingPaths", f"{p.what}: {p.value!r} (createDevPki writes "
                             "private keys there) overlaps the repository root, the policies "
                             "directory or .git", p.location, "use a git-ignored directory "
                             "such as .mtlsc/dev-pki"))
    return out


def _inside(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _on_disk(p: PathValue, bounds: Boundaries) -> Diagnostic | None:
    """Resolve symbolic links: the path must stay in the repository (or an allowed place)."""
    assert bounds.root is not None
    root = os.path.realpath(bounds.root)
    lexical = os.path.join(root, _join(p.base, p.value))
    real = os.path.realpath(lexical)
    if _inside(real, root) and not (p.output and real != lexical.rstrip("/")):
        return None
    if _inside(real, root):  # an output directory reached through a link inside the root
        return error("SymlinkInOutputPath", f"{p.what}: {p.value!r} passes through a symbolic "
                     f"link (it resolves to {os.path.relpath(real, root)!r})", p.location,
                     "name the real directory; mtlsc replaces output directories as a whole")
    if not p.writes and any(_inside(real, os.path.realpath(d)) for d in bounds.read_outside):
        return None
    why = "mtlsc never writes outside the repository" if p.writes else \
        "pass --allow-read-outside DIR to allow reading certificates below DIR"
    return error("PathOutsideRepository", f"{p.what}: {p.value!r} leads outside the repository "
                 f"through a symbolic link (to {real})", p.location, why)


def check_output_paths(files: Mapping[str, object], output_dirs: Iterable[str]) -> list[str]:
    """Compiled file names that are not plain paths inside their output directory (names from
    policy files are path components: a last guard behind the schema's name patterns)."""
    dirs = [d for d in output_dirs if d]
    bad = []
    for rel in files:
        parts = _components(rel)
        if rel == LOCK_FILE:
            continue
        if any(c in ("", ".", "..") for c in parts) or rel.startswith("/") or \
                not any(rel.startswith(d + "/") for d in dirs):
            bad.append(rel)
    return sorted(bad)
