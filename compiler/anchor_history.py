"""When did each trust anchor start being trusted on each cluster? Read from Git history.

The committed overlays hold every CA bundle mtlsc publishes (`<outputDir>/<ns>/configmap-*.yaml`,
key `ca.crt`). Walking the commits that touched them, newest first, from the base of a diff,
the time a CA certificate was added to a cluster is the committer time of the oldest commit of
the unbroken run (ending at the base) in which the cluster's bundles contain it. The walk stops
at the first commit older than the horizon (now minus the longest rotation overlap): anything
present then is old enough, whatever its exact age. Only `mtlsc diff` calls this (I/O edge).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from . import gitref
from .anchors import bundle_anchors

AnchorKey = tuple[str, str]  # (cluster, SHA-256 fingerprint)
MAX_COMMITS = 200  # a bound on the walk; older history counts as old enough


def _commits(root: Path, commit: str, paths: list[str]) -> list[tuple[str, datetime]]:
    """(commit, committer time) of the first-parent commits touching `paths`, newest first."""
    prefix = gitref.repo_prefix(root)
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "log", "--first-parent", f"--max-count={MAX_COMMITS}",
             "--format=%H %ct", commit, "--", *(prefix + p for p in paths)],
            capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise gitref.GitError(f"cannot run git: {exc}") from None
    if done.returncode != 0:
        raise gitref.GitError(done.stderr.strip() or "git log failed")
    out = []
    for line in done.stdout.splitlines():
        sha, _, stamp = line.partition(" ")
        out.append((sha, datetime.fromtimestamp(int(stamp), UTC)))
    return out


def _fingerprints(files: Mapping[str, bytes], dirs: Mapping[str, str]) -> set[AnchorKey]:
    """(cluster, fingerprint) of every CA certificate in the overlays' CA bundle ConfigMaps."""
    found: set[AnchorKey] = set()
    yaml = YAML(typ="safe")
    for path, data in files.items():
        if not path.rsplit("/", 1)[-1].startswith("configmap-"):
            continue
        cluster = next((name for out, name in dirs.items() if path.startswith(out + "/")), None)
        if cluster is None:
            continue
        try:
            doc = yaml.load(data)
        except YAMLError:
            continue
        pem = doc.get("data", {}).get("ca.crt") if isinstance(doc, dict) else None
        if isinstance(pem, str):
            found.update((cluster, a.fingerprint) for a in bundle_anchors(pem.encode()))
    return found


def anchors_added_at(root: Path, commit: str, dirs: Mapping[str, str],
                     horizon: datetime) -> dict[AnchorKey, datetime]:
    """(cluster, fingerprint) → when it was added, for the anchors trusted at `commit`.

    `dirs` maps each cluster's outputDir (relative to `root`) to the cluster name. Anchors
    present since before `horizon` (or beyond the walked history) get the time of the oldest
    commit looked at, which is old enough for any overlap up to `now - horizon`.
    """
    commits = _commits(root, commit, sorted(dirs))
    if not commits:
        return {}
    current = _fingerprints(gitref.read_tree(root, commit, sorted(dirs)), dirs)
    added: dict[AnchorKey, datetime] = {}
    alive = set(current)
    for index, (sha, when) in enumerate(commits):
        present = current if index == 0 and sha == commit else \
            _fingerprints(gitref.read_tree(root, sha, sorted(dirs)), dirs)
        for key in list(alive):
            if key in present:
                added[key] = when  # still there: added at this commit or earlier
            else:
                alive.discard(key)  # absent here: added by the next newer commit
        if not alive or when < horizon:
            break
    return added
